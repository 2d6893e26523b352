"""Triggers and their fires. A schedule's fire is claimed here: a compare-and-swap on the trigger's version
that moves `last_due_at`, plus a fire row unique per (trigger, due time), in the transaction that creates the
run, so a due time yields one run however many servers look at it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from optio.errors import Conflict, NotFound
from optio.store.models import Trigger, TriggerFire
from optio.store.types import utcnow


def insert(session: Session, workspace_id: int, fields: dict[str, Any]) -> Trigger:
    row = Trigger(workspace_id=workspace_id, **fields)
    session.add(row)
    session.flush()
    return row


def find(session: Session, workspace_id: int, trigger_id: int) -> Trigger:
    row = session.scalar(select(Trigger).where(Trigger.id == trigger_id, Trigger.workspace_id == workspace_id))
    if row is None:
        raise NotFound(f"trigger {trigger_id} not found")
    return row


def get(session: Session, trigger_id: int) -> Trigger | None:
    """Any workspace's trigger: a webhook call proves which one is meant by its signature, not by a login."""
    return session.get(Trigger, trigger_id)


def list_triggers(session: Session, workspace_id: int) -> list[Trigger]:
    return list(session.scalars(select(Trigger).where(Trigger.workspace_id == workspace_id).order_by(Trigger.id)))


def active_schedules(session: Session) -> list[Trigger]:
    return list(session.scalars(select(Trigger).where(Trigger.type == "schedule", Trigger.paused.is_(False))
                                .order_by(Trigger.id)))


def for_target(session: Session, workspace_id: int, target_type: str, target_id: int) -> list[Trigger]:
    return list(session.scalars(select(Trigger).where(
        Trigger.workspace_id == workspace_id, Trigger.target_type == target_type, Trigger.target_id == target_id)))


def delete(session: Session, row: Trigger) -> None:
    session.delete(row)


def set_secret(session: Session, row: Trigger, ciphertext: str) -> None:
    row.secret_ciphertext = ciphertext


def set_paused(session: Session, row: Trigger, paused: bool, *, resume_from: datetime | None) -> Trigger:
    """Pause or resume by compare-and-swap. Resuming counts due times from `resume_from`, so the ticks that
    passed while paused are not made up for."""
    values: dict[str, Any] = {"paused": paused, "version": row.version + 1, "updated_at": utcnow()}
    if not paused and resume_from is not None and (row.last_due_at is None or row.last_due_at < resume_from):
        values["last_due_at"] = resume_from
    done = session.execute(update(Trigger).where(Trigger.id == row.id, Trigger.version == row.version)
                           .values(**values)).rowcount  # type: ignore[attr-defined]
    if not done:
        raise Conflict(f"trigger {row.id} changed meanwhile; try again")
    session.refresh(row)
    return row


def claim_due(session: Session, trigger_id: int, version: int, due_at: datetime) -> bool:
    """Move the schedule's `last_due_at` to `due_at` if nobody else changed the trigger since it was read."""
    done = session.execute(update(Trigger).where(Trigger.id == trigger_id, Trigger.version == version,
                                                 Trigger.paused.is_(False))
                           .values(last_due_at=due_at, version=version + 1)).rowcount  # type: ignore[attr-defined]
    return bool(done)


def record_fire(session: Session, row: Trigger, *, due_at: datetime | None, source: str, run_kind: str,
                run_id: int, now: datetime) -> TriggerFire:
    """The fire and the run it made; a second fire of one due time is a Conflict (the whole transaction,
    run included, must then roll back)."""
    trigger_id = row.id
    fire = TriggerFire(workspace_id=row.workspace_id, trigger_id=trigger_id, due_at=due_at, source=source,
                       run_kind=run_kind, run_id=run_id, created_at=now)
    session.add(fire)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"trigger {trigger_id} already fired for {due_at}") from None
    session.execute(update(Trigger).where(Trigger.id == trigger_id).values(last_fired_at=now))
    return fire


def fires(session: Session, workspace_id: int, trigger_id: int, limit: int = 50) -> list[TriggerFire]:
    return list(session.scalars(select(TriggerFire).where(
        TriggerFire.workspace_id == workspace_id, TriggerFire.trigger_id == trigger_id)
        .order_by(TriggerFire.id.desc()).limit(limit)))


def with_secrets(session: Session) -> list[Trigger]:
    """Every trigger holding a sealed signing secret (key rotation re-seals them)."""
    return list(session.scalars(select(Trigger).where(Trigger.secret_ciphertext.is_not(None))))
