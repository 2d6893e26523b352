"""Local tickets: the embedded issue tracker. A ticket can be handed to an agent as a repo task, and
is closed in the same transaction that completes that task."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from optio.errors import Conflict, NotFound
from optio.services import tasks as task_service
from optio.services.repos import find_repo
from optio.store.db import Database
from optio.store.models import RepoTask, Ticket
from optio.store.types import utcnow

REF_PREFIX = "local#"


def create_ticket(db: Database, workspace_id: int, data: dict[str, Any]) -> Ticket:
    with db.write() as session:
        repo_id = find_repo(session, workspace_id, data["repo"]).id if data.get("repo") else None
        number = (session.scalar(select(func.max(Ticket.number)).where(Ticket.workspace_id == workspace_id)) or 0) + 1
        ticket = Ticket(workspace_id=workspace_id, number=number, repo_id=repo_id, title=data["title"],
                        body=data.get("body") or "", state="open")
        session.add(ticket)
    return ticket


def get_ticket(session: Session, workspace_id: int, number: int) -> Ticket:
    ticket = session.scalar(select(Ticket).where(Ticket.workspace_id == workspace_id, Ticket.number == number))
    if ticket is None:
        raise NotFound(f"ticket {number} not found")
    return ticket


def list_tickets(db: Database, workspace_id: int, state: str | None = None) -> list[Ticket]:
    with db.read() as session:
        q = select(Ticket).where(Ticket.workspace_id == workspace_id).order_by(Ticket.number.desc())
        if state:
            q = q.where(Ticket.state == state)
        return list(session.scalars(q.limit(500)))


def close_ticket(db: Database, workspace_id: int, number: int, reason: str) -> Ticket:
    with db.write() as session:
        ticket = get_ticket(session, workspace_id, number)
        if ticket.state != "closed":
            ticket.state, ticket.closed_reason, ticket.closed_at = "closed", reason, utcnow()
        return ticket


def close_for_task(session: Session, task: RepoTask, reason: str) -> None:
    """Close the ticket a completed task came from, inside the caller's transaction."""
    if not task.ticket_ref or not task.ticket_ref.startswith(REF_PREFIX):
        return
    number = int(task.ticket_ref.removeprefix(REF_PREFIX))
    ticket = session.scalar(select(Ticket).where(Ticket.workspace_id == task.workspace_id, Ticket.number == number))
    if ticket is not None and ticket.state == "open":
        ticket.state, ticket.closed_reason, ticket.closed_at = "closed", reason, utcnow()


def work_on(db: Database, workspace_id: int, number: int, data: dict[str, Any]) -> RepoTask:
    """Hand a ticket to an agent: a repo task whose prompt is the ticket, linked both ways."""
    with db.read() as session:
        ticket = get_ticket(session, workspace_id, number)
        if ticket.state != "open":
            raise Conflict(f"ticket {number} is {ticket.state}", field="state")
        if ticket.task_id is not None:
            raise Conflict(f"ticket {number} is already handled by task {ticket.task_id}", field="task_id")
        repo = data.get("repo") or ticket.repo_id
        if repo is None:
            raise Conflict("the ticket names no repo; pass one", field="repo")
        prompt = f"{ticket.title}\n\n{ticket.body}".strip()
    task = task_service.create_task(db, workspace_id, {
        **data, "repo": str(repo), "title": data.get("title") or ticket.title,
        "prompt": data.get("prompt") or prompt, "ticket_ref": f"{REF_PREFIX}{number}",
    })
    with db.write() as session:
        get_ticket(session, workspace_id, number).task_id = task.id
    return task
