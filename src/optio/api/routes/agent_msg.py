"""The inter-agent API: what code inside a persistent agent's turn calls (`optio agent-msg`, its MCP server).

Authenticated by the turn's token only (`Authorization: Bearer $OPTIO_AGENT_TOKEN`), never by an API
key or a session: the caller is an agent, and every message it sends is recorded as
`agent:<workspace>/<slug>`. Everything is scoped to the token's workspace.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from optio.api.deps import auth_of
from optio.api.errors import ERROR_RESPONSES
from optio.domain.agent_messages import MAX_BODY_CHARS
from optio.server import Optio
from optio.services import agent_api as service
from optio.store.db import Database

router = APIRouter(prefix="/api/agent-msg", tags=["inter-agent"], responses=ERROR_RESPONSES)
turn_token_scheme = HTTPBearer(auto_error=False, scheme_name="AgentTurnToken",
                               description="The turn's OPTIO_AGENT_TOKEN (valid while that turn runs)")

Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]
Body = Annotated[str, Field(min_length=1, max_length=MAX_BODY_CHARS)]
MessageType = Literal["text", "json", "event"]


class AgentSend(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Slug
    body: Body
    type: MessageType = "text"


class AgentBroadcast(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: Body
    type: MessageType = "text"


class SentOut(BaseModel):
    id: int
    to: str


class BroadcastOut(BaseModel):
    sent: list[SentOut]


class PeerOut(BaseModel):
    slug: str
    name: str
    state: str


class PeersOut(BaseModel):
    peers: list[PeerOut]


class InboxMessageOut(BaseModel):
    id: int
    sender: str
    type: str
    body: str
    created_at: datetime
    processed_by_turn_id: int | None


class InboxOut(BaseModel):
    messages: list[InboxMessageOut]


def get_caller(request: Request,
               bearer: HTTPAuthorizationCredentials | None = Depends(turn_token_scheme)) -> service.TurnCaller:
    optio: Optio = request.app.state.optio
    return service.authenticate(optio.db, auth_of(optio).session_secret, bearer.credentials if bearer else None)


Caller = Annotated[service.TurnCaller, Depends(get_caller)]


def _db(request: Request) -> Database:
    optio: Optio = request.app.state.optio
    return optio.db


@router.get("/peers", response_model=PeersOut)
def list_peers(request: Request, caller: Caller) -> PeersOut:
    """The other agents of the caller's workspace that can be messaged (archived ones are left out)."""
    rows = service.peers(_db(request), caller)
    return PeersOut(peers=[PeerOut(slug=r.slug, name=r.name, state=r.state) for r in rows])


@router.post("/send", response_model=SentOut, status_code=201)
def send(request: Request, body: AgentSend, caller: Caller) -> SentOut:
    """Put a message in a peer's inbox and wake it; a slug outside the caller's workspace is 404."""
    out = service.send(_db(request), caller, body.to, body.body, body.type)
    return SentOut(id=out.id, to=body.to)


@router.post("/broadcast", response_model=BroadcastOut, status_code=201)
def broadcast(request: Request, body: AgentBroadcast, caller: Caller) -> BroadcastOut:
    """The same message to every peer of the caller's workspace (not to the caller)."""
    sent = service.broadcast(_db(request), caller, body.body, body.type)
    slugs = {p.id: p.slug for p in service.peers(_db(request), caller)}
    return BroadcastOut(sent=[SentOut(id=m.id, to=slugs.get(m.agent_id, "")) for m in sent])


@router.get("/inbox", response_model=InboxOut)
def inbox(request: Request, caller: Caller,
          pending: Annotated[bool, Query(description="Only messages no successful turn has processed")] = False,
          ) -> InboxOut:
    """The caller's own inbox, oldest first: what this turn drained and anything that arrived since."""
    rows = service.inbox(_db(request), caller, pending_only=pending)
    return InboxOut(messages=[InboxMessageOut(id=m.id, sender=m.sender, type=m.type, body=m.body,
                                              created_at=m.created_at, processed_by_turn_id=m.processed_by_turn)
                              for m in rows])
