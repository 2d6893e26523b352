"""Reads behind the workspace event stream: run events after an id, log activity and cost changes.

Run events are the rows the executor and stores already write in the same transaction as each state change,
so their id is the stream's resumable position. Log activity and costs are read as they are now; they are
not replayed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from optio.store.models import JobRun, RepoTask, ReviewRun, RunEvent, RunLog

COST_MODELS: dict[str, Any] = {"job_run": JobRun, "repo_task": RepoTask, "pr_review": ReviewRun}


def last_event_id(session: Session) -> int:
    return session.scalar(select(func.max(RunEvent.id))) or 0


def event_ids_after(session: Session, after: int, limit: int) -> list[tuple[int, datetime]]:
    """Ids (of every workspace) after `after`, with when each was written: the caller checks them for holes a
    transaction still in flight would fill, before it moves past them. Nothing else of another workspace."""
    rows = session.execute(select(RunEvent.id, RunEvent.created_at).where(RunEvent.id > after)
                           .order_by(RunEvent.id).limit(limit))
    return [(r[0], r[1]) for r in rows]


def events_between(session: Session, workspace_id: int, after: int, upto: int) -> list[RunEvent]:
    return list(session.scalars(
        select(RunEvent).where(RunEvent.workspace_id == workspace_id, RunEvent.id > after, RunEvent.id <= upto)
        .order_by(RunEvent.id)))


def last_log_row(session: Session) -> int:
    return session.scalar(select(func.max(RunLog.id))) or 0


def log_activity(session: Session, workspace_id: int, after_row: int) -> tuple[list[tuple[str, int, int]], int]:
    """Runs of the workspace with new output since log row `after_row`: (kind, run id, last seq), and the new
    high-water row id (of every workspace, so the next read starts after it)."""
    top = last_log_row(session)
    if top <= after_row:
        return [], after_row
    rows = session.execute(
        select(RunLog.run_kind, RunLog.run_id, func.max(RunLog.seq))
        .where(RunLog.workspace_id == workspace_id, RunLog.id > after_row, RunLog.id <= top)
        .group_by(RunLog.run_kind, RunLog.run_id))
    return [(r[0], r[1], r[2]) for r in rows], top


def costs_of(session: Session, workspace_id: int, kind: str, run_ids: list[int]
             ) -> list[tuple[int, float, bool, int, int]]:
    """(id, cost, imputed, input tokens, output tokens) of the workspace's runs of `kind` among `run_ids`."""
    model = COST_MODELS[kind]
    rows = session.execute(
        select(model.id, model.cost_usd, model.cost_imputed, model.input_tokens, model.output_tokens)
        .where(model.workspace_id == workspace_id, model.id.in_(run_ids)))
    return [(r[0], float(r[1] or 0), bool(r[2]), int(r[3] or 0), int(r[4] or 0)) for r in rows]
