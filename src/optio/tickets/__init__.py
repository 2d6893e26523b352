"""Ticket providers: the trackers work arrives from (GitHub/GitLab Issues, Linear, Jira, Notion, the local one)."""
