"""Persistent agents: define, steer (pause/resume/restart/archive), message, and read their turns and logs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import StreamingResponse

from optio.api.agent_schemas import (
    SLUG_PATTERN,
    MessageIn,
    MessageOut,
    PersistentAgentCreate,
    PersistentAgentOut,
    PersistentAgentUpdate,
    TurnDetail,
    TurnOut,
)
from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.logstream import STREAM_PAGE, STREAM_RESPONSES, resume_after, sse
from optio.api.schemas import Id, LogLimit, LogLine, LogPage, PageLimit, RunEventOut, Seq
from optio.services import persistent_agents as svc

router = APIRouter(prefix="/api/agents", tags=["agents"], responses=ERROR_RESPONSES)
Slug = Annotated[str, Path(max_length=64, pattern=SLUG_PATTERN, description="The agent's slug")]
TurnNumber = Annotated[Id, Path(description="The turn's number (1 is the agent's first turn)")]


def agent_out(info: svc.AgentInfo) -> PersistentAgentOut:
    a = info.agent
    return PersistentAgentOut(
        id=a.id, slug=a.slug, name=a.name, state=a.state, paused_reason=a.paused_reason,
        control_intent=a.control_intent, system_prompt=a.system_prompt, operator_manual=a.operator_manual,
        agent_type=a.agent_type, agent_config=dict(a.agent_config or {}), lifecycle=a.lifecycle,
        idle_timeout_s=a.idle_timeout_s, max_consecutive_failures=a.max_consecutive_failures,
        max_turn_s=a.max_turn_s, max_cost_usd=a.max_cost_usd, secret_names=list(a.secret_names or []),
        turn_count=a.turn_count, pending_messages=info.pending_messages,
        consecutive_failures=a.consecutive_failures, current_turn=a.attempts if a.current_turn_id else None,
        session_id=a.agent_session_id, cost_usd=a.cost_usd or 0.0, error=a.error, last_turn_at=a.last_turn_at,
        created_at=a.created_at,
    )


def message_out(m: Any) -> MessageOut:
    return MessageOut(id=m.id, sender=m.sender, type=m.type, body=m.body, created_at=m.created_at,
                      turn_id=m.turn_id, processed_by_turn=m.processed_by_turn)


def turn_out(t: Any) -> TurnOut:
    return TurnOut(id=t.id, number=t.number, state=t.state, outcome=t.outcome, wake_reason=t.wake_reason,
                   message_ids=[int(i) for i in t.message_ids or []], cost_usd=t.cost_usd or 0.0,
                   session_id=t.session_id, resumed_session_id=t.resumed_session_id, error=t.error,
                   started_at=t.started_at, finished_at=t.finished_at)


@router.post("", response_model=PersistentAgentOut, status_code=201)
def create_agent(body: PersistentAgentCreate, ctx: Ctx = Depends(get_ctx)) -> PersistentAgentOut:
    agent = svc.create_agent(ctx.db, ctx.workspace_id, body.model_dump(), created_by=ctx.user_id)
    return agent_out(svc.get_agent(ctx.db, ctx.workspace_id, agent.slug))


@router.get("", response_model=list[PersistentAgentOut])
def list_agents(ctx: Ctx = Depends(get_ctx)) -> list[PersistentAgentOut]:
    return [agent_out(i) for i in svc.list_agents(ctx.db, ctx.workspace_id)]


@router.get("/{slug}", response_model=PersistentAgentOut)
def get_agent(slug: Slug, ctx: Ctx = Depends(get_ctx)) -> PersistentAgentOut:
    return agent_out(svc.get_agent(ctx.db, ctx.workspace_id, slug))


@router.patch("/{slug}", response_model=PersistentAgentOut)
def update_agent(slug: Slug, body: PersistentAgentUpdate, ctx: Ctx = Depends(get_ctx)) -> PersistentAgentOut:
    """Change the fields given; `null` removes a limit (max_turn_s, max_cost_usd). The next turn uses them."""
    svc.update_agent(ctx.db, ctx.workspace_id, slug, body.model_dump(exclude_unset=True))
    return agent_out(svc.get_agent(ctx.db, ctx.workspace_id, slug))


def _intent_route(intent: str) -> None:
    def steer(slug: Slug, ctx: Ctx = Depends(get_ctx)) -> PersistentAgentOut:
        svc.set_intent(ctx.db, ctx.workspace_id, slug, intent, actor=ctx.username)
        return agent_out(svc.get_agent(ctx.db, ctx.workspace_id, slug))

    steer.__doc__ = f"Ask the agent to {intent}; the reconciler applies it (202)."
    router.add_api_route("/{slug}/" + intent, steer, methods=["POST"], response_model=PersistentAgentOut,
                         status_code=202, name=f"{intent}_agent")


for _intent in svc.INTENTS:
    _intent_route(_intent)


@router.post("/{slug}/messages", response_model=MessageOut, status_code=201)
def send_agent_message(slug: Slug, body: MessageIn, ctx: Ctx = Depends(get_ctx)) -> MessageOut:
    """A person's message to the agent: it wakes the agent (or waits for the turn in progress to end)."""
    msg = svc.send_message(ctx.db, ctx.workspace_id, slug, body.body, sender=f"user:{ctx.user_id or 0}",
                           type=body.type)
    return message_out(msg)


@router.get("/{slug}/messages", response_model=list[MessageOut])
def list_agent_messages(slug: Slug, ctx: Ctx = Depends(get_ctx), pending: bool = False,
                  after: Annotated[Seq, Query(description="Messages with id > after")] = 0,
                  limit: Annotated[PageLimit, Query()] = 100) -> list[MessageOut]:
    return [message_out(m) for m in svc.read_inbox(ctx.db, ctx.workspace_id, slug, pending_only=pending,
                                                   after_id=after or None, limit=limit)]


@router.get("/{slug}/events", response_model=list[RunEventOut])
def agent_events(slug: Slug, ctx: Ctx = Depends(get_ctx)) -> list[RunEventOut]:
    return [RunEventOut.model_validate(e) for e in svc.run_events(ctx.db, ctx.workspace_id, slug)]


@router.get("/{slug}/turns", response_model=list[TurnOut])
def list_agent_turns(slug: Slug, ctx: Ctx = Depends(get_ctx), limit: Annotated[PageLimit, Query()] = 50,
               before: Annotated[Seq | None, Query(description="Turns numbered below this")] = None
               ) -> list[TurnOut]:
    return [turn_out(t) for t in svc.list_turns(ctx.db, ctx.workspace_id, slug, limit=limit, before=before)]


@router.get("/{slug}/turns/{turn}", response_model=TurnDetail)
def get_agent_turn(slug: Slug, turn: TurnNumber, ctx: Ctx = Depends(get_ctx)) -> TurnDetail:
    _, row = svc.get_turn(ctx.db, ctx.workspace_id, slug, turn)
    return TurnDetail(**turn_out(row).model_dump(), prompt=row.prompt)


def _log_page(ctx: Ctx, slug: str, number: int, after: int, limit: int) -> LogPage:
    got = svc.turn_log_slice(ctx.db, ctx.workspace_id, slug, number, after=after, limit=limit)
    return LogPage(items=[LogLine.model_validate(r) for r in got.lines], last_seq=got.last_seq, state=got.state,
                   done=got.done)


@router.get("/{slug}/turns/{turn}/logs", response_model=LogPage)
def agent_turn_logs(slug: Slug, turn: TurnNumber, ctx: Ctx = Depends(get_ctx),
              after: Annotated[Seq, Query(description="Return lines with seq > after")] = 0,
              limit: Annotated[LogLimit, Query()] = 1000) -> LogPage:
    return _log_page(ctx, slug, turn, after, limit)


@router.get("/{slug}/turns/{turn}/logs/stream", response_class=StreamingResponse, responses=STREAM_RESPONSES)
def stream_agent_turn_logs(slug: Slug, turn: TurnNumber, ctx: Ctx = Depends(get_ctx),
                     after: Annotated[Seq, Query(description="Replay lines with seq > after")] = 0,
                     last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", include_in_schema=False)]
                     = None) -> StreamingResponse:
    """Replays the turn's lines after `after`, then follows until the turn ends (SSE: `line`, then `end`)."""
    _log_page(ctx, slug, turn, after, 1)  # an unknown agent or turn is a 404, not an empty stream
    agent, _ = svc.get_turn(ctx.db, ctx.workspace_id, slug, turn)
    # The turn's lines are its agent's run log ("agent", id) of attempt `turn`: appends to that log wake it.
    return sse(lambda cursor: svc.turn_log_slice(ctx.db, ctx.workspace_id, slug, turn, after=cursor, limit=STREAM_PAGE),
               resume_after(after, last_event_id),
               db=ctx.db, settings=ctx.optio.settings, key=("agent_turn", ctx.workspace_id, slug, turn),
               topic=("agent", agent.id))
