"""The counts behind the exact concurrency caps, read inside the transaction that starts a run.

On SQLite write transactions are serialized already (BEGIN IMMEDIATE); on PostgreSQL an advisory lock
serializes the starts, so the count a start sees includes every start committed before it.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from optio.store import processes
from optio.store.models import AgentProcess, JobRun, PersistentAgent, RepoTask, ReviewRun
from optio.store.repo_tasks import holds_slot

ADMISSION_LOCK_KEY = 0x0F710  # any constant shared by every Optio replica
ACTIVE: dict[type[Any], tuple[str, ...]] = {
    JobRun: ("running",), ReviewRun: ("running",), PersistentAgent: ("provisioning", "running"),
}


def serialize_starts(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADMISSION_LOCK_KEY})


# Both counts are read by every start, inside its write transaction: one statement each, built once.
# A repo task counts as its repo's cap counts it: until the agent of its current attempt has ended.
_ACTIVE_RUNS = select(functools.reduce(operator.add, [
    select(func.count()).select_from(RepoTask).where(holds_slot()).scalar_subquery(),
    *(select(func.count()).select_from(model).where(model.state.in_(states)).scalar_subquery()
      for model, states in ACTIVE.items()),
]))
_ACTIVE_PROCESSES = (select(func.count()).select_from(AgentProcess)
                     .where(AgentProcess.status.in_(processes.ACTIVE)))


def active_runs(session: Session) -> int:
    return session.scalar(_ACTIVE_RUNS) or 0


def active_processes(session: Session) -> int:
    return session.scalar(_ACTIVE_PROCESSES) or 0
