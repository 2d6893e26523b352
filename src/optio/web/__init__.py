"""The dashboard: server-rendered pages, their static assets, and the self-contained API docs."""
