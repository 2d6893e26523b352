"""Persistent agents' inbox messages as the agent sees them: who may send, and how a turn's prompt is laid out.

Messages reach the agent as versioned JSON envelopes between two marker lines, after its system prompt and
operator manual, so a script (or a model) can find and parse exactly the messages of its turn, and a body
can never pass itself off as prompt text: it is a JSON string inside an envelope.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

ENVELOPE_VERSION = 1
BEGIN_MARKER = "=== BEGIN OPTIO MESSAGES v1 ==="
END_MARKER = "=== END OPTIO MESSAGES ==="
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_LABEL = r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}"
SENDER_RE = re.compile(rf"^(user:[0-9]{{1,18}}|agent:[a-z0-9][a-z0-9-]{{0,63}}/[a-z0-9][a-z0-9-]{{0,62}}"
                       rf"|system:{_LABEL}|external:{_LABEL})$")
MESSAGE_TYPES = ("text", "json", "event")
LIFECYCLES = ("on-demand", "sticky", "always-on")
MAX_BODY_CHARS = 100_000
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def valid_slug(slug: str) -> bool:
    return bool(SLUG_RE.match(slug))


def valid_sender(sender: str) -> bool:
    return bool(SENDER_RE.match(sender))


def agent_sender(workspace_slug: str, agent_slug: str) -> str:
    return f"agent:{workspace_slug}/{agent_slug}"


@dataclass(frozen=True)
class Envelope:
    """One message as the agent receives it."""

    id: int
    sender: str
    type: str
    body: str
    created_at: datetime

    def to_json(self) -> str:
        """One line, whatever the body holds: JSON escapes control characters, and the three other characters
        Python's ``splitlines`` breaks at are escaped here too."""
        text = json.dumps({"v": ENVELOPE_VERSION, "id": self.id, "from": self.sender, "type": self.type,
                           "created_at": self.created_at.isoformat(), "body": self.body},
                          ensure_ascii=False, sort_keys=True)
        return text.translate(_LINE_BREAKS)


def render_prompt(*, system_prompt: str, operator_manual: str, envelopes: Sequence[Envelope], agent_slug: str,
                  turn: int) -> str:
    """The turn's prompt: system prompt, operator manual, then one envelope per line between the markers."""
    parts: list[str] = []
    if system_prompt.strip():
        parts.append(system_prompt.rstrip())
    if operator_manual.strip():
        parts.append("## Operator manual\n\n" + operator_manual.rstrip())
    lines = [f"You are the persistent agent {agent_slug!r}; this is turn {turn}. "
             f"Your inbox holds {len(envelopes)} new message(s), one JSON envelope per line "
             f"(fields: v, id, from, type, created_at, body):",
             BEGIN_MARKER, *(e.to_json() for e in envelopes), END_MARKER]
    parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def parse_envelopes(prompt: str) -> list[dict[str, object]]:
    """The envelopes of a rendered prompt (for agents written in Python, and for tests)."""
    out: list[dict[str, object]] = []
    inside = False
    for line in prompt.splitlines():
        if line == BEGIN_MARKER:
            inside = True
        elif line == END_MARKER:
            inside = False
        elif inside and line.strip():
            out.append(json.loads(line))
    return out


def wake_reason(senders: Sequence[str]) -> str:
    """A short why for the turn: the kinds of senders that woke it."""
    if not senders:
        return "no messages"
    kinds: dict[str, int] = {}
    for sender in senders:
        kind = sender.split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{n} {k} message{'s' if n != 1 else ''}" for k, n in sorted(kinds.items()))
