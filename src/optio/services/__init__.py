"""Application services: what the API and CLI ask for, in workspace-scoped transactions."""
