"""Persistent agents, their inboxes and their turns: every query behind the service, the API and the handler."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from optio.errors import Conflict, NotFound
from optio.store import logs, queue
from optio.store.models import AgentMessage, AgentTurn, PersistentAgent, RunLog, Workspace
from optio.store.runs import list_events, record_event
from optio.store.types import utcnow

KIND = "agent"


def insert_agent(session: Session, workspace_id: int, fields: dict[str, Any]) -> PersistentAgent:
    """A new idle agent; a slug already used in the workspace is a 409."""
    if find(session, workspace_id, fields["slug"]) is not None:
        raise Conflict(f"agent {fields['slug']!r} already exists", field="slug")
    agent = PersistentAgent(workspace_id=workspace_id, state="idle", **fields)
    session.add(agent)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"agent {fields['slug']!r} already exists", field="slug") from None
    record_event(session, workspace_id=workspace_id, kind=KIND, run_id=agent.id, event="created",
                 from_state=None, to_state="idle", reason=f"agent {agent.slug!r} created")
    return agent


def find(session: Session, workspace_id: int, slug: str) -> PersistentAgent | None:
    return session.scalar(select(PersistentAgent).where(PersistentAgent.workspace_id == workspace_id,
                                                        PersistentAgent.slug == slug))


def get(session: Session, workspace_id: int, slug: str) -> PersistentAgent:
    agent = find(session, workspace_id, slug)
    if agent is None:
        raise NotFound(f"agent {slug!r} not found")
    return agent


def load(session: Session, agent_id: int, workspace_id: int) -> PersistentAgent | None:
    return session.scalar(select(PersistentAgent).where(PersistentAgent.id == agent_id,
                                                        PersistentAgent.workspace_id == workspace_id))


def list_agents(session: Session, workspace_id: int, *, include_archived: bool = True) -> list[PersistentAgent]:
    q = select(PersistentAgent).where(PersistentAgent.workspace_id == workspace_id).order_by(PersistentAgent.slug)
    if not include_archived:
        q = q.where(PersistentAgent.state != "archived")
    return list(session.scalars(q))


def workspace_slug(session: Session, workspace_id: int) -> str:
    return session.scalar(select(Workspace.slug).where(Workspace.id == workspace_id)) or str(workspace_id)


def set_intent(session: Session, agent: PersistentAgent, intent: str, reason: str) -> None:
    """Record a person's intent (a version bump) and ask for a reconcile, in the caller's transaction."""
    session.execute(update(PersistentAgent).where(PersistentAgent.id == agent.id)
                    .values(control_intent=intent, version=PersistentAgent.version + 1, updated_at=utcnow())
                    .execution_options(synchronize_session=False))
    record_event(session, workspace_id=agent.workspace_id, kind=KIND, run_id=agent.id, event=f"{intent}_requested",
                 from_state=agent.state, to_state=agent.state, reason=reason)
    queue.enqueue(session, KIND, agent.id, agent.workspace_id, reason=f"{intent} requested")


def update_fields(session: Session, agent: PersistentAgent, fields: dict[str, Any]) -> PersistentAgent:
    for key, value in fields.items():
        setattr(agent, key, value)
    agent.version = agent.version + 1
    session.flush()
    queue.enqueue(session, KIND, agent.id, agent.workspace_id, reason="definition changed")
    return agent


# --- inbox -------------------------------------------------------------------------------------------------


def insert_message(session: Session, agent: PersistentAgent, *, sender: str, type: str, body: str,
                   now: datetime | None = None) -> AgentMessage:
    """A message in the agent's inbox and a reconcile of the agent, in the caller's transaction."""
    message = AgentMessage(workspace_id=agent.workspace_id, agent_id=agent.id, sender=sender, type=type, body=body,
                           created_at=now or utcnow())
    session.add(message)
    session.flush()
    queue.enqueue(session, KIND, agent.id, agent.workspace_id, reason="message")
    return message


def pending_count(session: Session, agent_id: int, *, not_in_turn: int | None = None) -> int:
    """Messages no turn has processed yet (not counting those drained by turn `not_in_turn`)."""
    q = select(func.count()).select_from(AgentMessage).where(AgentMessage.agent_id == agent_id,
                                                            AgentMessage.processed_by_turn.is_(None))
    if not_in_turn is not None:
        q = q.where((AgentMessage.turn_id.is_(None)) | (AgentMessage.turn_id != not_in_turn))
    return session.scalar(q) or 0


def pending_counts(session: Session, workspace_id: int) -> dict[int, int]:
    rows = session.execute(select(AgentMessage.agent_id, func.count()).where(
        AgentMessage.workspace_id == workspace_id, AgentMessage.processed_by_turn.is_(None))
        .group_by(AgentMessage.agent_id))
    return {r[0]: r[1] for r in rows}


def messages(session: Session, agent_id: int, *, pending_only: bool = False, after_id: int | None = None,
             limit: int = 100) -> list[AgentMessage]:
    q = select(AgentMessage).where(AgentMessage.agent_id == agent_id).order_by(AgentMessage.id).limit(limit)
    if pending_only:
        q = q.where(AgentMessage.processed_by_turn.is_(None))
    if after_id is not None:
        q = q.where(AgentMessage.id > after_id)
    return list(session.scalars(q))


def pending_senders(session: Session, agent_id: int) -> list[str]:
    rows = session.scalars(select(AgentMessage.sender).where(AgentMessage.agent_id == agent_id,
                                                             AgentMessage.processed_by_turn.is_(None)).distinct())
    return sorted(rows)


# --- turns -------------------------------------------------------------------------------------------------


def start_turn(session: Session, agent: PersistentAgent, *, number: int, now: datetime, max_messages: int
               ) -> tuple[AgentTurn, list[AgentMessage]]:
    """Open turn `number`, draining the oldest pending messages into it (the caller's transaction)."""
    drained = list(session.scalars(
        select(AgentMessage).where(AgentMessage.agent_id == agent.id, AgentMessage.processed_by_turn.is_(None))
        .order_by(AgentMessage.id).limit(max_messages)))
    turn = AgentTurn(workspace_id=agent.workspace_id, agent_id=agent.id, number=number,
                     message_ids=[m.id for m in drained], state="provisioning", cost_at_start=agent.cost_usd or 0.0,
                     started_at=now)
    session.add(turn)
    session.flush()
    if drained:
        session.execute(update(AgentMessage).where(AgentMessage.id.in_([m.id for m in drained]))
                        .values(turn_id=turn.id).execution_options(synchronize_session=False))
    session.execute(update(PersistentAgent).where(PersistentAgent.id == agent.id)
                    .values(current_turn_id=turn.id, turn_count=PersistentAgent.turn_count + 1)
                    .execution_options(synchronize_session=False))
    return turn, drained


def turn_by_id(session: Session, turn_id: int) -> AgentTurn | None:
    return session.get(AgentTurn, turn_id)


def fill_turn(session: Session, turn_id: int, values: dict[str, Any]) -> None:
    session.execute(update(AgentTurn).where(AgentTurn.id == turn_id).values(**values)
                    .execution_options(synchronize_session=False))


def turn_messages(session: Session, turn: AgentTurn) -> list[AgentMessage]:
    ids = [int(i) for i in turn.message_ids or []]
    if not ids:
        return []
    return list(session.scalars(select(AgentMessage).where(AgentMessage.id.in_(ids)).order_by(AgentMessage.id)))


def close_turn(session: Session, agent_id: int, turn: AgentTurn, *, outcome: str, error: str | None,
               now: datetime) -> None:
    """End the turn; only a turn that succeeded marks its drained messages processed."""
    row = session.execute(select(PersistentAgent.cost_usd, PersistentAgent.agent_session_id)
                          .where(PersistentAgent.id == agent_id)).first()
    cost = max(0.0, float(row[0] or 0.0) - float(turn.cost_at_start or 0.0)) if row else 0.0
    fill_turn(session, turn.id, {"state": "succeeded" if outcome == "succeeded" else "failed", "outcome": outcome,
                                 "error": error, "finished_at": now, "cost_usd": cost,
                                 "session_id": row[1] if row else None})
    logs.mark_changed(session, KIND, agent_id)  # the turn's live log streams end now
    if outcome == "succeeded" and turn.message_ids:
        session.execute(update(AgentMessage)
                        .where(AgentMessage.id.in_([int(i) for i in turn.message_ids]),
                               AgentMessage.processed_by_turn.is_(None))
                        .values(processed_by_turn=turn.id, processed_at=now)
                        .execution_options(synchronize_session=False))
    session.execute(update(PersistentAgent).where(PersistentAgent.id == agent_id)
                    .values(current_turn_id=None, last_turn_at=now).execution_options(synchronize_session=False))


def list_turns(session: Session, agent_id: int, *, limit: int = 50, before: int | None = None) -> list[AgentTurn]:
    q = select(AgentTurn).where(AgentTurn.agent_id == agent_id).order_by(AgentTurn.number.desc()).limit(limit)
    if before is not None:
        q = q.where(AgentTurn.number < before)
    return list(session.scalars(q))


def get_turn(session: Session, agent_id: int, number: int) -> AgentTurn:
    turn = session.scalar(select(AgentTurn).where(AgentTurn.agent_id == agent_id, AgentTurn.number == number))
    if turn is None:
        raise NotFound(f"turn {number} not found")
    return turn


def cost_since(session: Session, agent_id: int, since: datetime, *, open_turn: AgentTurn | None = None,
               agent_cost: float = 0.0) -> float:
    """What the agent spent in turns started since `since`, counting the open turn's spend so far."""
    closed = session.scalar(select(func.coalesce(func.sum(AgentTurn.cost_usd), 0.0)).where(
        AgentTurn.agent_id == agent_id, AgentTurn.started_at >= since, AgentTurn.finished_at.is_not(None))) or 0.0
    running = max(0.0, agent_cost - open_turn.cost_at_start) if open_turn is not None else 0.0
    return float(closed) + running


def turn_logs(session: Session, workspace_id: int, agent_id: int, number: int, *, after: int, limit: int
              ) -> tuple[list[Any], int]:
    """A turn's log lines after `after` (the agent's run log of attempt `number`) and the turn's last seq."""
    where = (RunLog.run_kind == KIND, RunLog.run_id == agent_id, RunLog.workspace_id == workspace_id,
             RunLog.attempt == number)
    rows = list(session.scalars(select(RunLog).where(*where, RunLog.seq > after).order_by(RunLog.seq).limit(limit)))
    last = session.scalar(select(func.max(RunLog.seq)).where(*where)) or 0
    return rows, last


def events(session: Session, workspace_id: int, agent_id: int) -> list[Any]:
    return list_events(session, KIND, agent_id, workspace_id)
