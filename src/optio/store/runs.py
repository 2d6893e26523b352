"""Run rows of every kind: lookup, compare-and-swap writes, and their event trail.

Everything here takes the workspace explicitly; the only unscoped reads are the ones the control
plane makes for a queue item, which already carries its workspace.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

from optio.domain.executor_errors import ERROR_TEXT_MAX, cleared, same_failure
from optio.security.redact import Redactor, registry_for
from optio.store import logs, notifications, ticket_sources
from optio.store.models import JobRun, PersistentAgent, RepoTask, ReviewRun, RunEvent
from optio.store.types import utcnow

RUN_MODELS: dict[str, type[Any]] = {"job_run": JobRun, "repo_task": RepoTask, "pr_review": ReviewRun,
                                    "agent": PersistentAgent}
# Free-text columns that may quote agent output or command lines; they pass the redactor on every write.
REDACTED_COLUMNS = frozenset({"error", "note", "executor_error"})


def redactor_for_run(session: Session, kind: str, run_id: int, workspace_id: int | None = None) -> Redactor:
    """The redactor for a run's text: its workspace's secrets, plus its repo's for a repo task or review.

    The repo is looked up only when the workspace has repo-scoped secrets at all.
    """
    registry = registry_for(str(session.get_bind().engine.url))
    model = model_for(kind)
    if workspace_id is None:
        workspace_id = session.scalar(select(model.workspace_id).where(model.id == run_id))
        if workspace_id is None:
            return registry.for_scope(-1)
    repo_id: int | None = None
    if registry.has_repo_scopes(workspace_id):
        if kind == "repo_task":
            repo_id = session.scalar(select(RepoTask.repo_id).where(RepoTask.id == run_id))
        elif kind == "pr_review":
            repo_id = session.scalar(select(RepoTask.repo_id).join(ReviewRun, ReviewRun.task_id == RepoTask.id)
                                     .where(ReviewRun.id == run_id))
    return registry.for_scope(workspace_id, repo_id)


def _redact_text(value: Any, session: Session, kind: str, run_id: int, workspace_id: int | None = None) -> Any:
    if not isinstance(value, str) or not value:
        return value
    return redactor_for_run(session, kind, run_id, workspace_id).redact(value)


def model_for(kind: str) -> type[Any]:
    try:
        return RUN_MODELS[kind]
    except KeyError:
        raise ValueError(f"unknown run kind {kind!r}") from None


def get_run(session: Session, kind: str, run_id: int, workspace_id: int) -> Any | None:
    model = model_for(kind)
    return session.scalar(select(model).where(model.id == run_id, model.workspace_id == workspace_id))


def cas_update(
    session: Session,
    kind: str,
    run_id: int,
    expected_version: int | None,
    values: Mapping[str, Any],
    *,
    now: datetime | None = None,
    expected_state: str | None = None,
) -> bool:
    """`UPDATE ... SET version = version + 1 WHERE id = ? AND version = ?`; False means we lost a race.

    `expected_state` guards by state instead of (or besides) the version, for a write that must land
    whatever output or intent bumped the version meanwhile, as long as the run is still where it was.
    Free-text columns are redacted with the run's own secrets.
    """
    values = {k: _redact_text(v, session, kind, run_id) if k in REDACTED_COLUMNS else v for k, v in values.items()}
    params = {"cas_id": run_id, "cas_version": expected_version, "cas_state": expected_state,
              "cas_now": now or utcnow(), **{f"v_{k}": v for k, v in values.items()}}
    stmt = _cas_statement(kind, tuple(sorted(values)), expected_version is not None, expected_state is not None)
    changed = session.execute(stmt, params).rowcount == 1  # type: ignore[attr-defined]
    if changed and "state" in values:
        logs.mark_changed(session, kind, run_id)  # a run that ended ends its live log streams now
    return changed


# Every state change is one of these writes, inside the write lock: one statement per shape (run kind, columns
# set, guards), built once with bound parameters, since building and keying it cost more than running it.
_CAS: dict[tuple[str, tuple[str, ...], bool, bool], Executable] = {}


def _cas_statement(kind: str, columns: tuple[str, ...], by_version: bool, by_state: bool) -> Executable:
    key = (kind, columns, by_version, by_state)
    stmt = _CAS.get(key)
    if stmt is None:
        model = model_for(kind)
        guards = [model.id == bindparam("cas_id")]
        if by_version:
            guards.append(model.version == bindparam("cas_version"))
        if by_state:
            guards.append(model.state == bindparam("cas_state"))
        stmt = _CAS[key] = (
            update(model).where(*guards)
            .values(version=model.version + 1, updated_at=bindparam("cas_now", type_=model.updated_at.type),
                    **{name: bindparam(f"v_{name}", type_=getattr(model, name).type) for name in columns})
            .execution_options(synchronize_session=False)
        )
    return stmt


def count_reconcile_attempt(session: Session, kind: str, run_id: int) -> None:
    """One more deferred look at the run (not a state change: the version stays)."""
    model = model_for(kind)
    session.execute(update(model).where(model.id == run_id)
                    .values(reconcile_attempts=model.reconcile_attempts + 1))


def record_event(
    session: Session,
    *,
    workspace_id: int,
    kind: str,
    run_id: int,
    event: str,
    from_state: str | None,
    to_state: str | None,
    reason: str,
    now: datetime | None = None,
) -> None:
    text = _redact_text(reason, session, kind, run_id, workspace_id)
    session.add(
        RunEvent(
            workspace_id=workspace_id,
            run_kind=kind,
            run_id=run_id,
            event=event,
            from_state=from_state,
            to_state=to_state,
            reason=text,
            created_at=now or utcnow(),
        )
    )
    notifications.on_transition(session, workspace_id=workspace_id, kind=kind, run_id=run_id, from_state=from_state,
                                to_state=to_state, reason=text, now=now or utcnow())
    ticket_sources.on_transition(session, kind=kind, run_id=run_id, from_state=from_state, to_state=to_state,
                                 now=now or utcnow())


def list_events(session: Session, kind: str, run_id: int, workspace_id: int) -> list[RunEvent]:
    return list(
        session.scalars(
            select(RunEvent)
            .where(RunEvent.run_kind == kind, RunEvent.run_id == run_id, RunEvent.workspace_id == workspace_id)
            .order_by(RunEvent.id)
        )
    )


def count_active(session: Session, kind: str, states: tuple[str, ...], **filters: Any) -> int:
    model = model_for(kind)
    q = select(func.count()).select_from(model).where(model.state.in_(states))
    for col, value in filters.items():
        q = q.where(getattr(model, col) == value)
    return session.scalar(q) or 0


def non_terminal_ids(session: Session, kind: str, terminal: frozenset[str]) -> list[tuple[int, int]]:
    model = model_for(kind)
    rows = session.execute(select(model.id, model.workspace_id).where(model.state.not_in(terminal)))
    return [(r[0], r[1]) for r in rows]


def record_executor_error(session: Session, kind: str, run_id: int, action: str, error: str, *,
                          now: datetime) -> int | None:
    """Record that applying `action` to the run failed; returns how many times in a row it failed so.

    Only records: the decision reads the count and decides when to retry and when to give the run up.
    Not a compare-and-swap (a failure must be counted whatever the version), but it does not bump the
    version either, so it never makes a concurrent decision stale.
    """
    model = model_for(kind)
    row = session.execute(
        select(model.executor_error_action, model.executor_error, model.executor_error_count)
        .where(model.id == run_id)
    ).first()
    if row is None:
        return None
    error = _redact_text(error, session, kind, run_id)[:ERROR_TEXT_MAX]
    count = (row[2] or 0) + 1 if same_failure(row[0], row[1], action, error) else 1
    session.execute(
        update(model).where(model.id == run_id)
        .values(executor_error_action=action, executor_error=error, executor_error_count=count,
                executor_error_at=now, error=error, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return count


def clear_executor_error(session: Session, kind: str, run_id: int, action: str, count: int) -> None:
    """`action` worked: forget its recorded failures (unless a newer failure was recorded meanwhile)."""
    model = model_for(kind)
    session.execute(
        update(model)
        .where(model.id == run_id, model.executor_error_action == action, model.executor_error_count == count)
        .values(**cleared())
        .execution_options(synchronize_session=False)
    )
