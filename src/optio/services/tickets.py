"""Local tickets: the embedded issue tracker. A ticket can be handed to an agent as a repo task, and
is closed in the same transaction that completes that task."""

from __future__ import annotations

from typing import Any

from optio.errors import Conflict
from optio.services import tasks as task_service
from optio.services import ticket_intake
from optio.services.repos import find_repo
from optio.store import tickets as ticket_store
from optio.store.db import Database
from optio.store.models import RepoTask, Ticket, TicketComment
from optio.store.session import Session
from optio.store.tickets import REF_PREFIX, close_for_task

__all__ = ["REF_PREFIX", "close_for_task", "close_ticket", "comments", "create_ticket", "get_ticket", "label",
           "list_tickets", "work_on"]


def create_ticket(db: Database, workspace_id: int, data: dict[str, Any]) -> Ticket:
    """File a ticket; one a local ticket trigger matches becomes its task at once (the poller is the net)."""
    with db.write() as session:
        repo_id = find_repo(session, workspace_id, data["repo"]).id if data.get("repo") else None
        ticket = ticket_store.insert_ticket(session, workspace_id, repo_id=repo_id, title=data["title"],
                                            body=data.get("body") or "", labels=list(data.get("labels") or []))
    if ticket.labels:
        ticket_intake.sync_local(db, workspace_id, ticket.number)
    return ticket


def label(db: Database, workspace_id: int, number: int, add: list[str], remove: list[str]) -> Ticket:
    """Change a ticket's labels; gaining a trigger's label picks it up (once: a relabel spawns nothing more)."""
    with db.write() as session:
        ticket = get_ticket(session, workspace_id, number)
        gone = {x.lower() for x in remove}
        ticket_store.set_labels(ticket, [x for x in [*(ticket.labels or []), *add] if x.lower() not in gone])
    ticket_intake.sync_local(db, workspace_id, number)
    with db.read() as session:
        return get_ticket(session, workspace_id, number)


def comments(db: Database, workspace_id: int, number: int) -> list[TicketComment]:
    with db.read() as session:
        return ticket_store.comments(session, get_ticket(session, workspace_id, number))


def get_ticket(session: Session, workspace_id: int, number: int) -> Ticket:
    return ticket_store.get_ticket(session, workspace_id, number)


def list_tickets(db: Database, workspace_id: int, state: str | None = None) -> list[Ticket]:
    with db.read() as session:
        return ticket_store.list_tickets(session, workspace_id, state)


def close_ticket(db: Database, workspace_id: int, number: int, reason: str) -> Ticket:
    with db.write() as session:
        ticket = get_ticket(session, workspace_id, number)
        ticket_store.close(ticket, reason)
        return ticket


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
        ticket_store.link_task(session, workspace_id, number, task.id)
    return task
