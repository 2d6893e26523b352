"""Optio's own event model for what an agent run reports, whatever vendor CLI produced it.

Each adapter translates its CLI's stream into these events; run logs store them as one JSON object
per line with a ``"type"`` field, and the UI and CLI render them. Keeping one model means the rest of
Optio never learns a vendor's wire format, and a new vendor is one parser away.

Usage events are increments: an adapter emits one per billed unit (a turn, a whole run) and never
two that cover the same tokens, so summing them with :class:`UsageTotals` gives the run's totals.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from optio.agents.pricing import impute_cost

SUMMARY_LIMIT = 400


@dataclass(frozen=True)
class TextEvent:
    text: str
    type: ClassVar[str] = "text"


@dataclass(frozen=True)
class ThinkingEvent:
    text: str
    type: ClassVar[str] = "thinking"


@dataclass(frozen=True)
class ToolUseEvent:
    name: str
    input_summary: str = ""
    tool_id: str | None = None
    type: ClassVar[str] = "tool_use"


@dataclass(frozen=True)
class ToolResultEvent:
    output: str = ""
    tool_id: str | None = None
    is_error: bool = False
    type: ClassVar[str] = "tool_result"


@dataclass(frozen=True)
class ErrorEvent:
    """A classified failure (see ``optio.domain.agent_errors``)."""

    kind: str
    message: str
    retryable: bool = False
    retry_after_s: float | None = None
    secret_name: str | None = None
    type: ClassVar[str] = "error"


@dataclass(frozen=True)
class UsageEvent:
    """Tokens (and cost, when the vendor reports it) for one billed unit of work.

    ``input_tokens`` counts uncached input only (Anthropic's convention); adapters for vendors whose
    input count includes cache hits (OpenAI, Google) subtract ``cache_read_tokens`` from it.
    ``cost_imputed`` is true when ``cost_usd`` came from Optio's price table rather than the vendor.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    cost_imputed: bool = False
    model: str | None = None
    type: ClassVar[str] = "usage"


@dataclass(frozen=True)
class SessionEvent:
    """The vendor's session id, which a later resume passes back to the CLI."""

    session_id: str
    type: ClassVar[str] = "session"


@dataclass(frozen=True)
class UserMessageEvent:
    """A user message the agent took while running: its prompt, or a person's message sent mid-run."""

    text: str
    type: ClassVar[str] = "user_message"


@dataclass(frozen=True)
class ResultEvent:
    summary: str
    success: bool
    type: ClassVar[str] = "result"


AgentEvent = (
    TextEvent
    | ThinkingEvent
    | ToolUseEvent
    | ToolResultEvent
    | ErrorEvent
    | UsageEvent
    | SessionEvent
    | ResultEvent
    | UserMessageEvent
)

EVENT_TYPES: dict[str, type[AgentEvent]] = {
    cls.type: cls
    for cls in (
        TextEvent,
        ThinkingEvent,
        ToolUseEvent,
        ToolResultEvent,
        ErrorEvent,
        UsageEvent,
        SessionEvent,
        ResultEvent,
        UserMessageEvent,
    )
}


def to_json(event: AgentEvent) -> dict[str, Any]:
    """The log form of an event: its fields plus ``"type"``."""
    return {"type": event.type, **dataclasses.asdict(event)}


def to_line(event: AgentEvent) -> str:
    """One NDJSON line (no trailing newline), as stored in run logs and printed by script agents."""
    return json.dumps(to_json(event), separators=(",", ":"), ensure_ascii=False)


def from_json(data: Mapping[str, Any]) -> AgentEvent | None:
    """Rebuilds an event from its log form; None for unknown types or fields of the wrong shape.

    Unknown extra keys are ignored so logs written by a newer Optio stay readable.
    """
    cls = EVENT_TYPES.get(str(data.get("type")))
    if cls is None:
        return None
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = data[f.name]
    try:
        event = cls(**kwargs)
    except TypeError:
        return None
    return event if _well_typed(event) else None


def parse_event_line(line: str) -> AgentEvent | None:
    """Parses one stored NDJSON line; None when it is not an Optio event (or is cut short)."""
    data = load_json_object(line)
    return None if data is None else from_json(data)


def load_json_object(line: str) -> dict[str, Any] | None:
    """The JSON object on a line, or None for blank, partial or non-object lines."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def summarize(value: Any, limit: int = SUMMARY_LIMIT) -> str:
    """A one-line, bounded rendering of a tool input or output for logs."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_NUMBER_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _well_typed(event: AgentEvent) -> bool:
    if isinstance(event, UsageEvent):
        if not all(isinstance(getattr(event, n), int) for n in _NUMBER_FIELDS):
            return False
        return event.cost_usd is None or isinstance(event.cost_usd, int | float)
    if isinstance(event, TextEvent | ThinkingEvent | UserMessageEvent):
        return isinstance(event.text, str)
    if isinstance(event, SessionEvent):
        return isinstance(event.session_id, str) and bool(event.session_id)
    if isinstance(event, ResultEvent):
        return isinstance(event.summary, str) and isinstance(event.success, bool)
    if isinstance(event, ToolUseEvent):
        return isinstance(event.name, str)
    if isinstance(event, ErrorEvent):
        return isinstance(event.kind, str) and isinstance(event.message, str)
    return True


@dataclass
class UsageTotals:
    """Running totals of a run's usage events.

    When an event carries no vendor cost, the cost is imputed from the price table for its model
    (or the model the run was started with) and the totals are labelled ``cost_imputed``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    cost_imputed: bool = False
    cost_unknown: bool = False

    def add(self, event: UsageEvent, *, model: str | None = None) -> UsageEvent:
        """Counts ``event``; returns it as counted, with an imputed cost filled in when there was none."""
        counted = with_imputed_cost(event, model=model)
        self.input_tokens += counted.input_tokens
        self.output_tokens += counted.output_tokens
        self.cache_read_tokens += counted.cache_read_tokens
        self.cache_write_tokens += counted.cache_write_tokens
        if counted.cost_usd is None:
            self.cost_unknown = True
        else:
            self.cost_usd += counted.cost_usd
            self.cost_imputed = self.cost_imputed or counted.cost_imputed
        return counted

    def add_all(self, events: list[AgentEvent], *, model: str | None = None) -> None:
        for event in events:
            if isinstance(event, UsageEvent):
                self.add(event, model=model)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def with_imputed_cost(event: UsageEvent, *, model: str | None = None) -> UsageEvent:
    """The event with ``cost_usd`` from the price table when the vendor did not report one."""
    if event.cost_usd is not None:
        return event
    cost = impute_cost(event.model or model, event)
    if cost is None:
        return event
    return dataclasses.replace(event, cost_usd=cost, cost_imputed=True, model=event.model or model)
