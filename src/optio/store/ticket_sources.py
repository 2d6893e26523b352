"""Ticket sources, the links from their tickets to spawned tasks, and the outbox of comments and closes owed
to them.

A link is unique by (source, external id) and is inserted in the transaction that creates its task, so a
ticket seen twice (a duplicate webhook, a relabel, the poller after a restart) cannot spawn a second task:
the second insert fails and takes its task down with it. Lifecycle notes are queued as action rows in the
transaction of the task's state change (see `on_transition`), one per (link, event).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from optio.errors import Conflict, NotFound
from optio.store.models import RepoTask, TicketAction, TicketLink, TicketSource, Trigger
from optio.store.types import utcnow

# (task state entered) → the lifecycle note it owes the ticket; `merged` also closes it.
EVENTS: dict[str, str] = {"pr_opened": "pr_opened", "completed": "merged"}


def aad_for(source_id: int) -> bytes:
    """What a source's sealed webhook secret is bound to (so it cannot be moved to another row)."""
    return f"ticket-source:{source_id}".encode()


# --- sources -------------------------------------------------------------------------------------------------

def insert(session: Session, workspace_id: int, fields: dict[str, Any]) -> TicketSource:
    row = TicketSource(workspace_id=workspace_id, **fields)
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"a ticket source named {fields.get('name')!r} exists", field="name") from None
    return row


def find(session: Session, workspace_id: int, ref: str | int) -> TicketSource:
    """By id or name, within the workspace."""
    q = select(TicketSource).where(TicketSource.workspace_id == workspace_id)
    text = str(ref)
    q = q.where(TicketSource.id == int(text)) if text.isdigit() else q.where(TicketSource.name == text)
    row = session.scalar(q)
    if row is None:
        raise NotFound(f"ticket source {ref} not found")
    return row


def get(session: Session, source_id: int) -> TicketSource | None:
    """Any workspace's source: a webhook delivery proves which one it is for by its signature."""
    return session.get(TicketSource, source_id)


def list_sources(session: Session, workspace_id: int) -> list[TicketSource]:
    return list(session.scalars(select(TicketSource).where(TicketSource.workspace_id == workspace_id)
                                .order_by(TicketSource.id)))


def delete(session: Session, row: TicketSource) -> None:
    session.delete(row)


def set_webhook_secret(row: TicketSource, ciphertext: str) -> None:
    row.webhook_secret_ciphertext = ciphertext


def with_secrets(session: Session) -> list[TicketSource]:
    """Every source holding a sealed webhook secret (key rotation re-seals them)."""
    return list(session.scalars(select(TicketSource).where(TicketSource.webhook_secret_ciphertext.is_not(None))))


def record_poll(session: Session, source_id: int, *, error: str | None, now: datetime) -> None:
    session.execute(update(TicketSource).where(TicketSource.id == source_id)
                    .values(last_polled_at=now, last_error=error))


# --- ticket triggers -----------------------------------------------------------------------------------------

def triggers_of(session: Session, source_id: int) -> list[Trigger]:
    """The active ticket triggers watching a source."""
    return list(session.scalars(select(Trigger).where(Trigger.type == "ticket", Trigger.source_id == source_id,
                                                      Trigger.paused.is_(False)).order_by(Trigger.id)))


def polled_sources(session: Session) -> list[TicketSource]:
    """Every source some active ticket trigger watches (what the poller looks at)."""
    ids = select(Trigger.source_id).where(Trigger.type == "ticket", Trigger.paused.is_(False))
    return list(session.scalars(select(TicketSource).where(TicketSource.id.in_(ids)).order_by(TicketSource.id)))


# --- links -----------------------------------------------------------------------------------------------------

def linked_ids(session: Session, source_id: int, external_ids: list[str]) -> set[str]:
    if not external_ids:
        return set()
    return set(session.scalars(select(TicketLink.external_id).where(
        TicketLink.source_id == source_id, TicketLink.external_id.in_(external_ids))))


def insert_link(session: Session, source: TicketSource, *, external_id: str, trigger_id: int | None, task_id: int,
                key: str, url: str, title: str, now: datetime) -> TicketLink:
    """The link and the pick-up note it owes; a Conflict when the ticket is linked already (the caller's whole
    transaction, task included, must then roll back)."""
    link = TicketLink(workspace_id=source.workspace_id, source_id=source.id, external_id=external_id,
                      trigger_id=trigger_id, task_id=task_id, key=key[:200], url=url, title=title[:500], posted=[],
                      created_at=now)
    session.add(link)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"ticket {key} of source {source.id} already spawned a task") from None
    _queue(session, link, "picked_up", now)
    return link


def set_task_ticket_ref(session: Session, task_id: int, ref: str) -> None:
    """Name the ticket on the task (a local ticket's `local#N` also links the ticket back to the task)."""
    session.execute(update(RepoTask).where(RepoTask.id == task_id).values(ticket_ref=ref[:300]))


def links(session: Session, workspace_id: int, *, limit: int = 500) -> list[tuple[TicketLink, TicketSource]]:
    """Newest first, with their sources."""
    rows = session.execute(select(TicketLink, TicketSource).join(TicketSource, TicketSource.id == TicketLink.source_id)
                           .where(TicketLink.workspace_id == workspace_id)
                           .order_by(TicketLink.id.desc()).limit(limit)).all()
    return [(link, source) for link, source in rows]


def link_of_task(session: Session, task_id: int) -> TicketLink | None:
    return session.scalar(select(TicketLink).where(TicketLink.task_id == task_id))


def _queue(session: Session, link: TicketLink, event: str, now: datetime) -> None:
    exists = session.scalar(select(TicketAction.id).where(TicketAction.link_id == link.id,
                                                          TicketAction.event == event))
    if exists is None:
        session.add(TicketAction(workspace_id=link.workspace_id, link_id=link.id, event=event, state="pending",
                                 attempts=0, next_attempt_at=now, created_at=now))


def on_transition(session: Session, *, kind: str, run_id: int, from_state: str | None, to_state: str | None,
                  now: datetime) -> None:
    """Queue the note a linked task's state change owes its ticket (PR opened, merged-and-close)."""
    if kind != "repo_task" or to_state is None or from_state == to_state or to_state not in EVENTS:
        return
    link = link_of_task(session, run_id)
    if link is not None:
        _queue(session, link, EVENTS[to_state], now)


# --- the outbox ------------------------------------------------------------------------------------------------

def claim_due(session: Session, now: datetime, lease_s: float, limit: int = 20
              ) -> list[tuple[TicketAction, TicketLink, TicketSource, RepoTask | None]]:
    """Pending actions whose time came, oldest first, each taken by compare-and-swap on its attempt count and
    hidden for `lease_s` while it is sent. A link's later note waits for its earlier ones (a ticket reads
    picked up, PR opened, merged in that order)."""
    rows = list(session.scalars(select(TicketAction).where(
        TicketAction.state == "pending", TicketAction.next_attempt_at <= now)
        .order_by(TicketAction.id).limit(limit)))
    taken: list[tuple[TicketAction, TicketLink, TicketSource, RepoTask | None]] = []
    for row in rows:
        earlier = session.scalar(select(TicketAction.id).where(
            TicketAction.link_id == row.link_id, TicketAction.id < row.id, TicketAction.state == "pending"))
        if earlier is not None:
            continue
        done = session.execute(update(TicketAction).where(
            TicketAction.id == row.id, TicketAction.attempts == row.attempts, TicketAction.state == "pending")
            .values(attempts=row.attempts + 1, next_attempt_at=now + timedelta(seconds=lease_s))
        ).rowcount  # type: ignore[attr-defined]
        if not done:
            continue
        session.refresh(row)
        link = session.get(TicketLink, row.link_id)
        source = session.get(TicketSource, link.source_id) if link is not None else None
        if link is not None and source is not None:
            taken.append((row, link, source, session.get(RepoTask, link.task_id)))
    return taken


def record_action(session: Session, action_id: int, *, ok: bool, error: str | None,
                  retry_at: datetime | None) -> None:
    """One attempt's result: done (and noted on the link), pending again at `retry_at`, or failed for good."""
    values: dict[str, Any] = {"last_error": error}
    if ok:
        values.update(state="done", done_at=utcnow(), last_error=None)
    elif retry_at is not None:
        values.update(next_attempt_at=retry_at)
    else:
        values.update(state="failed")
    session.execute(update(TicketAction).where(TicketAction.id == action_id).values(**values))
    if ok:
        action = session.get(TicketAction, action_id)
        link = session.get(TicketLink, action.link_id) if action is not None else None
        if action is not None and link is not None and action.event not in (link.posted or []):
            link.posted = [*(link.posted or []), action.event]


def actions_of(session: Session, link_id: int) -> list[TicketAction]:
    return list(session.scalars(select(TicketAction).where(TicketAction.link_id == link_id)
                                .order_by(TicketAction.id)))
