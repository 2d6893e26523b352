"""The inter-agent API's rules: a turn's token speaks for its agent while that turn runs, and only in its workspace.

Code inside a persistent agent's turn holds no API key and no user identity; it holds the per-turn
token of `optio.security.agent_tokens`. The signature and expiry are checked first (no I/O), then the
database: the turn must still be running, so a token copied out of a finished turn is useless even
before it expires. Every lookup is in the token's workspace, so a slug of another workspace is simply
not found. Sending goes through the persistent-agents service, which stores the message and wakes the
target in one transaction.
"""

from __future__ import annotations

import time

from optio.errors import AppError, Invalid
from optio.security import agent_tokens
from optio.services import persistent_agents
from optio.store import agent_api as store
from optio.store.agent_api import TurnCaller
from optio.store.db import Database
from optio.store.models import AgentMessage, PersistentAgent

__all__ = ["TurnCaller", "TurnTokenRefused", "authenticate", "broadcast", "inbox", "peers", "send"]


class TurnTokenRefused(AppError):
    status = 401
    code = "unauthorized"


def authenticate(db: Database, secret: bytes, token: str | None, *, now: float | None = None) -> TurnCaller:
    """The agent a token speaks for, or TurnTokenRefused (one message whatever the reason, as for API keys)."""
    if not agent_tokens.looks_like_agent_token(token):
        raise TurnTokenRefused("the inter-agent API needs 'Authorization: Bearer <OPTIO_AGENT_TOKEN>' "
                               "from inside a persistent agent's turn")
    claims = agent_tokens.verify(secret, token, now=time.time() if now is None else now)
    if claims is not None:
        with db.read() as session:
            caller = store.running_turn(session, agent_id=claims.agent_id, workspace_id=claims.workspace_id,
                                        turn_id=claims.turn_id)
        if caller is not None:
            return caller
    raise TurnTokenRefused("invalid agent token, or its turn has ended")


def peers(db: Database, caller: TurnCaller) -> list[PersistentAgent]:
    return persistent_agents.list_peers(db, caller.workspace_id, exclude_slug=caller.slug)


def send(db: Database, caller: TurnCaller, slug: str, body: str, type_: str) -> AgentMessage:
    """Into a peer's inbox, waking it; a slug not in the caller's workspace is 404 like one that does not exist."""
    if slug == caller.slug:
        raise Invalid("an agent cannot message itself through the inter-agent API", field="to")
    return persistent_agents.send_from_agent(db, caller.workspace_id, caller.slug, slug, body, type=type_)


def broadcast(db: Database, caller: TurnCaller, body: str, type_: str) -> list[AgentMessage]:
    """One message to each live peer, all in one transaction."""
    return persistent_agents.broadcast_from_agent(db, caller.workspace_id, caller.slug, body, type=type_)


def inbox(db: Database, caller: TurnCaller, *, pending_only: bool) -> list[AgentMessage]:
    return persistent_agents.read_inbox(db, caller.workspace_id, caller.slug, pending_only=pending_only, limit=500)
