"""The database side of a metrics scrape: queue depth and age, runs by state (one small query each)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from optio.store.models import ReconcileItem
from optio.store.runs import RUN_MODELS


def queue_facts(session: Session, now: datetime) -> tuple[int, int, float]:
    """(entries, entries due now, seconds the oldest due entry has waited)."""
    depth = session.scalar(select(func.count()).select_from(ReconcileItem)) or 0
    due, oldest = session.execute(
        select(func.count(), func.min(ReconcileItem.not_before)).where(ReconcileItem.not_before <= now)
    ).one()
    age = 0.0
    if oldest is not None:
        oldest = oldest if oldest.tzinfo is not None else oldest.replace(tzinfo=now.tzinfo)
        age = max(0.0, (now - oldest).total_seconds())
    return int(depth), int(due or 0), age


def runs_by_state(session: Session) -> list[tuple[str, str, int]]:
    found: list[tuple[str, str, int]] = []
    for kind, model in RUN_MODELS.items():
        for state, count in session.execute(select(model.state, func.count()).group_by(model.state)):
            found.append((kind, str(state), int(count)))
    return found
