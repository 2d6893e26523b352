"""Persistent agents: define them, send them messages (the one wake entry point), steer them, read their turns.

Every wake is a message: a person's, another agent's, the system's or an external source's (a trigger). The
message row and the agent's reconcile enqueue share one transaction, so a wake is never lost; the agent's
decision turns pending messages into the next turn, one turn at a time.

The functions taking a ``Session`` let a caller that owns a transaction (a trigger firing, the inter-agent
API) wake an agent inside it; the ones taking a ``Database`` open their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optio.domain.agent_manual import DEFAULT_OPERATOR_MANUAL
from optio.domain.agent_messages import (
    LIFECYCLES,
    MAX_BODY_CHARS,
    MESSAGE_TYPES,
    agent_sender,
    valid_sender,
    valid_slug,
)
from optio.errors import Conflict, Invalid
from optio.services.jobs import validate_agent
from optio.services.secret_refs import require_visible
from optio.store import persistent_agents as store
from optio.store.db import Database
from optio.store.models import AgentMessage, AgentTurn, PersistentAgent
from optio.store.session import Session

INTENTS = ("pause", "resume", "restart", "archive")
_EDITABLE = ("name", "system_prompt", "operator_manual", "agent_type", "agent_config", "lifecycle", "idle_timeout_s",
             "max_consecutive_failures", "max_turn_s", "max_cost_usd", "secret_names")


@dataclass(frozen=True)
class AgentInfo:
    """An agent with its inbox depth, as show/list return it."""

    agent: PersistentAgent
    pending_messages: int


def _check(data: dict[str, Any]) -> None:
    lifecycle = data.get("lifecycle")
    if lifecycle is not None and lifecycle not in LIFECYCLES:
        raise Invalid(f"lifecycle must be one of {', '.join(LIFECYCLES)}", field="lifecycle")
    for name in ("idle_timeout_s", "max_turn_s", "max_cost_usd"):
        value = data.get(name)
        if value is not None and (not isinstance(value, int | float) or value < 0):
            raise Invalid(f"{name} must be a number >= 0", field=name)
    limit = data.get("max_consecutive_failures")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise Invalid("max_consecutive_failures must be an integer >= 1", field="max_consecutive_failures")


def create_agent(db: Database, workspace_id: int, data: dict[str, Any], *, created_by: int | None = None
                 ) -> PersistentAgent:
    slug = str(data.get("slug") or "")
    if not valid_slug(slug):
        raise Invalid("slug must be 1-63 lowercase letters, digits or '-', starting with a letter or digit",
                      field="slug")
    agent_type = data.get("agent_type") or "script"
    agent_config = dict(data.get("agent_config") or {})
    validate_agent(agent_type, agent_config)
    _check(data)
    fields: dict[str, Any] = {k: data[k] for k in _EDITABLE if data.get(k) is not None}
    fields.update(slug=slug, agent_type=agent_type, agent_config=agent_config, created_by=created_by)
    fields.setdefault("name", slug)
    if not str(fields.get("operator_manual") or "").strip():
        fields["operator_manual"] = DEFAULT_OPERATOR_MANUAL
    fields["secret_names"] = list(data.get("secret_names") or [])
    with db.write() as session:
        require_visible(session, workspace_id, fields["secret_names"])
        return store.insert_agent(session, workspace_id, fields)


def update_agent(db: Database, workspace_id: int, slug: str, changes: dict[str, Any]) -> PersistentAgent:
    """Change the definition; the next turn uses it (a turn already running keeps what it started with)."""
    clearable = ("max_turn_s", "max_cost_usd")  # null removes the limit
    changes = {k: v for k, v in changes.items() if k in _EDITABLE and (v is not None or k in clearable)}
    _check(changes)
    with db.write() as session:
        agent = store.get(session, workspace_id, slug)
        if agent.state == "archived":
            raise Conflict(f"agent {slug!r} is archived")
        agent_type = changes.get("agent_type", agent.agent_type)
        agent_config = dict(changes.get("agent_config", agent.agent_config) or {})
        validate_agent(agent_type, agent_config)
        if "secret_names" in changes:
            changes["secret_names"] = list(changes["secret_names"])
            require_visible(session, workspace_id, changes["secret_names"])
        return store.update_fields(session, agent, changes)


def get_agent(db: Database, workspace_id: int, slug: str) -> AgentInfo:
    with db.read() as session:
        agent = store.get(session, workspace_id, slug)
        return AgentInfo(agent, store.pending_count(session, agent.id))


def list_agents(db: Database, workspace_id: int) -> list[AgentInfo]:
    with db.read() as session:
        agents = store.list_agents(session, workspace_id)
        counts = store.pending_counts(session, workspace_id)
        return [AgentInfo(a, counts.get(a.id, 0)) for a in agents]


def set_intent(db: Database, workspace_id: int, slug: str, intent: str, *, actor: str = "") -> PersistentAgent:
    """Ask the agent to pause, resume, restart or archive; the reconciler applies it."""
    if intent not in INTENTS:
        raise Invalid(f"intent must be one of {', '.join(INTENTS)}", field="intent")
    with db.write() as session:
        agent = store.get(session, workspace_id, slug)
        if agent.state == "archived":
            raise Conflict(f"agent {slug!r} is archived")
        store.set_intent(session, agent, intent, f"{intent} requested{f' by {actor}' if actor else ''}")
        return agent


# --- the wake entry point ----------------------------------------------------------------------------------


def wake_in(session: Session, workspace_id: int, slug: str, body: str, *, sender: str, type: str = "text"
            ) -> AgentMessage:
    """Put a message in an agent's inbox and enqueue its reconcile, in the caller's transaction."""
    if not valid_sender(sender):
        raise Invalid("sender must be user:<id>, agent:<workspace>/<slug>, system:<label> or external:<label>",
                      field="sender")
    if type not in MESSAGE_TYPES:
        raise Invalid(f"type must be one of {', '.join(MESSAGE_TYPES)}", field="type")
    if not isinstance(body, str) or not body.strip():
        raise Invalid("the message body must not be empty", field="body")
    if len(body) > MAX_BODY_CHARS:
        raise Invalid(f"the message body is longer than {MAX_BODY_CHARS} characters", field="body")
    agent = store.get(session, workspace_id, slug)
    if agent.state == "archived":
        raise Conflict(f"agent {slug!r} is archived and takes no messages")
    return store.insert_message(session, agent, sender=sender, type=type, body=body)


def send_message(db: Database, workspace_id: int, slug: str, body: str, *, sender: str, type: str = "text"
                 ) -> AgentMessage:
    """A message to an agent: inserted and its reconcile enqueued in one transaction."""
    with db.write() as session:
        return wake_in(session, workspace_id, slug, body, sender=sender, type=type)


def wake(db: Database, workspace_id: int, slug: str, *, label: str, body: str, external: bool = False
         ) -> AgentMessage:
    """Wake an agent for a system reason (a schedule) or an external one (a webhook): a message saying why."""
    sender = f"{'external' if external else 'system'}:{label}"
    return send_message(db, workspace_id, slug, body, sender=sender, type="event")


def send_from_agent(db: Database, workspace_id: int, from_slug: str, to_slug: str, body: str, *,
                    type: str = "text") -> AgentMessage:
    """One agent's message to a peer in its own workspace (the inter-agent API calls this)."""
    with db.write() as session:
        sender = agent_sender(store.workspace_slug(session, workspace_id), from_slug)
        return wake_in(session, workspace_id, to_slug, body, sender=sender, type=type)


def broadcast_from_agent(db: Database, workspace_id: int, from_slug: str, body: str, *, type: str = "text"
                         ) -> list[AgentMessage]:
    """The same message to every other live agent of the workspace, in one transaction."""
    with db.write() as session:
        sender = agent_sender(store.workspace_slug(session, workspace_id), from_slug)
        peers = [a for a in store.list_agents(session, workspace_id, include_archived=False) if a.slug != from_slug]
        return [wake_in(session, workspace_id, a.slug, body, sender=sender, type=type) for a in peers]


def list_peers(db: Database, workspace_id: int, *, exclude_slug: str | None = None) -> list[PersistentAgent]:
    """The workspace's live agents (not archived), but `exclude_slug`."""
    with db.read() as session:
        return [a for a in store.list_agents(session, workspace_id, include_archived=False) if a.slug != exclude_slug]


def read_inbox(db: Database, workspace_id: int, slug: str, *, pending_only: bool = False,
               after_id: int | None = None, limit: int = 100) -> list[AgentMessage]:
    with db.read() as session:
        agent = store.get(session, workspace_id, slug)
        return store.messages(session, agent.id, pending_only=pending_only, after_id=after_id, limit=limit)


def list_turns(db: Database, workspace_id: int, slug: str, *, limit: int = 50, before: int | None = None
               ) -> list[AgentTurn]:
    with db.read() as session:
        agent = store.get(session, workspace_id, slug)
        return store.list_turns(session, agent.id, limit=limit, before=before)


def get_turn(db: Database, workspace_id: int, slug: str, number: int) -> tuple[PersistentAgent, AgentTurn]:
    with db.read() as session:
        agent = store.get(session, workspace_id, slug)
        return agent, store.get_turn(session, agent.id, number)


@dataclass(frozen=True)
class TurnLogSlice:
    lines: list[Any]
    last_seq: int
    state: str
    done: bool


def turn_log_slice(db: Database, workspace_id: int, slug: str, number: int, *, after: int, limit: int
                   ) -> TurnLogSlice:
    """A turn's lines after `after`, read with the turn's state in one transaction, so `done` is never early."""
    with db.read() as session:
        agent = store.get(session, workspace_id, slug)
        turn = store.get_turn(session, agent.id, number)
        rows, last = store.turn_logs(session, workspace_id, agent.id, number, after=after, limit=limit)
        cursor = rows[-1].seq if rows else after
        done = turn.finished_at is not None and cursor >= last
        return TurnLogSlice(rows, cursor, turn.state, done)


def run_events(db: Database, workspace_id: int, slug: str) -> list[Any]:
    """The agent's timeline: every state change and notable event, oldest first."""
    with db.read() as session:
        agent = store.get(session, workspace_id, slug)
        return store.events(session, workspace_id, agent.id)


def live_turn(db: Database, workspace_id: int, agent_id: int, turn_id: int) -> tuple[PersistentAgent, AgentTurn] | None:
    """The agent and its turn `turn_id` while that turn is the agent's open one, else None.

    What a per-turn credential checks: it is good only while its turn runs, and only in its own workspace.
    """
    with db.read() as session:
        agent = store.load(session, agent_id, workspace_id)
        if agent is None or agent.current_turn_id != turn_id or agent.state not in ("provisioning", "running"):
            return None
        turn = store.turn_by_id(session, turn_id)
        if turn is None or turn.finished_at is not None:
            return None
        return agent, turn
