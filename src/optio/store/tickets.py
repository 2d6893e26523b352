"""Local tickets: numbered per workspace, closed by a person or by the task that handled them."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from optio.errors import NotFound
from optio.store.models import RepoTask, Ticket, TicketComment
from optio.store.types import utcnow

REF_PREFIX = "local#"  # a task's ticket_ref for a local ticket: local#<number>


def insert_ticket(session: Session, workspace_id: int, *, repo_id: int | None, title: str, body: str,
                  labels: list[str] | None = None) -> Ticket:
    """An open ticket with the workspace's next number."""
    number = (session.scalar(select(func.max(Ticket.number)).where(Ticket.workspace_id == workspace_id)) or 0) + 1
    ticket = Ticket(workspace_id=workspace_id, number=number, repo_id=repo_id, title=title, body=body, state="open",
                    labels=list(dict.fromkeys(labels or [])))
    session.add(ticket)
    session.flush()
    return ticket


def set_labels(ticket: Ticket, labels: list[str]) -> None:
    ticket.labels = list(dict.fromkeys(labels))


def add_comment(session: Session, ticket: Ticket, body: str, author: str = "optio") -> TicketComment:
    comment = TicketComment(workspace_id=ticket.workspace_id, ticket_id=ticket.id, body=body, author=author,
                            created_at=utcnow())
    session.add(comment)
    return comment


def comments(session: Session, ticket: Ticket) -> list[TicketComment]:
    return list(session.scalars(select(TicketComment).where(TicketComment.ticket_id == ticket.id)
                                .order_by(TicketComment.id)))


def find_ticket(session: Session, workspace_id: int, number: int) -> Ticket | None:
    return session.scalar(select(Ticket).where(Ticket.workspace_id == workspace_id, Ticket.number == number))


def get_ticket(session: Session, workspace_id: int, number: int) -> Ticket:
    ticket = find_ticket(session, workspace_id, number)
    if ticket is None:
        raise NotFound(f"ticket {number} not found")
    return ticket


def list_tickets(session: Session, workspace_id: int, state: str | None, *, limit: int = 500) -> list[Ticket]:
    """Newest first."""
    q = select(Ticket).where(Ticket.workspace_id == workspace_id).order_by(Ticket.number.desc())
    if state:
        q = q.where(Ticket.state == state)
    return list(session.scalars(q.limit(limit)))


def close(ticket: Ticket, reason: str) -> None:
    """Close an open ticket (a closed one keeps its first reason and time)."""
    if ticket.state != "closed":
        ticket.state, ticket.closed_reason, ticket.closed_at = "closed", reason, utcnow()


def link_task(session: Session, workspace_id: int, number: int, task_id: int) -> None:
    get_ticket(session, workspace_id, number).task_id = task_id


def close_for_task(session: Session, task: RepoTask, reason: str) -> None:
    """Close the open ticket a completed task came from, inside the caller's transaction."""
    if not task.ticket_ref or not task.ticket_ref.startswith(REF_PREFIX):
        return
    number = int(task.ticket_ref.removeprefix(REF_PREFIX))
    ticket = find_ticket(session, task.workspace_id, number)
    if ticket is not None and ticket.state == "open":
        close(ticket, reason)
