"""The one interface every ticket provider implements, and the shapes it speaks in.

Intake code (the ticket trigger, the task lifecycle that comments and closes) talks to trackers only
through :class:`TicketProvider`, so GitHub Issues, GitLab Issues, Linear, Jira, Notion and the local
tracker are interchangeable. A provider is built from a :class:`TicketSourceConfig` (a row the
workspace configured) and the plain-text credential that source's named secret holds; it never reads
the database or settings itself, so each is testable against its fake alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "BadTicketSignature",
    "Ticket",
    "TicketEvent",
    "TicketFilter",
    "TicketProvider",
    "TicketProviderError",
    "TicketSourceConfig",
    "parse_time",
]


def parse_time(value: object) -> datetime | None:
    """A tracker's ISO 8601 timestamp (`Z` or an offset); None for a missing or unreadable one."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class TicketProviderError(Exception):
    """The tracker refused or failed a call; `retryable` says whether trying later may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class BadTicketSignature(Exception):
    """A webhook delivery whose signature (or token) does not verify: answered 401, nothing runs."""


@dataclass(frozen=True)
class TicketSourceConfig:
    """A configured tracker connection.

    `kind` is the provider (`github`, `gitlab`, `linear`, `jira`, `notion`, `local`); `api_url` the base
    URL (already through the SSRF guard); `options` the provider's own keys, e.g. `{"repo": "owner/name"}`
    for GitHub, `{"project": "group/name"}` for GitLab, `{"team": "ENG"}` for Linear,
    `{"project": "PROJ", "email": "bot@example.com"}` for Jira, `{"database_id": "...",
    "status_property": "Status", "done_status": "Done"}` for Notion.
    """

    id: int
    workspace_id: int
    kind: str
    api_url: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TicketFilter:
    """Which tickets a trigger picks up; None means "any". Matching is the provider's own query where it
    has one, and :meth:`Ticket.matches` after it (so every provider filters the same way)."""

    label: str | None = None
    state: str | None = "open"
    assignee: str | None = None
    project: str | None = None


@dataclass(frozen=True)
class Ticket:
    """One ticket as every provider reports it.

    `external_id` is the tracker's stable id (GitHub's issue number within the repo, Linear's issue UUID,
    Jira's issue id, Notion's page id): the key that makes a ticket spawn at most one task. `key` is what
    people call it (`#42`, `ENG-12`, `PROJ-3`). `state` is normalised to `open` or `closed`.
    """

    external_id: str
    key: str
    title: str
    body: str
    url: str
    state: str
    labels: tuple[str, ...] = ()
    assignee: str | None = None
    project: str | None = None
    updated_at: datetime | None = None

    def matches(self, flt: TicketFilter) -> bool:
        if flt.state is not None and self.state != flt.state:
            return False
        if flt.label is not None and flt.label.lower() not in {label.lower() for label in self.labels}:
            return False
        if flt.assignee is not None and (self.assignee or "").lower() != flt.assignee.lower():
            return False
        return flt.project is None or (self.project or "").lower() == flt.project.lower()


@dataclass(frozen=True)
class TicketEvent:
    """What a verified webhook delivery says: this ticket changed (re-read it through `get`), or it was
    deleted. `delivery_id` is the tracker's id for the delivery where it sends one (for dedup logs)."""

    external_id: str
    action: str
    delivery_id: str | None = None


class TicketProvider(Protocol):
    """A tracker. Every method is synchronous and may raise :class:`TicketProviderError`."""

    kind: str

    def list_tickets(self, flt: TicketFilter, *, limit: int = 100) -> list[Ticket]:
        """Tickets that match `flt`, newest first (the polling safety net)."""
        ...

    def get(self, external_id: str) -> Ticket:
        ...

    def comment(self, external_id: str, text: str) -> None:
        """Post a comment (pick-up with the task link, PR opened with the PR link, merged)."""
        ...

    def close(self, external_id: str, comment: str | None = None) -> None:
        """Close the ticket the tracker's way: GitHub/GitLab close, Jira a transition into a done-category
        status, Linear the team's completed state, Notion the status property set to its done value."""
        ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, secret: str | None) -> list[TicketEvent]:
        """Verify a delivery (GitHub `X-Hub-Signature-256`, GitLab `X-Gitlab-Token`, Linear
        `Linear-Signature`, Jira's secret, Notion's `X-Notion-Signature`) and say which tickets changed.
        Raises :class:`BadTicketSignature` when it does not verify; returns [] for events it ignores."""
        ...
