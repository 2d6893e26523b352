"""Local tickets: the embedded issue tracker, and handing a ticket to an agent."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.schemas import Id, RepoTaskOut, TicketCommentOut, TicketCreate, TicketLabels, TicketOut, TicketWork
from optio.api.views import task_out
from optio.services import tasks as task_service
from optio.services import tickets as ticket_service

router = APIRouter(prefix="/api/tickets", tags=["tickets"], responses=ERROR_RESPONSES)


def ticket_out(ticket: object) -> TicketOut:
    return TicketOut.model_validate(ticket)


@router.post("", response_model=TicketOut, status_code=201)
def create_ticket(body: TicketCreate, ctx: Ctx = Depends(get_ctx)) -> TicketOut:
    return ticket_out(ticket_service.create_ticket(ctx.db, ctx.workspace_id, body.model_dump()))


@router.get("", response_model=list[TicketOut])
def list_tickets(ctx: Ctx = Depends(get_ctx),
                 state: str | None = Query(default=None, pattern="^(open|closed)$")) -> list[TicketOut]:
    return [ticket_out(t) for t in ticket_service.list_tickets(ctx.db, ctx.workspace_id, state)]


@router.get("/{number}", response_model=TicketOut)
def get_ticket(number: Id, ctx: Ctx = Depends(get_ctx)) -> TicketOut:
    with ctx.db.read() as session:
        return ticket_out(ticket_service.get_ticket(session, ctx.workspace_id, number))


@router.post("/{number}/close", response_model=TicketOut)
def close_ticket(number: Id, ctx: Ctx = Depends(get_ctx)) -> TicketOut:
    return ticket_out(ticket_service.close_ticket(ctx.db, ctx.workspace_id, number,
                                                  f"closed by {ctx.username or 'a person'}"))


@router.post("/{number}/work", response_model=RepoTaskOut, status_code=201)
def work_on_ticket(number: Id, body: TicketWork, ctx: Ctx = Depends(get_ctx)) -> RepoTaskOut:
    task = ticket_service.work_on(ctx.db, ctx.workspace_id, number, body.model_dump())
    return task_out(task_service.task_view(ctx.db, ctx.workspace_id, task.id))


@router.post("/{number}/labels", response_model=TicketOut)
def label_ticket(number: Id, body: TicketLabels, ctx: Ctx = Depends(get_ctx)) -> TicketOut:
    return ticket_out(ticket_service.label(ctx.db, ctx.workspace_id, number, body.add, body.remove))


@router.get("/{number}/comments", response_model=list[TicketCommentOut])
def ticket_comments(number: Id, ctx: Ctx = Depends(get_ctx)) -> list[TicketCommentOut]:
    return [TicketCommentOut.model_validate(c) for c in ticket_service.comments(ctx.db, ctx.workspace_id, number)]
