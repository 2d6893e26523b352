"""The inter-agent API's one read of its own: is the turn that a token names still running."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from optio.store.models import AgentTurn, PersistentAgent, Workspace

ARCHIVED = "archived"
# A turn is open from the transaction that drains its messages until it is closed (succeeded or failed).
OPEN_TURN_STATES = ("provisioning", "running")


@dataclass(frozen=True)
class TurnCaller:
    """The agent whose running turn presented a token, with what the API needs to act as it."""

    agent_id: int
    workspace_id: int
    workspace_slug: str
    slug: str
    turn_id: int


def running_turn(session: Session, *, agent_id: int, workspace_id: int, turn_id: int) -> TurnCaller | None:
    """The caller if that turn of that agent in that workspace is still running; None once it has ended."""
    row = session.execute(
        select(PersistentAgent.slug, Workspace.slug)
        .join(AgentTurn, AgentTurn.agent_id == PersistentAgent.id)
        .join(Workspace, Workspace.id == PersistentAgent.workspace_id)
        .where(AgentTurn.id == turn_id, AgentTurn.agent_id == agent_id, AgentTurn.workspace_id == workspace_id,
               PersistentAgent.workspace_id == workspace_id, PersistentAgent.current_turn_id == turn_id,
               AgentTurn.state.in_(OPEN_TURN_STATES),
               AgentTurn.finished_at.is_(None), PersistentAgent.state != ARCHIVED)
    ).first()
    if row is None:
        return None
    return TurnCaller(agent_id=agent_id, workspace_id=workspace_id, workspace_slug=row[1], slug=row[0],
                      turn_id=turn_id)
