"""Many runs in a real database at once, bulk-inserted with Core: what the volume tests and `bench/` start from.

Rows carry realistic states and are spread over several workspaces, each with its own repo and job; a run's
`created_at` grows with its id, a second apart, as if created one after the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from optio.store.db import Database
from optio.store.models import Job, JobRun, PersistentAgent, Repo, RepoTask, ReviewRun, Workspace

BATCH = 5000
START = datetime(2026, 1, 1, tzinfo=UTC)
TASK_STATES = ("completed",) * 5 + ("failed", "cancelled", "pending", "queued", "running", "pr_opened",
                                     "needs_attention", "waiting_on_deps", "provisioning")
OPEN_TASK_STATES = ("pending", "queued", "running", "pr_opened", "needs_attention", "waiting_on_deps", "provisioning")
OPEN_JOB_STATES = ("queued", "running")
OPEN_REVIEW_STATES = ("queued", "running")
OPEN_AGENT_STATES = ("idle", "queued", "running", "paused")


@dataclass(frozen=True)
class Scope:
    """One seeded workspace: its id, its repo and its job."""

    workspace_id: int
    repo_id: int
    job_id: int


def scopes(db: Database, n: int = 3) -> list[Scope]:
    """`n` workspaces (the default one counts if it exists), each with a repo `bench` and a job `bench`."""
    out = []
    with db.write() as s:
        existing = [w.id for w in s.query(Workspace).order_by(Workspace.id)]
        for i in range(n - len(existing)):
            ws = Workspace(slug=f"vol-{i}", name=f"volume {i}")
            s.add(ws)
            s.flush()
            existing.append(ws.id)
        for ws_id in existing[:n]:
            repo = Repo(workspace_id=ws_id, name="bench", remote_url="/nowhere", agent_type="script",
                        agent_config={"command": "true"})
            job = Job(workspace_id=ws_id, name="bench", prompt_template="x", agent_type="script",
                      agent_config={"command": "true"})
            s.add_all([repo, job])
            s.flush()
            out.append(Scope(ws_id, repo.id, job.id))
    return out


def _run_row(scope: Scope, state: str, i: int) -> dict[str, object]:
    when = START + timedelta(seconds=i)
    return {"workspace_id": scope.workspace_id, "state": state, "version": 1, "attempts": 0, "reconcile_attempts": 0,
            "cost_usd": 0.0, "cost_imputed": False, "input_tokens": 0, "output_tokens": 0, "cache_tokens": 0,
            "executor_error_count": 0, "log_bytes": 0, "log_dropped_bytes": 0, "created_at": when,
            "updated_at": when}


def _batches(rows: Iterator[dict[str, object]]) -> Iterator[list[dict[str, object]]]:
    batch: list[dict[str, object]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def task_rows(sc: list[Scope], n: int, states: tuple[str, ...] = TASK_STATES, first: int = 0
              ) -> Iterator[dict[str, object]]:
    for i in range(first, first + n):
        scope = sc[i % len(sc)]
        yield {**_run_row(scope, states[(i // len(sc)) % len(states)], i), "repo_id": scope.repo_id,
               "title": f"task {i}: change something", "prompt": "change something", "agent_type": "script",
               "agent_config": {}, "priority": 0, "max_retries": 1, "resume_count": 0, "human_resumes": 0,
               "resume_keys": [], "worktree_ready": False, "secret_names": [], "review_settings": {}}


def insert_tasks(db: Database, sc: list[Scope], n: int, states: tuple[str, ...] = TASK_STATES, first: int = 0) -> None:
    """`n` repo tasks round-robin over the scopes, states cycling through `states`."""
    for batch in _batches(task_rows(sc, n, states, first)):
        with db.write() as s:
            s.execute(RepoTask.__table__.insert(), batch)


def insert_mixed_runs(db: Database, sc: list[Scope], n: int, *, terminal_too: int = 0) -> dict[str, int]:
    """`n` non-terminal runs of every kind (half repo tasks, a third job runs, the rest review runs and a few
    persistent agents), plus `terminal_too` finished job runs; returns how many of each kind are non-terminal."""
    agents = min(300, n // 100)
    reviews = (n - agents) // 6
    jobs = (n - agents) // 3
    tasks = n - agents - reviews - jobs
    insert_tasks(db, sc, tasks, OPEN_TASK_STATES)
    with db.read() as s:
        task_ids = [r[0] for r in s.execute(RepoTask.__table__.select().with_only_columns(RepoTask.id).limit(1000))]

    def job_rows() -> Iterator[dict[str, object]]:
        for i in range(jobs + terminal_too):
            scope = sc[i % len(sc)]
            state = OPEN_JOB_STATES[i % 2] if i < jobs else "completed"
            yield {**_run_row(scope, state, i), "job_id": scope.job_id, "params": {}, "prompt": "x"}

    def review_rows() -> Iterator[dict[str, object]]:
        for i in range(reviews):
            scope = sc[i % len(sc)]
            yield {**_run_row(scope, OPEN_REVIEW_STATES[i % 2], i), "task_id": task_ids[i % len(task_ids)],
                   "repo_id": scope.repo_id, "head_sha": "0" * 40, "agent_type": "script", "agent_config": {},
                   "prompt": "review"}

    def agent_rows() -> Iterator[dict[str, object]]:
        for i in range(agents):
            scope = sc[i % len(sc)]
            yield {**_run_row(scope, OPEN_AGENT_STATES[i % len(OPEN_AGENT_STATES)], i), "slug": f"agent-{i}",
                   "name": f"agent {i}", "system_prompt": "", "operator_manual": "", "agent_type": "script",
                   "agent_config": {}, "lifecycle": "on-demand", "idle_timeout_s": 600.0,
                   "max_consecutive_failures": 3, "secret_names": [], "consecutive_failures": 0, "turn_count": 0}

    for model, rows in ((JobRun, job_rows()), (ReviewRun, review_rows()), (PersistentAgent, agent_rows())):
        for batch in _batches(rows):
            with db.write() as s:
                s.execute(model.__table__.insert(), batch)
    return {"repo_task": tasks, "job_run": jobs, "pr_review": reviews, "agent": agents}
