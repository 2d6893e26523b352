"""Agent processes: the rows the runtime's reports move, and the run counters that move with them.

A process row is not a run row: its status and offsets follow what the runtime reports. The run's
heartbeat, log and usage counters move in the same transaction as the lines they count, without a
version bump (they are facts about output, not state changes, and must not make a decision stale).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from optio.store import runs
from optio.store.models import AgentProcess, Job, Repo, RepoTask, RunLog

# A process in one of these is over: its exit (or its loss) is recorded.
ENDED_STATES = ("exited", "gone")

ACTIVE = ("starting", "alive")


# Read by every launch, output batch and exit, and every look at a running task: built once.
_BY_KEY = select(AgentProcess).where(AgentProcess.key == bindparam("key"))
_LATEST = (select(AgentProcess)
           .where(AgentProcess.run_kind == bindparam("kind"), AgentProcess.run_id == bindparam("run_id"),
                  AgentProcess.purpose == bindparam("purpose"))
           .order_by(AgentProcess.id.desc()).limit(1))


def by_key(session: Session, key: str) -> AgentProcess | None:
    return session.scalar(_BY_KEY, {"key": key})


def latest(session: Session, kind: str, run_id: int, purpose: str = "agent") -> AgentProcess | None:
    return session.scalar(_LATEST, {"kind": kind, "run_id": run_id, "purpose": purpose})


def active_of_run(session: Session, kind: str, run_id: int) -> list[AgentProcess]:
    return list(session.scalars(
        select(AgentProcess).where(AgentProcess.run_kind == kind, AgentProcess.run_id == run_id,
                                   AgentProcess.status.in_(ACTIVE))
    ))


def all_active(session: Session) -> list[AgentProcess]:
    return list(session.scalars(select(AgentProcess).where(AgentProcess.status.in_(ACTIVE))))


def add(session: Session, *, workspace_id: int, key: str, kind: str, run_id: int, attempt: int, purpose: str,
        agent_type: str, log_dir: str, owner: str | None = None) -> None:
    session.add(AgentProcess(workspace_id=workspace_id, key=key, run_kind=kind, run_id=run_id, attempt=attempt,
                             purpose=purpose, agent_type=agent_type, status="starting", log_dir=log_dir,
                             owner=owner))


def take_over(session: Session, process_id: int, *, previous: str | None, owner: str) -> bool:
    """Make `owner` the process's watcher if `previous` still is (a compare-and-swap); whether it did."""
    current = AgentProcess.owner.is_(None) if previous is None else AgentProcess.owner == previous
    result = session.execute(update(AgentProcess).where(AgentProcess.id == process_id, current,
                                                        AgentProcess.status.in_(ACTIVE))
                             .values(owner=owner).execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))


def mark_alive(session: Session, key: str, *, pid: int, start_time: float, timeout_at: float | None) -> None:
    session.execute(update(AgentProcess).where(AgentProcess.key == key, AgentProcess.status == "starting")
                    .values(status="alive", pid=pid, start_time=start_time, timeout_at=timeout_at))


def update_process(session: Session, process_id: int, values: dict[str, Any]) -> None:
    session.execute(update(AgentProcess).where(AgentProcess.id == process_id).values(**values))


def update_by_key(session: Session, key: str, values: dict[str, Any]) -> None:
    session.execute(update(AgentProcess).where(AgentProcess.key == key).values(**values))


def agent_config(session: Session, kind: str, run_id: int) -> dict[str, Any]:
    """The run's agent config (a job run's comes from its job)."""
    run = session.get(runs.model_for(kind), run_id)
    if run is None:
        return {}
    config = getattr(run, "agent_config", None)
    if config is None and hasattr(run, "job_id"):
        job = session.get(Job, run.job_id)
        config = job.agent_config if job is not None else None
    return dict(config or {})


def log_counters(session: Session, kind: str, run_id: int) -> tuple[int, int]:
    """(bytes stored, bytes dropped) of the run's log."""
    model = runs.model_for(kind)
    row = session.execute(select(model.log_bytes, model.log_dropped_bytes).where(model.id == run_id)).first()
    return (row[0] or 0, row[1] or 0) if row is not None else (0, 0)


def add_run_output(session: Session, kind: str, run_id: int, *, now: datetime, log_bytes: int, dropped_bytes: int,
                   cost_usd: float = 0.0, input_tokens: int = 0, output_tokens: int = 0, cache_tokens: int = 0,
                   cost_imputed: bool = False, session_id: str | None = None) -> None:
    """Move the run's heartbeat and output counters (increments, so concurrent reports add up)."""
    model = runs.model_for(kind)
    values: dict[str, Any] = {"heartbeat_at": now, "log_bytes": model.log_bytes + log_bytes}
    if dropped_bytes:
        values["log_dropped_bytes"] = model.log_dropped_bytes + dropped_bytes
    if input_tokens or output_tokens or cost_usd:
        values.update(cost_usd=model.cost_usd + cost_usd, input_tokens=model.input_tokens + input_tokens,
                      output_tokens=model.output_tokens + output_tokens,
                      cache_tokens=model.cache_tokens + cache_tokens)
        if cost_imputed:
            values["cost_imputed"] = True
    if session_id and hasattr(model, "agent_session_id"):
        values["agent_session_id"] = session_id
    session.execute(update(model).where(model.id == run_id).values(**values))


def throttle_repo_of_task(session: Session, task_id: int, until: datetime) -> None:
    task = session.get(RepoTask, task_id)
    if task is not None:
        session.execute(update(Repo).where(Repo.id == task.repo_id).values(rate_limited_until=until))


def tail_lines(session: Session, kind: str, run_id: int, attempt: int, streams: tuple[str, ...],
               limit: int) -> list[str]:
    """The last `limit` stored lines of an attempt on `streams`, oldest first."""
    rows = session.scalars(
        select(RunLog.text).where(RunLog.run_kind == kind, RunLog.run_id == run_id, RunLog.attempt == attempt,
                                  RunLog.stream.in_(streams))
        .order_by(RunLog.seq.desc()).limit(limit)
    )
    return list(reversed(list(rows)))
