"""Job runs: snapshot building and side effects around the pure job decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from optio.control import processes
from optio.control.admission import admit_job_run
from optio.control.context import ControlContext
from optio.control.handlers import Loaded, Outcome
from optio.domain.actions import Action
from optio.domain.reconcile.job import decide_job_run
from optio.domain.snapshot import Capacity, ExecutorErrorPolicy, JobRunSnapshot, ProcessView, RunView
from optio.domain.states import TERMINAL, RunKind
from optio.store import admission, job_runs, notifications, queue
from optio.store.session import Session

KIND = RunKind.JOB_RUN.value


@dataclass(frozen=True)
class JobRunFacts:
    """What launching a job run needs beyond its snapshot."""

    job_id: int
    agent_type: str
    agent_config: dict[str, Any]
    prompt: str
    timeout_s: float | None
    secret_names: tuple[str, ...]


JobLoaded = Loaded[JobRunSnapshot, JobRunFacts]


def run_view(run: Any, kind: RunKind) -> RunView:
    return RunView(
        id=run.id, kind=kind, state=run.state, version=run.version, control_intent=run.control_intent,
        reconcile_backoff_until=run.reconcile_backoff_until, reconcile_attempts=run.reconcile_attempts,
        attempts=run.attempts, heartbeat_at=run.heartbeat_at, started_at=run.started_at,
        created_at=run.created_at, error=run.error, executor_error_action=run.executor_error_action,
        executor_error=run.executor_error, executor_error_count=run.executor_error_count or 0,
        executor_error_at=run.executor_error_at,
    )


def executor_error_policy(ctx: ControlContext) -> ExecutorErrorPolicy:
    settings = ctx.settings
    return ExecutorErrorPolicy(max_errors=settings.max_executor_errors,
                               backoff_base_s=settings.executor_error_backoff_s,
                               backoff_cap_s=settings.executor_error_backoff_cap_s)


def active_process_count(session: Session) -> int:
    return admission.active_processes(session)


def needs_capacity(run: Any) -> bool:
    """Whether the decision for this run reads the capacity (only a queued run without an intent starts)."""
    return bool(run.state == "queued" and run.control_intent is None)


def job_capacity(ctx: ControlContext, active_processes: int, running_for_job: int,
                 max_for_job: int | None) -> Capacity:
    return Capacity(running_global=active_processes, max_global=ctx.settings.max_concurrent_runs,
                    running_scope=running_for_job, max_scope=max_for_job)


def job_snapshot(ctx: ControlContext, run: Any, *, max_retries: int, budget_usd: float | None, capacity: Capacity,
                 process: ProcessView | None, now: datetime) -> JobRunSnapshot:
    """The decision's snapshot of a job run row (an ORM row or a hot-path Core row: same attribute names)."""
    return JobRunSnapshot(
        now=now,
        run=run_view(run, RunKind.JOB_RUN),
        max_retries=max_retries,
        process=process,
        capacity=capacity,
        stall_threshold_s=ctx.settings.stall_threshold_s,
        budget_usd=budget_usd,
        cost_usd=run.cost_usd,
        executor_errors=executor_error_policy(ctx),
    )


class JobRunHandler:
    kind = KIND
    terminal = TERMINAL[RunKind.JOB_RUN]

    def build_snapshot(self, ctx: ControlContext, session: Session, run_id: int, workspace_id: int,
                       now: datetime) -> JobLoaded | None:
        row = job_runs.load(session, run_id, workspace_id)
        if row is None:
            return None
        run, job = row
        # Only the parts a state can use are read: capacity matters to queued runs, the process to running
        # ones. Terminal runs (most of a resync sweep) then cost a single query.
        capacity = Capacity()
        if needs_capacity(run):
            capacity = job_capacity(ctx, active_process_count(session), job_runs.running_for_job(session, job.id),
                                    job.max_concurrent_runs)
        process = None
        if run.state == "running":
            process = processes.process_view(ctx, processes.latest_process(session, KIND, run.id))
        snap = job_snapshot(ctx, run, max_retries=job.max_retries, budget_usd=job.budget_usd, capacity=capacity,
                            process=process, now=now)
        facts = JobRunFacts(job_id=job.id, agent_type=job.agent_type, agent_config=dict(job.agent_config or {}),
                            prompt=run.prompt, timeout_s=job.timeout_s,
                            secret_names=tuple(job.secret_names or ()))
        return Loaded(workspace_id=workspace_id, snapshot=snap, facts=facts)

    def decide(self, snapshot: Any) -> Action:
        return decide_job_run(snapshot)

    def admit(self, ctx: ControlContext, session: Session, loaded: JobLoaded, to_state: str) -> bool:
        """Starting a queued run takes a slot: re-check the caps inside the start's own transaction."""
        if not (loaded.run.state == "queued" and to_state == "running"):
            return True
        cap = loaded.snapshot.capacity
        return admit_job_run(session, loaded.run.id, loaded.facts.job_id, ctx.settings.max_concurrent_runs,
                             cap.max_scope)

    def launch(self, ctx: ControlContext, loaded: JobLoaded, action: Any, attempt: int) -> None:
        facts = loaded.facts
        processes.launch(
            ctx,
            processes.LaunchRequest(
                kind=KIND, run_id=loaded.run.id, workspace_id=loaded.workspace_id, attempt=attempt,
                agent_type=facts.agent_type, agent_config=facts.agent_config,
                prompt=action.prompt or facts.prompt, cwd=ctx.run_dir(KIND, loaded.run.id) / "work",
                env=ctx.secret_env(loaded.workspace_id, list(facts.secret_names), run=(KIND, loaded.run.id)),
                timeout_s=facts.timeout_s or ctx.settings.agent_timeout_s,
            ),
        )

    def apply_special(self, ctx: ControlContext, loaded: JobLoaded, action: Any, now: datetime) -> Outcome:
        return Outcome("error", f"job runs do not support action {action.name!r}")

    def on_transition(self, ctx: ControlContext, session: Session, loaded: JobLoaded, to_state: str,
                      now: datetime) -> None:
        if loaded.run.state == "running" and to_state != "running":
            wake_queued_job_runs(session)
        snap: JobRunSnapshot = loaded.snapshot
        if (to_state == "failed" and loaded.run.state == "running" and snap.budget_usd is not None
                and snap.cost_usd >= snap.budget_usd):
            # The decision stops a running run over its budget before anything else (domain/reconcile/job.py).
            notifications.budget_exceeded(
                session, workspace_id=loaded.workspace_id, kind=KIND, run_id=loaded.run.id, state=to_state,
                spent_usd=snap.cost_usd, budget_usd=snap.budget_usd, now=now,
                reason=f"budget exceeded: ${snap.cost_usd:.4f} spent of ${snap.budget_usd:.4f}")

    def after_commit(self, ctx: ControlContext, loaded: JobLoaded, action: Any) -> None:
        return None


def wake_queued_job_runs(session: Session, limit: int = 10) -> None:
    """A slot was freed: look at the oldest queued runs now instead of at their next capacity recheck."""
    for run_id, ws in job_runs.oldest_queued(session, limit):
        queue.enqueue(session, KIND, run_id, ws, reason="capacity freed")
