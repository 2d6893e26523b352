"""Forge webhook deliveries and the repo tasks an event touches: the hook route's reads and writes."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from optio.store import runs
from optio.store.models import ForgeDelivery, Repo, RepoTask
from optio.store.session import Session
from optio.store.types import utcnow

# A forge redelivers within hours; ids older than this are forgotten so the table stays small.
DELIVERY_MEMORY = timedelta(days=7)


def repo_for_hook(session: Session, repo_id: int) -> Repo | None:
    return session.get(Repo, repo_id)


def record_delivery(session: Session, repo_id: int, delivery_id: str, event: str, *,
                    now: datetime | None = None) -> bool:
    """Remember a delivery; False when this repo already had it (a redelivery or a replay)."""
    now = now or utcnow()
    if session.scalar(select(ForgeDelivery.id).where(ForgeDelivery.repo_id == repo_id,
                                                     ForgeDelivery.delivery_id == delivery_id)) is not None:
        return False
    # Two copies arriving at once: the unique constraint fails the second transaction (the caller answers 200).
    session.add(ForgeDelivery(repo_id=repo_id, delivery_id=delivery_id[:200], event=event[:100], received_at=now))
    session.flush()
    session.execute(delete(ForgeDelivery).where(ForgeDelivery.received_at < now - DELIVERY_MEMORY))
    return True


def task_of_repo(session: Session, repo_id: int, task_id: int, finished: frozenset[str]) -> tuple[int, int] | None:
    """(task id, workspace id) of one unfinished task of the repo, None when it is not the repo's or is over."""
    row = session.execute(select(RepoTask.id, RepoTask.workspace_id).where(
        RepoTask.id == task_id, RepoTask.repo_id == repo_id, RepoTask.state.not_in(finished))).first()
    return None if row is None else (row[0], row[1])


def tasks_with_branch(session: Session, repo_id: int, finished: frozenset[str]) -> list[tuple[int, int]]:
    """Every unfinished task of the repo that pushed a branch: what a change of the base may affect."""
    rows = session.execute(select(RepoTask.id, RepoTask.workspace_id).where(
        RepoTask.repo_id == repo_id, RepoTask.state.not_in(finished), RepoTask.branch.is_not(None)))
    return [(r[0], r[1]) for r in rows]


def open_tasks_by_forge(session: Session, forge_kind: str, states: tuple[str, ...]) -> list[tuple[int, int, int]]:
    """(repo id, task id, workspace id) of the tasks in ``states`` on repos of one forge kind (the poller's list)."""
    rows = session.execute(select(RepoTask.repo_id, RepoTask.id, RepoTask.workspace_id)
                           .join(Repo, Repo.id == RepoTask.repo_id)
                           .where(Repo.forge == forge_kind, RepoTask.state.in_(states), RepoTask.branch.is_not(None)))
    return [(r[0], r[1], r[2]) for r in rows]


FORGE_WAIT_PREFIX = "waiting for the forge: "


def note_forge_wait(session: Session, kind: str, run_id: int, workspace_id: int, reason: str, *,
                    now: datetime | None = None) -> None:
    """Show on the run why it waits (its ``note``, plus a timeline event when the reason is new).

    Not a CAS write: a note is not state; it must not make a concurrent transition lose its race.
    """
    model = runs.model_for(kind)
    if not hasattr(model, "note"):
        return
    text = FORGE_WAIT_PREFIX + reason
    current = session.scalar(select(model.note).where(model.id == run_id))
    if current == text:
        return
    session.execute(update(model).where(model.id == run_id).values(note=text)
                    .execution_options(synchronize_session=False))
    runs.record_event(session, workspace_id=workspace_id, kind=kind, run_id=run_id, event="forge_busy",
                      from_state=None, to_state=None, reason=reason, now=now)


def clear_forge_wait(session: Session, kind: str, run_id: int) -> None:
    """The forge answers again: drop the waiting note (only that note, never another)."""
    model = runs.model_for(kind)
    if hasattr(model, "note"):
        session.execute(update(model).where(model.id == run_id, model.note.startswith(FORGE_WAIT_PREFIX))
                        .values(note=None).execution_options(synchronize_session=False))


def ticket_ref_of(session: Session, task_id: int) -> str | None:
    return session.scalar(select(RepoTask.ticket_ref).where(RepoTask.id == task_id))
