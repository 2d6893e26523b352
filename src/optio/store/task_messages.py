"""Messages people send to a repo task's agent; each is also a run event on the task's timeline."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from optio.store.models import TaskMessage

UNDELIVERED = ("queued", "sent")


def add(session: Session, *, workspace_id: int, task_id: int, text: str, interrupt: bool,
        created_by: int | None, now: datetime) -> TaskMessage:
    row = TaskMessage(workspace_id=workspace_id, task_id=task_id, text=text, interrupt=interrupt, status="queued",
                      created_by=created_by, created_at=now)
    session.add(row)
    session.flush()
    return row


def listed(session: Session, workspace_id: int, task_id: int) -> list[TaskMessage]:
    return list(session.scalars(select(TaskMessage).where(
        TaskMessage.workspace_id == workspace_id, TaskMessage.task_id == task_id).order_by(TaskMessage.id)))


def undelivered(session: Session, task_id: int) -> list[TaskMessage]:
    """Messages the agent has not taken yet, oldest first: they go into its next prompt."""
    return list(session.scalars(select(TaskMessage).where(
        TaskMessage.task_id == task_id, TaskMessage.status.in_(UNDELIVERED)).order_by(TaskMessage.id)))


def mark(session: Session, message_id: int, *, status: str, via: str | None = None, attempt: int | None = None,
         now: datetime | None = None, only_from: tuple[str, ...] = UNDELIVERED, task_id: int | None = None) -> bool:
    """Move a message on (a conditional write: a message delivered once is never delivered again)."""
    values: dict[str, object] = {"status": status}
    if via is not None:
        values["delivered_via"] = via
    if attempt is not None:
        values["delivered_attempt"] = attempt
    if now is not None and status == "delivered":
        values["delivered_at"] = now
    q = update(TaskMessage).where(TaskMessage.id == message_id, TaskMessage.status.in_(only_from))
    if task_id is not None:
        q = q.where(TaskMessage.task_id == task_id)
    result = session.execute(q.values(**values))
    return bool(getattr(result, "rowcount", 0))
