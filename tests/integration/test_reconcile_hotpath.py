"""The batched reconcile hot path on real SQLite files: CAS conflicts, a worker dying mid-batch, and the
same results as the per-item path over random run states.

The runtime is a fake (nothing is launched for real); the database, the queue and the executor are real.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from tests.support.fakes import FakeRuntime, InMemoryForge, NoSecrets
from tests.support.git_remote import make_remote

from optio.config import Settings
from optio.control import executor, hotpath, worker
from optio.control.context import ControlContext
from optio.control.kinds.job import JobRunHandler
from optio.control.kinds.repo import RepoTaskHandler
from optio.control.kinds.review import ReviewRunHandler
from optio.control.ports import ForgeRegistry
from optio.control.processes import DbSink
from optio.forge.worktrees import RepoCaches
from optio.security.redact import registry_for
from optio.store import migrate, queue, workspaces
from optio.store.db import Database
from optio.store.models import AgentProcess, Job, JobRun, ReconcileItem, Repo, RepoTask, RunEvent
from optio.store.queue import ClaimedItem
from optio.store.types import utcnow

LEASE_S = 30.0


@dataclass
class World:
    ctx: ControlContext
    runtime: FakeRuntime
    workspace_id: int

    @property
    def db(self) -> Database:
        return self.ctx.db

    def job(self, *, max_retries: int = 2, max_concurrent: int | None = None) -> int:
        with self.db.write() as s:
            job = Job(workspace_id=self.workspace_id, name=f"job-{utcnow().timestamp()}", prompt_template="p",
                      agent_type="script", agent_config={"command": "true"}, max_retries=max_retries,
                      max_concurrent_runs=max_concurrent)
            s.add(job)
            s.flush()
            return job.id

    def run(self, job_id: int, **values: Any) -> int:
        with self.db.write() as s:
            run = JobRun(workspace_id=self.workspace_id, job_id=job_id, prompt="do it", **values)
            s.add(run)
            s.flush()
            queue.enqueue(s, "job_run", run.id, self.workspace_id, reason="test")
            return run.id

    def row(self, run_id: int) -> JobRun:
        with self.db.read() as s:
            run = s.get(JobRun, run_id)
            assert run is not None
            return run

    def claim(self, name: str = "w-0", **kw: Any) -> list[ClaimedItem]:
        with self.db.write() as s:
            return queue.claim(s, name, lease_s=LEASE_S, limit=worker.CLAIM_BATCH, batch_kinds=hotpath.KINDS,
                               batch_limit=hotpath.BATCH, **kw)

    def queue_rows(self) -> list[tuple[int, str, bool]]:
        """(run id, reason, claimed) of every queue item."""
        with self.db.read() as s:
            rows = s.execute(select(ReconcileItem.run_id, ReconcileItem.reason, ReconcileItem.claimed_until)
                             .order_by(ReconcileItem.run_id))
            return [(r[0], r[1], r[2] is not None) for r in rows]


def make_world(data_dir: Path, db_file: Path | str, max_concurrent_runs: int = 2) -> World:
    url = db_file if isinstance(db_file, str) else f"sqlite:///{db_file}"
    settings = Settings(data_dir=data_dir, database_url=url, max_concurrent_runs=max_concurrent_runs)
    db = Database(settings.resolved_database_url)
    migrate.upgrade(db)
    with db.write() as session:
        workspace_id = workspaces.ensure_default(session).id
    runtime = FakeRuntime()
    ctx = ControlContext(settings=settings, db=db, runtime=runtime, forges=ForgeRegistry({"fake": InMemoryForge()}),
                         worktrees=RepoCaches(settings.resolved_data_dir), secrets=NoSecrets(),
                         redactors=registry_for(str(db.engine.url)))
    runtime.sink = DbSink(db, settings)
    ctx.handlers = {h.kind: h for h in (JobRunHandler(), RepoTaskHandler(), ReviewRunHandler())}
    return World(ctx=ctx, runtime=runtime, workspace_id=workspace_id)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path / "data", tmp_path / "optio.db")
    yield w
    w.db.dispose()


def test_a_batch_of_terminal_runs_is_decided_and_acked_without_a_write_to_the_runs(world: World) -> None:
    job_id = world.job()
    ids = [world.run(job_id, state="completed", version=3) for _ in range(hotpath.BATCH + 20)]
    items = world.claim()
    assert len(items) == hotpath.BATCH  # one claim takes a whole batch of job runs
    worker.reconcile_items(world.ctx, items)
    worker.reconcile_items(world.ctx, world.claim())
    assert world.queue_rows() == []
    assert {world.row(i).version for i in ids} == {3}


def test_a_claim_takes_a_whole_batch_of_job_runs_but_one_item_of_another_kind(world: World) -> None:
    with world.db.write() as s:
        for run_id in range(1, 11):
            queue.enqueue(s, "repo_task", run_id, world.workspace_id)
            queue.enqueue(s, "job_run", 100 + run_id, world.workspace_id)
    items = world.claim()
    assert sum(i.kind == "repo_task" for i in items) == worker.CLAIM_BATCH == 1  # a slow kind holds none behind it
    assert sum(i.kind == "job_run" for i in items) == 10


def test_a_cas_conflict_inside_a_batch_does_not_clobber_the_change_and_the_run_is_reconciled_again(
        world: World) -> None:
    job_id = world.job()
    raced = world.run(job_id, state="failed", control_intent="retry", attempts=3, error="boom")
    calm = world.run(job_id, state="cancelled", control_intent="retry", attempts=1)
    idle = world.run(job_id, state="completed")
    planned = hotpath.plan(world.ctx, world.claim())
    assert {d.item.run_id: d.action.name for d in planned.decided if d.action} == {
        raced: "transition", calm: "transition", idle: "noop"}
    # Between the batch's snapshot and its write, someone else changes the run (a CAS write of their own).
    with world.db.write() as s:
        s.execute(update(JobRun).where(JobRun.id == raced)
                  .values(error="edited meanwhile", version=JobRun.version + 1))
    assert hotpath.apply(world.ctx, planned) == []
    run = world.row(raced)
    assert (run.state, run.error, run.control_intent) == ("failed", "edited meanwhile", "retry")  # not clobbered
    assert world.row(calm).state == "queued"
    # The loser is back in the queue, released and ready; the others' items are gone or re-enqueued after queued.
    assert (raced, "stale", False) in world.queue_rows()
    assert idle not in [r[0] for r in world.queue_rows()]
    again = [i for i in world.claim() if i.run_id == raced]
    worker.reconcile_items(world.ctx, again)
    run = world.row(raced)
    assert (run.state, run.error, run.control_intent, run.attempts) == ("queued", None, None, 0)


def test_a_worker_dying_mid_batch_writes_nothing_and_another_worker_takes_the_batch_after_the_lease(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = world.job()
    ids = [world.run(job_id, state="failed", control_intent="retry", attempts=1) for _ in range(10)]
    items = world.claim("dead-0")
    assert len(items) == 10

    calls = 0
    real_apply_in = executor.apply_in

    def dies_on_the_fifth(*args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise SystemExit("worker thread killed")  # not an Exception: nothing catches it on the way out
        return real_apply_in(*args, **kw)

    monkeypatch.setattr(executor, "apply_in", dies_on_the_fifth)
    with pytest.raises(SystemExit):
        worker.reconcile_items(world.ctx, items)
    monkeypatch.setattr(executor, "apply_in", real_apply_in)
    # Nothing of the batch landed: the four applied before the death were rolled back with it.
    assert {world.row(i).state for i in ids} == {"failed"}
    assert world.claim("alive-0") == []  # still leased to the dead worker
    later = world.claim("alive-0", now=utcnow() + timedelta(seconds=LEASE_S + 1))
    assert sorted(i.run_id for i in later) == ids
    worker.reconcile_items(world.ctx, later)
    assert {world.row(i).state for i in ids} == {"queued"}
    with world.db.read() as s:
        assert s.scalar(select(RunEvent.id).where(RunEvent.event == "retried").limit(1)) is not None


def test_runs_the_hot_path_does_not_decide_go_through_the_per_item_path(world: World) -> None:
    job_id = world.job()
    starts = world.run(job_id, state="queued")  # capacity free: StartAgent launches, so per item
    running = world.run(job_id, state="running", attempts=1)  # its snapshot asks the runtime
    items = world.claim()
    planned = hotpath.plan(world.ctx, items)
    assert sorted(i.run_id for i in planned.rest) == [starts, running]
    worker.reconcile_items(world.ctx, items)
    assert world.row(starts).state == "running"
    assert len(world.runtime.launched) == 1


def test_four_workers_drain_a_mixed_queue_on_postgres_while_runs_change_under_them(pg_url: str,
                                                                                   tmp_path: Path) -> None:
    w = make_world(tmp_path / "data", pg_url, max_concurrent_runs=1)
    try:
        job_id = w.job()
        blocker = w.run(job_id, state="completed")  # its live process holds the only slot: nothing starts
        with w.db.write() as s:
            s.query(ReconcileItem).filter(ReconcileItem.run_id == blocker).delete()
            s.add(AgentProcess(key="blocker", run_kind="job_run", run_id=blocker, attempt=1, agent_type="script",
                               status="alive", log_dir="/nonexistent", workspace_id=w.workspace_id))
        done = [w.run(job_id, state="completed", version=2) for _ in range(80)]
        retried = [w.run(job_id, state="failed", control_intent="retry", attempts=3) for _ in range(60)]
        paused = [w.run(job_id, state="cancelled", control_intent="pause") for _ in range(40)]
        errors: list[BaseException] = []

        def meddle() -> None:  # another writer's CAS-style writes to runs the batches are deciding
            try:
                for i in range(200):
                    with w.db.write() as s:
                        s.execute(update(JobRun).where(JobRun.id == retried[i % len(retried)])
                                  .values(error=f"edit {i}", version=JobRun.version + 1))
            except BaseException as exc:
                errors.append(exc)

        def drain(name: str) -> None:
            try:
                idle = 0
                while idle < 3:
                    items = w.claim(name)
                    idle = 0 if items else idle + 1
                    worker.reconcile_items(w.ctx, items)
            except BaseException as exc:
                errors.append(exc)

        with structlog.testing.capture_logs() as logs:
            meddler = threading.Thread(target=meddle)
            meddler.start()
            threads = [threading.Thread(target=drain, args=(f"w-{i}",)) for i in range(4)]
            for t in threads:
                t.start()
            meddler.join()
            for t in threads:
                t.join()
            drain("w-last")  # whatever a CAS conflict re-enqueued after the others stopped
        assert errors == []
        assert [e for e in logs if e["event"] in ("hot_path_error", "worker_error", "executor_error")] == []
        assert {w.row(i).version for i in done} == {2}
        # (an edit after a run's retry stays: the meddler's writes are never overwritten by a stale decision)
        assert {(w.row(i).state, w.row(i).control_intent, w.row(i).attempts) for i in retried} == {("queued", None, 0)}
        assert {(w.row(i).state, w.row(i).control_intent) for i in paused} == {("cancelled", None)}
        with w.db.read() as s:
            assert s.scalar(select(func.count()).select_from(RunEvent).where(RunEvent.event == "retried")) == 60
        # Only the retried (now queued, waiting for the slot) runs are left in the queue, each once.
        assert sorted(r[0] for r in w.queue_rows()) == sorted(retried)
    finally:
        w.db.dispose()


def test_queued_runs_beyond_the_free_slots_are_rechecked_in_the_batch_not_one_by_one(world: World) -> None:
    job_id = world.job()
    ids = [world.run(job_id, state="queued") for _ in range(10)]
    planned = hotpath.plan(world.ctx, world.claim())
    assert [i.run_id for i in planned.rest] == ids[:2]  # two free slots (max_concurrent_runs=2): two starts
    assert {d.action.reason for d in planned.decided if d.action} == {"waiting for capacity"}
    assert hotpath.apply(world.ctx, planned) == planned.rest
    for item in planned.rest:
        worker.reconcile_one(world.ctx, item)
    assert [world.row(i).state for i in ids] == ["running"] * 2 + ["queued"] * 8
    assert len(world.runtime.launched) == 2


# --- the same outcomes as the per-item path --------------------------------------------------------------

RUN_STATES = st.fixed_dictionaries({
    "state": st.sampled_from(["queued", "running", "completed", "failed", "cancelled"]),
    "control_intent": st.sampled_from([None, None, "retry", "cancel", "pause"]),
    "attempts": st.integers(0, 4),
    "backoff_s": st.sampled_from([None, -30.0, 300.0]),
    "executor_errors": st.sampled_from([0, 0, 1, 5]),
    "version": st.integers(1, 5),
})


@pytest.fixture(scope="module")
def template_db() -> Iterator[Path]:
    """One migrated database copied for every example (migrating twice per example would dominate)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "template.db"
        db = Database(f"sqlite:///{path}")
        migrate.upgrade(db)
        with db.write() as session:
            workspaces.ensure_default(session)
        db.dispose()
        yield path


def _seed(w: World, runs: list[dict[str, Any]], full: bool) -> None:
    """Each run in a job of its own, so that no decision of the batch changes another's snapshot (the paths
    differ in the order they look at runs, not in what they do with one). With `full`, an agent process of
    a run outside the batch holds the only global slot."""
    now = utcnow()
    if full:
        blocker = w.run(w.job(), state="completed")
        with w.db.write() as s:
            s.query(ReconcileItem).filter(ReconcileItem.run_id == blocker).delete()
            s.add(AgentProcess(key=f"blocker-{blocker}", run_kind="job_run", run_id=blocker, attempt=1,
                               agent_type="script", status="alive", log_dir="/nonexistent",
                               workspace_id=w.workspace_id))
    for spec in runs:
        backoff = None if spec["backoff_s"] is None else now + timedelta(seconds=spec["backoff_s"])
        errors = spec["executor_errors"]
        w.run(w.job(max_retries=2), state=spec["state"], control_intent=spec["control_intent"],
              attempts=spec["attempts"], version=spec["version"], reconcile_backoff_until=backoff,
              executor_error_count=errors, executor_error_action="start_agent" if errors else None,
              executor_error="launch failed" if errors else None, executor_error_at=now if errors else None)


def _outcome(w: World) -> dict[str, Any]:
    with w.db.read() as s:
        runs = [tuple(r) for r in s.execute(
            select(JobRun.id, JobRun.state, JobRun.version, JobRun.control_intent, JobRun.attempts, JobRun.error,
                   JobRun.reconcile_backoff_until.is_(None), JobRun.finished_at.is_(None), JobRun.executor_error_count)
            .order_by(JobRun.id))]
        events = [tuple(r) for r in s.execute(
            select(RunEvent.run_id, RunEvent.event, RunEvent.from_state, RunEvent.to_state, RunEvent.reason)
            .order_by(RunEvent.run_id, RunEvent.id))]
    # Which runs are queued again (and released) is the guarantee; the reason text of an item enqueued twice
    # (a recheck and a wake-up for freed capacity) depends on which of the two came last.
    queued = [(run_id, claimed) for run_id, _reason, claimed in w.queue_rows()]
    return {"runs": runs, "events": events, "queue": queued, "launched": len(w.runtime.launched)}


# No shrinking: an example costs two databases, and the falsifying example printed is small already.
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(runs=st.lists(RUN_STATES, min_size=1, max_size=8), full=st.booleans())
def test_the_batched_path_ends_where_the_per_item_path_ends(template_db: Path, runs: list[dict[str, Any]],
                                                            full: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        old_file, new_file = Path(tmp) / "old.db", Path(tmp) / "new.db"
        shutil.copy(template_db, old_file)
        shutil.copy(template_db, new_file)
        old, new = (make_world(Path(tmp) / "old", old_file, 1 if full else 100),
                        make_world(Path(tmp) / "new", new_file, 1 if full else 100))
        try:
            for w in (old, new):
                _seed(w, runs, full)
            items = old.claim()
            # The per-item path, as the worker ran it before the hot path, in the order the batched path
            # takes the runs (the batch first, then what it leaves): a decision that wakes queued runs for
            # freed capacity then finds the same runs queued in both.
            planned = hotpath.plan(old.ctx, items)
            batched = [d.item for d in planned.decided]
            assert sorted(i.id for i in batched + planned.rest) == sorted(i.id for i in items)
            for item in batched + [i for i in items if i in planned.rest]:
                worker.reconcile_one(old.ctx, item)
            with old.db.write() as s:
                queue.ack(s, items)
            worker.reconcile_items(new.ctx, new.claim())
            assert _outcome(new) == _outcome(old)
        finally:
            old.db.dispose()
            new.db.dispose()


def test_a_provisioned_task_starts_its_agent_in_the_same_pass(world: World, tmp_path: Path) -> None:
    """Provisioning makes the next step (starting the agent) ready at once: the worker holding the item takes
    it too, instead of acking and leaving it to another pass through the queue."""
    remote = make_remote(tmp_path)
    with world.db.write() as s:
        repo = Repo(workspace_id=world.workspace_id, name="chain", remote_url=str(remote), forge="fake")
        s.add(repo)
        s.flush()
        task = RepoTask(workspace_id=world.workspace_id, repo_id=repo.id, title="t", prompt="p", agent_type="script",
                        agent_config={"command": "true"}, state="queued")
        s.add(task)
        s.flush()
        task_id = task.id
        queue.enqueue(s, "repo_task", task_id, world.workspace_id, reason="test")
    [item] = world.claim()
    worker.reconcile_one(world.ctx, item)
    with world.db.read() as s:
        found = s.get(RepoTask, task_id)
        assert found is not None and found.state == "running" and found.worktree_ready
    assert [spec.key for spec in world.runtime.launched] == [f"repo_task:{task_id}:1"]
    with world.db.write() as s:
        queue.ack(s, [item])
    with world.db.read() as s:  # the task stays queued for a later look, but none at once: it would only find
        due = queue.next_ready_in(s)  # the agent running (its exit wakes the task)
    assert due is not None and due > 20
