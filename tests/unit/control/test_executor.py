"""The executor and the handlers against in-memory fakes of every port, on a real SQLite file.

Every `Action` type is applied through `executor.apply`; a lost CAS race re-enqueues instead of writing;
the caps admit no more starts than they allow; each handler launches through the Runtime port and its
effects land in the store. No process, forge or secret store is real here, the database is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from tests.support.fakes import FakeRuntime, InMemoryForge, NoSecrets
from tests.support.git_remote import git, make_remote
from tests.support.wake import early, waiters

from optio.config import Settings
from optio.control import executor
from optio.control.context import ControlContext
from optio.control.handlers import AnyLoaded, Outcome, RunKindHandler
from optio.control.kinds.job import JobRunHandler
from optio.control.kinds.repo import RepoTaskHandler
from optio.control.kinds.review import ReviewRunHandler
from optio.control.ports import ForgeRegistry, UnknownForge
from optio.control.processes import DbSink
from optio.domain.actions import (
    Action,
    ClearControlIntent,
    DeferWithBackoff,
    LaunchReview,
    MergePullRequest,
    Noop,
    OpenPullRequest,
    PatchStatus,
    Provision,
    StartAgent,
    Transition,
)
from optio.forge.git import branch_for_task
from optio.forge.worktrees import RepoCaches
from optio.security.redact import registry_for
from optio.store import migrate, queue, repo_tasks, workspaces
from optio.store.db import Database
from optio.store.models import (
    AgentProcess,
    Job,
    JobRun,
    PrReview,
    PullRequest,
    ReconcileItem,
    Repo,
    RepoTask,
    ReviewRun,
    RunEvent,
    RunLog,
)
from optio.store.types import utcnow


@dataclass
class World:
    ctx: ControlContext
    runtime: FakeRuntime
    forge: InMemoryForge
    workspace_id: int
    tmp: Path

    @property
    def db(self) -> Database:
        return self.ctx.db

    def handler(self, kind: str) -> RunKindHandler:
        return self.ctx.handler(kind)

    def load(self, kind: str, run_id: int) -> AnyLoaded:
        with self.db.read() as session:
            loaded = self.handler(kind).build_snapshot(self.ctx, session, run_id, self.workspace_id, utcnow())
        assert loaded is not None
        return loaded

    def apply(self, kind: str, run_id: int, action: Action) -> Outcome:
        return executor.apply(self.ctx, self.handler(kind), self.load(kind, run_id), action, utcnow())

    def job_run(self, state: str = "queued", *, max_concurrent: int | None = None) -> int:
        with self.db.write() as session:
            number = len(list(session.scalars(select(Job.id)))) + 1
            job = Job(workspace_id=self.workspace_id, name=f"job-{number}", prompt_template="p", agent_type="script",
                      agent_config={"command": "true"}, max_concurrent_runs=max_concurrent)
            session.add(job)
            session.flush()
            run = JobRun(workspace_id=self.workspace_id, job_id=job.id, prompt="do it", state=state)
            session.add(run)
            session.flush()
            return run.id

    def run(self, kind: str, run_id: int) -> JobRun | RepoTask:
        model = JobRun if kind == "job_run" else RepoTask
        with self.db.read() as session:
            row = session.get(model, run_id)
            assert row is not None
            return row

    def queued(self, kind: str, run_id: int) -> list[str]:
        with self.db.read() as session:
            return list(session.scalars(select(ReconcileItem.reason).where(ReconcileItem.kind == kind,
                                                                           ReconcileItem.run_id == run_id)))

    def clear_queue(self) -> None:
        with self.db.write() as session:
            session.query(ReconcileItem).delete()

    def events(self, kind: str, run_id: int) -> list[str]:
        with self.db.read() as session:
            return list(session.scalars(select(RunEvent.event).where(RunEvent.run_kind == kind,
                                                                     RunEvent.run_id == run_id)
                                        .order_by(RunEvent.id)))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path / "data", max_concurrent_runs=1)
    db = Database(settings.resolved_database_url)
    migrate.upgrade(db)
    with db.write() as session:
        workspace_id = workspaces.ensure_default(session).id
    runtime = FakeRuntime()
    forge = InMemoryForge()
    redactors = registry_for(str(db.engine.url))
    redactors.put((workspace_id, None, "TOKEN"), "s3cr3t-value")
    ctx = ControlContext(settings=settings, db=db, runtime=runtime, forges=ForgeRegistry({forge.name: forge}),
                         worktrees=RepoCaches(settings.resolved_data_dir), secrets=NoSecrets(),
                         redactors=redactors)
    runtime.sink = DbSink(db, settings)
    ctx.handlers = {h.kind: h for h in (JobRunHandler(), RepoTaskHandler(), ReviewRunHandler())}
    yield World(ctx=ctx, runtime=runtime, forge=forge, workspace_id=workspace_id, tmp=tmp_path)


# --- executor.apply, one action type at a time ---------------------------------------------------------

def test_transition_writes_state_event_and_enqueues_a_follow_up(world: World) -> None:
    run_id = world.job_run("running")
    version = world.run("job_run", run_id).version
    assert world.apply("job_run", run_id, Transition(to="failed", reason="gave up",
                                                     patch={"error": "boom"})).status == "applied"
    run = world.run("job_run", run_id)
    assert (run.state, run.version, run.error) == ("failed", version + 1, "boom")
    assert run.finished_at is not None
    assert world.events("job_run", run_id) == ["transition"]
    # A terminal run is not looked at again; the freed slot wakes queued runs instead.
    assert world.queued("job_run", run_id) == []


def test_transition_with_kill_kills_through_the_runtime(world: World) -> None:
    run_id = world.job_run("queued")
    assert world.apply("job_run", run_id, StartAgent(to="running", reason="go", patch={"attempts": 1})).status == \
        "applied"
    [spec] = world.runtime.launched
    assert world.apply("job_run", run_id, Transition(to="cancelled", reason="asked", kill_process=True)).status == \
        "applied"
    assert world.runtime.killed == [spec.key]


def test_start_agent_launches_through_the_runtime_port_and_records_the_process(world: World) -> None:
    run_id = world.job_run("queued")
    outcome = world.apply("job_run", run_id, StartAgent(to="running", reason="go", patch={"attempts": 1},
                                                        resume_reason="ci_failed"))
    assert outcome.status == "applied"
    [spec] = world.runtime.launched
    assert spec.key == f"job_run:{run_id}:1"
    assert spec.cwd == world.ctx.run_dir("job_run", run_id) / "work"
    with world.db.read() as session:
        proc = session.scalar(select(AgentProcess).where(AgentProcess.key == spec.key))
        assert proc is not None and proc.status == "alive" and proc.pid is not None
    run = world.run("job_run", run_id)
    assert run.state == "running" and run.started_at is not None and run.heartbeat_at is not None
    assert world.events("job_run", run_id) == ["started", "resumed"]


def test_start_agent_that_cannot_spawn_becomes_a_failed_process_the_decision_sees(world: World) -> None:
    run_id = world.job_run("queued")
    world.runtime.fail_launch = "no such thing s3cr3t-value"
    assert world.apply("job_run", run_id, StartAgent(to="running", reason="go", patch={"attempts": 1})).status == \
        "applied"
    with world.db.read() as session:
        proc = session.scalar(select(AgentProcess).where(AgentProcess.run_id == run_id))
        assert proc is not None
        assert (proc.status, proc.exit_reason) == ("exited", "spawn_failed")
        assert proc.error is not None and "s3cr3t-value" not in proc.error  # through the Redactors port
    assert "spawn failed" in world.queued("job_run", run_id)


def test_patch_status_is_a_cas_write_with_its_event(world: World) -> None:
    run_id = world.job_run("running")
    version = world.run("job_run", run_id).version
    assert world.apply("job_run", run_id, PatchStatus(patch={"error": "note s3cr3t-value"}, reason="r",
                                                      event="noted")).status == "applied"
    run = world.run("job_run", run_id)
    assert run.version == version + 1 and run.state == "running"
    assert run.error == "note ***"  # every write to a run row is redacted
    assert world.events("job_run", run_id) == ["noted"]
    assert world.queued("job_run", run_id) == ["after patch"]


def test_clear_control_intent(world: World) -> None:
    run_id = world.job_run("running")
    with world.db.write() as session:
        session.execute(update(JobRun).where(JobRun.id == run_id).values(control_intent="cancel"))
    assert world.apply("job_run", run_id, ClearControlIntent(reason="done")).status == "applied"
    assert world.run("job_run", run_id).control_intent is None
    assert world.queued("job_run", run_id) == ["intent cleared"]


def test_defer_with_backoff_counts_the_attempt_without_a_version_bump(world: World) -> None:
    run_id = world.job_run("running")
    version = world.run("job_run", run_id).version
    outcome = world.apply("job_run", run_id, DeferWithBackoff(reason="later", delay_s=5.0, count_attempt=True))
    assert outcome == Outcome("deferred", "5.0s")
    run = world.run("job_run", run_id)
    assert (run.reconcile_attempts, run.version) == (1, version)
    assert world.queued("job_run", run_id) == ["deferred"]


def test_noop_rechecks_only_when_asked(world: World) -> None:
    run_id = world.job_run("running")
    assert world.apply("job_run", run_id, Noop(reason="nothing")) == Outcome("applied")
    assert world.queued("job_run", run_id) == []
    assert world.apply("job_run", run_id, Noop(reason="soon", recheck_after_s=2.0)) == Outcome("deferred", "2.0s")
    assert world.queued("job_run", run_id) == ["recheck"]


def test_kind_specific_actions_are_refused_by_kinds_without_them(world: World) -> None:
    run_id = world.job_run("running")
    for action in (Provision(reason="x"), OpenPullRequest(reason="x"), LaunchReview(reason="x", head_sha="a"),
                   MergePullRequest(reason="x", head_sha="a")):
        assert world.apply("job_run", run_id, action).status == "error"


# --- stale CAS and admission ------------------------------------------------------------------------------

def test_a_lost_cas_race_writes_nothing_and_re_enqueues(world: World) -> None:
    run_id = world.job_run("running")
    loaded = world.load("job_run", run_id)
    with world.db.write() as session:  # another worker moved the run on since the snapshot
        session.execute(update(JobRun).where(JobRun.id == run_id).values(version=JobRun.version + 1,
                                                                         error="theirs"))
    for action in (Transition(to="failed", reason="mine"), PatchStatus(patch={"error": "mine"}, reason="r"),
                   ClearControlIntent(reason="r"), StartAgent(to="running", reason="r")):
        world.clear_queue()
        outcome = executor.apply(world.ctx, world.handler("job_run"), loaded, action, utcnow())
        assert outcome.status == "stale", action
        assert world.queued("job_run", run_id) == ["stale"]
    run = world.run("job_run", run_id)
    assert (run.state, run.error) == ("running", "theirs")
    assert world.runtime.launched == []  # a lost race never launches anything


def test_admission_re_checks_the_global_cap_inside_the_start(world: World) -> None:
    first, second = world.job_run("queued"), world.job_run("queued")
    stale_second = world.load("job_run", second)  # both saw a free slot
    assert world.apply("job_run", first, StartAgent(to="running", reason="go", patch={"attempts": 1})).status == \
        "applied"
    world.clear_queue()
    outcome = executor.apply(world.ctx, world.handler("job_run"), stale_second,
                             StartAgent(to="running", reason="go", patch={"attempts": 1}), utcnow())
    assert outcome.status == "stale"
    assert world.run("job_run", second).state == "queued"
    assert world.queued("job_run", second) == ["capacity taken meanwhile"]
    assert len(world.runtime.launched) == 1


def test_admission_re_checks_the_per_job_cap(world: World) -> None:
    world.ctx.settings.max_concurrent_runs = 10
    first = world.job_run("queued", max_concurrent=1)
    with world.db.write() as session:  # a second run of the same job
        job_id = session.get(JobRun, first).job_id  # type: ignore[union-attr]
        run = JobRun(workspace_id=world.workspace_id, job_id=job_id, prompt="p", state="queued")
        session.add(run)
        session.flush()
        second = run.id
    stale_second = world.load("job_run", second)
    assert world.apply("job_run", first, StartAgent(to="running", reason="go", patch={"attempts": 1})).status == \
        "applied"
    outcome = executor.apply(world.ctx, world.handler("job_run"), stale_second,
                             StartAgent(to="running", reason="go", patch={"attempts": 1}), utcnow())
    assert outcome.status == "stale" and world.run("job_run", second).state == "queued"


def _repo_with_queue(world: World, slots: int, count: int) -> tuple[int, list[int]]:
    """(repo id, task ids): a repo of `slots` agent slots and `count` queued tasks on it, first in line first."""
    world.ctx.settings.max_concurrent_runs = 10
    remote = make_remote(world.tmp, f"remote-{slots}-{count}.git")
    with world.db.write() as session:
        repo = Repo(workspace_id=world.workspace_id, name=f"slots-{slots}-{count}", remote_url=str(remote),
                    forge="memory", agent_type="script", agent_config={}, max_concurrent=slots)
        session.add(repo)
        session.flush()
        tasks = [RepoTask(workspace_id=world.workspace_id, repo_id=repo.id, title=f"t{i}", prompt="p",
                          agent_type="script", agent_config={"command": "true"}, state="queued")
                 for i in range(count)]
        session.add_all(tasks)
        session.flush()
        return repo.id, [task.id for task in tasks]


def _rate_limit(world: World, repo_id: int) -> None:
    """A vendor rate-limits the repo's agents for the next hour."""
    with world.db.write() as session:
        session.execute(update(Repo).where(Repo.id == repo_id).values(rate_limited_until=utcnow() + timedelta(hours=1)))


def test_a_repo_slot_is_free_once_the_agent_ends_not_once_the_pull_request_is_open(world: World) -> None:
    """The cap bounds agents at work: pushing and opening the PR after the agent exited needs no slot."""
    repo_id, (first_id, second_id, third_id) = _repo_with_queue(world, 1, 3)
    world.apply("repo_task", first_id, Provision(reason="go"))
    assert world.load("repo_task", second_id).snapshot.capacity.full  # provisioning holds the slot
    stale_second = world.load("repo_task", second_id)
    world.apply("repo_task", first_id, StartAgent(to="running", reason="go", patch={"attempts": 1}))
    assert world.load("repo_task", second_id).snapshot.capacity.full  # started, no process row yet: held
    refused = executor.apply(world.ctx, world.handler("repo_task"), stale_second, Provision(reason="go"), utcnow())
    assert refused.status == "stale" and world.run("repo_task", second_id).state == "queued"
    [spec] = world.runtime.launched
    world.clear_queue()
    world.runtime.finish(spec.key, 0)
    # The exit wakes the next in line in its own transaction, and that task may start at once.
    assert world.queued("repo_task", second_id) == ["capacity freed"]
    assert world.queued("repo_task", third_id) == []  # one slot freed: one wake
    assert world.run("repo_task", first_id).state == "running"
    assert not world.load("repo_task", second_id).snapshot.capacity.full
    assert world.apply("repo_task", second_id, Provision(reason="go")).status == "applied"
    assert world.run("repo_task", second_id).state == "provisioning"
    # Opening the first task's PR frees nothing more: the third is not woken to find the slot taken.
    (Path(world.run("repo_task", first_id).worktree_path or "") / "first.txt").write_text("first")
    assert world.apply("repo_task", first_id, OpenPullRequest(reason="done")).status == "applied"
    assert world.run("repo_task", first_id).state == "pr_opened"
    assert world.queued("repo_task", third_id) == []
    # A new attempt of a task holds a slot again from its start, before its process exists.
    with world.db.write() as session:
        session.execute(update(RepoTask).where(RepoTask.id == first_id).values(state="running", attempts=2))
    with world.db.read() as session:
        assert repo_tasks.active_in_repo(session, repo_id) == 2


def test_agents_ending_together_wake_a_task_for_each_freed_slot(world: World) -> None:
    """Each exit wakes as many queued tasks as slots are free: two exits never both wake just the same head
    of the line (which left one slot idle for good, the queue not looked at again until another slot freed)."""
    _, (first, second, third, fourth) = _repo_with_queue(world, 2, 4)
    for task_id in (first, second):
        world.apply("repo_task", task_id, Provision(reason="go"))
        world.apply("repo_task", task_id, StartAgent(to="running", reason="go", patch={"attempts": 1}))
    first_spec, second_spec = world.runtime.launched
    world.clear_queue()
    world.runtime.finish(first_spec.key, 0)
    assert world.queued("repo_task", third) == ["capacity freed"]  # one slot free: the head of the line
    assert world.queued("repo_task", fourth) == []
    world.runtime.finish(second_spec.key, 0)  # before the third was looked at: two slots free now
    assert world.queued("repo_task", third) == ["capacity freed"]
    assert world.queued("repo_task", fourth) == ["capacity freed"]
    for task_id in (third, fourth):
        assert world.apply("repo_task", task_id, Provision(reason="go")).status == "applied"


def test_a_task_leaving_the_queue_passes_the_line_on_while_slots_are_free(world: World) -> None:
    """A slot whose wake went to a task another slot already started is not lost: the next admission wakes
    the next in line while a slot is still free, and wakes nobody once the slots are taken."""
    _, (first, second, third, fourth) = _repo_with_queue(world, 3, 4)
    world.clear_queue()
    world.apply("repo_task", first, Provision(reason="go"))
    assert world.queued("repo_task", second) == ["capacity freed"]  # two slots still free
    assert world.queued("repo_task", third) == ["capacity freed"]
    assert world.queued("repo_task", fourth) == []
    world.apply("repo_task", second, Provision(reason="go"))
    world.clear_queue()
    world.apply("repo_task", third, Provision(reason="go"))  # the last slot: nobody else can start
    assert world.queued("repo_task", fourth) == []


def test_a_rate_limited_repo_passes_its_line_on_to_nobody(world: World) -> None:
    """While a vendor rate-limits the repo it runs one agent: an admission wakes no other queued task."""
    repo_id, (first, second, _) = _repo_with_queue(world, 3, 3)
    _rate_limit(world, repo_id)
    world.clear_queue()
    world.apply("repo_task", first, Provision(reason="go"))
    assert world.run("repo_task", first).state == "provisioning"
    assert world.queued("repo_task", second) == []


def test_a_task_leaving_its_slot_in_a_rate_limited_repo_wakes_one_task(world: World) -> None:
    """A task giving its slot up (here by failing) counts the repo's slots as an agent's exit does: one while a
    vendor rate-limits the repo, so tasks that could only look and go back to waiting are not woken."""
    repo_id, (first, second, third, fourth) = _repo_with_queue(world, 3, 4)
    for task_id in (first, second):
        world.apply("repo_task", task_id, Provision(reason="go"))
    _rate_limit(world, repo_id)
    world.clear_queue()
    assert world.apply("repo_task", first, Transition(to="failed", reason="broke")).status == "applied"
    assert world.queued("repo_task", third) == ["capacity freed"]  # at least one look, as ever
    assert world.queued("repo_task", fourth) == []


# --- handlers' effects through the ports -----------------------------------------------------------------

def test_job_run_output_and_exit_reach_the_store_through_the_sink(world: World) -> None:
    run_id = world.job_run("queued")
    world.apply("job_run", run_id, StartAgent(to="running", reason="go", patch={"attempts": 1}))
    [spec] = world.runtime.launched
    world.clear_queue()
    world.runtime.finish(spec.key, 0, ["hello s3cr3t-value"])
    with world.db.read() as session:
        texts = list(session.scalars(select(RunLog.text).where(RunLog.run_id == run_id)))
    assert texts == ["hello ***"]
    assert "process exited" in world.queued("job_run", run_id)
    loaded = world.load("job_run", run_id)
    action = world.handler("job_run").decide(loaded.snapshot)
    assert executor.apply(world.ctx, world.handler("job_run"), loaded, action, utcnow()).status == "applied"
    assert world.run("job_run", run_id).state == "completed"


@pytest.fixture
def repo_task(world: World) -> tuple[int, int]:
    remote = make_remote(world.tmp)
    with world.db.write() as session:
        repo = Repo(workspace_id=world.workspace_id, name="demo", remote_url=str(remote), forge="memory",
                    agent_type="script", agent_config={})
        session.add(repo)
        session.flush()
        task = RepoTask(workspace_id=world.workspace_id, repo_id=repo.id, title="T", prompt="p",
                        agent_type="script", agent_config={"command": "true"}, state="queued")
        session.add(task)
        session.flush()
        return repo.id, task.id


def test_repo_task_provision_open_pr_and_merge_go_through_worktrees_and_forge_ports(
        world: World, repo_task: tuple[int, int]) -> None:
    _repo_id, task_id = repo_task
    assert world.apply("repo_task", task_id, Provision(reason="go")).status == "applied"
    task = world.run("repo_task", task_id)
    assert task.state == "provisioning" and task.worktree_ready  # type: ignore[union-attr]
    worktree = Path(task.worktree_path)  # type: ignore[union-attr, arg-type]
    assert worktree.is_dir()

    assert world.apply("repo_task", task_id, StartAgent(to="running", reason="go", patch={"attempts": 1})).status \
        == "applied"
    [spec] = world.runtime.launched
    assert spec.cwd == worktree and spec.env["OPTIO_BRANCH"] == branch_for_task(task_id)
    (worktree / "change.txt").write_text("changed\n")
    assert world.apply("repo_task", task_id, OpenPullRequest(reason="agent done")).status == "applied"
    pr = world.forge.pr_of_task(task_id)
    assert pr is not None and pr.info.state == "open"
    assert git("show", f"{pr.info.head_sha}:change.txt", cwd=world.tmp / "remote.git") == "changed\n"
    assert world.run("repo_task", task_id).state == "pr_opened"

    snap = world.load("repo_task", task_id).snapshot
    assert snap.pr is not None and snap.pr.number == pr.info.number and snap.pr.ci_status is None
    assert world.apply("repo_task", task_id, MergePullRequest(reason="green", head_sha=pr.info.head_sha)).status \
        == "applied"
    assert [m.head_sha for m in world.forge.merges] == [pr.info.head_sha]
    assert world.run("repo_task", task_id).state == "completed"
    assert not worktree.exists()  # cleaned up through the Worktrees port


def test_repo_task_merge_refused_by_the_forge_is_deferred_not_completed(world: World,
                                                                        repo_task: tuple[int, int]) -> None:
    repo_id, task_id = repo_task
    world.forge.approval_repos.add(repo_id)
    world.apply("repo_task", task_id, Provision(reason="go"))
    world.apply("repo_task", task_id, StartAgent(to="running", reason="go", patch={"attempts": 1}))
    (Path(world.run("repo_task", task_id).worktree_path or "") / "x.txt").write_text("x\n")  # type: ignore[union-attr]
    world.apply("repo_task", task_id, OpenPullRequest(reason="agent done"))
    pr = world.forge.pr_of_task(task_id)
    assert pr is not None
    outcome = world.apply("repo_task", task_id, MergePullRequest(reason="go", head_sha=pr.info.head_sha))
    assert outcome.status == "deferred" and "approval required" in outcome.detail
    assert world.forge.merges == [] and world.run("repo_task", task_id).state == "pr_opened"


def test_cancelling_a_task_closes_its_pr_on_its_own_forge(world: World, repo_task: tuple[int, int]) -> None:
    repo_id, task_id = repo_task
    world.apply("repo_task", task_id, Provision(reason="go"))
    world.apply("repo_task", task_id, StartAgent(to="running", reason="go", patch={"attempts": 1}))
    (Path(world.run("repo_task", task_id).worktree_path or "") / "y.txt").write_text("y\n")  # type: ignore[union-attr]
    world.apply("repo_task", task_id, OpenPullRequest(reason="agent done"))
    pr = world.forge.pr_of_task(task_id)
    assert pr is not None
    assert world.apply("repo_task", task_id, Transition(to="cancelled", reason="asked")).status == "applied"
    assert world.forge.closed == [(repo_id, pr.info.number)]


def test_repos_on_different_forges_coexist_each_task_on_its_own_forge(world: World) -> None:
    other = InMemoryForge()
    other.name = "other"
    world.ctx.forges = ForgeRegistry({world.forge.name: world.forge, other.name: other})
    world.ctx.settings.max_concurrent_runs = 10
    remote = make_remote(world.tmp)
    tasks = {}
    with world.db.write() as session:
        for kind in ("memory", "other"):
            repo = Repo(workspace_id=world.workspace_id, name=f"on-{kind}", remote_url=str(remote), forge=kind,
                        agent_type="script", agent_config={})
            session.add(repo)
            session.flush()
            task = RepoTask(workspace_id=world.workspace_id, repo_id=repo.id, title=kind, prompt="p",
                            agent_type="script", agent_config={"command": "true"}, state="queued")
            session.add(task)
            session.flush()
            tasks[kind] = task.id
    for kind, task_id in tasks.items():
        world.apply("repo_task", task_id, Provision(reason="go"))
        world.apply("repo_task", task_id, StartAgent(to="running", reason="go", patch={"attempts": 1}))
        (Path(world.run("repo_task", task_id).worktree_path or "") / f"{kind}.txt").write_text(kind)  # type: ignore[union-attr]
        assert world.apply("repo_task", task_id, OpenPullRequest(reason="done")).status == "applied"
    assert world.forge.pr_of_task(tasks["memory"]) is not None and world.forge.pr_of_task(tasks["other"]) is None
    assert other.pr_of_task(tasks["other"]) is not None and other.pr_of_task(tasks["memory"]) is None


def test_a_repo_on_a_forge_the_server_does_not_have_is_a_clear_error(world: World,
                                                                      repo_task: tuple[int, int]) -> None:
    _repo_id, task_id = repo_task
    world.apply("repo_task", task_id, Provision(reason="go"))
    world.ctx.forges = ForgeRegistry({})
    with pytest.raises(UnknownForge, match="no forge of kind 'memory'"):
        world.load("repo_task", task_id)


def test_review_handler_launches_on_base_with_head_read_only_and_records_the_verdict(
        world: World, repo_task: tuple[int, int]) -> None:
    repo_id, task_id = repo_task
    seed = world.tmp / "remote.git-seed"
    git("checkout", "-qb", "feature", cwd=seed)
    (seed / "feature.txt").write_text("new\n")
    git("add", "-A", cwd=seed)
    git("commit", "-qm", "feature", cwd=seed)
    git("push", "-q", "origin", "feature", cwd=seed)
    head = git("rev-parse", "HEAD", cwd=seed).strip()
    with world.db.write() as session:
        pr = PullRequest(workspace_id=world.workspace_id, repo_id=repo_id, task_id=task_id, number=1, title="T",
                         body="", head_branch="feature", head_sha=head, base_branch="main", state="open")
        session.add(pr)
        session.flush()
        review = ReviewRun(workspace_id=world.workspace_id, task_id=task_id, pr_id=pr.id, head_sha=head,
                           agent_type="script", agent_config={"command": "true"}, prompt="review", state="queued")
        session.add(review)
        session.flush()
        review_id, pr_id = review.id, pr.id
    assert world.apply("pr_review", review_id, StartAgent(to="running", reason="go", patch={"attempts": 1})).status \
        == "applied"
    [spec] = world.runtime.launched
    head_dir, verdict_file = Path(spec.env["OPTIO_PR_HEAD_DIR"]), Path(spec.env["OPTIO_REVIEW_VERDICT_FILE"])
    assert (head_dir / "feature.txt").read_text() == "new\n"  # exported through the Worktrees port
    assert not (spec.cwd / "feature.txt").exists()  # the review runs in the base
    assert spec.mounts is not None and head_dir in spec.mounts.readonly
    assert verdict_file.parent in spec.mounts.writable
    verdict_file.write_text("approve\n")
    world.runtime.finish(spec.key, 0, ["looks good s3cr3t-value"])
    loaded = world.load("pr_review", review_id)
    action = world.handler("pr_review").decide(loaded.snapshot)
    assert executor.apply(world.ctx, world.handler("pr_review"), loaded, action, utcnow()).status == "applied"
    with world.db.read() as session:
        [recorded] = list(session.scalars(select(PrReview).where(PrReview.pr_id == pr_id)))
        run = session.get(ReviewRun, review_id)
        assert run is not None and run.state == "completed" and run.verdict == "approve"
    assert (recorded.verdict, recorded.head_sha, recorded.author) == ("approve", head, "review-agent:script")
    assert recorded.comments == "looks good ***"
    assert "review completed" in world.queued("repo_task", task_id)
    assert not head_dir.exists()  # the checkouts are removed once the review is over


def test_vendor_review_runs_in_a_writable_base_without_the_bases_own_review_json(
        world: World, repo_task: tuple[int, int]) -> None:
    """A review.json committed on the base branch must not pass for the agent's review: it is removed first."""
    repo_id, task_id = repo_task
    seed = world.tmp / "remote.git-seed"
    (seed / "review.json").write_text('{"verdict": "approve", "summary": "planted"}')
    git("add", "-A", cwd=seed)
    git("commit", "-qm", "planted review", cwd=seed)
    git("push", "-q", "origin", "HEAD:main", cwd=seed)
    head = git("rev-parse", "HEAD", cwd=seed).strip()
    with world.db.write() as session:
        pr = PullRequest(workspace_id=world.workspace_id, repo_id=repo_id, task_id=task_id, number=1, title="T",
                         body="", head_branch="main", head_sha=head, base_branch="main", state="open")
        session.add(pr)
        session.flush()
        review = ReviewRun(workspace_id=world.workspace_id, task_id=task_id, pr_id=pr.id, head_sha=head,
                           agent_type="gemini", agent_config={"require_secret": False, "cli": "/bin/true"},
                           prompt="review", state="queued")
        session.add(review)
        session.flush()
        review_id = review.id
    assert world.apply("pr_review", review_id, StartAgent(to="running", reason="go", patch={"attempts": 1})).status \
        == "applied"
    [spec] = world.runtime.launched
    review_file = Path(spec.env["OPTIO_REVIEW_VERDICT_FILE"])
    assert review_file == spec.cwd / "review.json" and not review_file.exists()
    assert (Path(spec.env["OPTIO_PR_HEAD_DIR"]) / "review.json").exists()  # the head is reviewed as it is
    assert spec.mounts is not None and spec.cwd in spec.mounts.writable
    assert Path(spec.env["OPTIO_PR_HEAD_DIR"]) in spec.mounts.readonly
    assert any(f"review.json in your working directory ({review_file}" in arg for arg in spec.argv)
    world.runtime.finish(spec.key, 0, ["done"])
    loaded = world.load("pr_review", review_id)
    assert loaded.snapshot.report is None and "was not written" in (loaded.snapshot.report_error or "")
    action = world.handler("pr_review").decide(loaded.snapshot)
    assert action.to == "queued"  # a failed attempt, retried: never the planted approval


def test_text_a_vendor_streams_in_chunks_is_stored_as_one_event(world: World) -> None:
    """Gemini prints each chunk of a message as its own `delta` line; the run log keeps the message whole."""
    run_id = world.job_run("queued")
    with world.db.write() as session:
        job = session.get(Job, session.get(JobRun, run_id).job_id)  # type: ignore[union-attr]
        job.agent_type, job.agent_config = "gemini", {"require_secret": False, "cli": "/bin/true"}  # type: ignore[union-attr]
    world.apply("job_run", run_id, StartAgent(to="running", reason="go", patch={"attempts": 1}))
    [spec] = world.runtime.launched
    chunk = '{{"type":"message","role":"assistant","content":"{}","delta":true}}'
    world.runtime.finish(spec.key, 0, [
        chunk.format("Writing the "), chunk.format("file now, "), chunk.format("as asked."),
        '{"type":"tool_use","tool_name":"write_file","tool_id":"t1","parameters":{}}',
        chunk.format("Done."),
    ])
    with world.db.read() as session:
        events = [json.loads(t) for t in session.scalars(
            select(RunLog.text).where(RunLog.run_id == run_id, RunLog.stream == "event").order_by(RunLog.id))]
    assert [e.get("text") or e["name"] for e in events] == ["Writing the file now, as asked.", "write_file", "Done."]


def test_files_written_into_a_runs_home_never_follow_links_the_agent_left_there(world: World) -> None:
    """An earlier attempt could plant `~/.gemini -> /somewhere/on/the/host`; the next launch must not write
    through it (the server writes as itself, outside the sandbox)."""
    run_id = world.job_run("queued")
    with world.db.write() as session:
        job = session.get(Job, session.get(JobRun, run_id).job_id)  # type: ignore[union-attr]
        job.agent_type, job.agent_config = "copilot", {"require_secret": False, "cli": "/bin/true"}  # type: ignore[union-attr]
    host = world.tmp / "host"
    host.mkdir()
    (host / "settings.json").write_text("precious")
    (host / "pkg").mkdir()
    (host / "pkg" / "keep").write_text("precious")
    home = world.ctx.data_dir / "homes" / f"job_run-{run_id}"
    (home / ".cache" / "copilot").mkdir(parents=True)
    (home / ".copilot").symlink_to(host)
    (home / ".cache" / "copilot" / "pkg").symlink_to(host / "pkg")
    world.apply("job_run", run_id, StartAgent(to="running", reason="go", patch={"attempts": 1}))
    [spec] = world.runtime.launched
    assert (host / "settings.json").read_text() == "precious" and (host / "pkg" / "keep").read_text() == "precious"
    shared = home / ".cache" / "copilot" / "pkg"
    assert shared.is_symlink() and shared.resolve().parent.name == f"workspace-{world.workspace_id}"
    assert spec.mounts is not None and shared.resolve() in spec.mounts.writable


def test_settings_written_into_a_runs_home_replace_a_link_the_agent_left_there(world: World) -> None:
    host = world.tmp / "host"
    host.mkdir()
    (host / "settings.json").write_text("precious")
    gemini_run = world.job_run("queued")
    with world.db.write() as session:
        job = session.get(Job, session.get(JobRun, gemini_run).job_id)  # type: ignore[union-attr]
        job.agent_type, job.agent_config = "gemini", {"require_secret": False, "cli": "/bin/true"}  # type: ignore[union-attr]
    gemini_home = world.ctx.data_dir / "homes" / f"job_run-{gemini_run}"
    gemini_home.mkdir(parents=True)
    (gemini_home / ".gemini").symlink_to(host)
    started = world.apply("job_run", gemini_run, StartAgent(to="running", reason="go", patch={"attempts": 1}))
    assert started.status == "applied", started
    assert (host / "settings.json").read_text() == "precious"
    written = gemini_home / ".gemini" / "settings.json"
    assert not (gemini_home / ".gemini").is_symlink() and "gemini-api-key" in written.read_text()


def test_a_commit_wakes_as_many_idle_workers_as_items_it_made_due(world: World) -> None:
    """Each needless wake is a claim that finds nothing, holding the write lock while it looks."""
    signal = world.ctx.wake
    threads, woke = waiters(signal, 4)
    with world.ctx.db.write() as session:  # due later: the idle workers find it on their own looks
        queue.enqueue(session, "job_run", 1, world.workspace_id, delay_s=30.0, reason="later")
    time.sleep(0.3)
    assert early(woke) == 0, woke
    with world.ctx.db.write() as session:
        queue.enqueue(session, "job_run", 2, world.workspace_id, reason="now")
        queue.enqueue(session, "job_run", 3, world.workspace_id, delay_s=0.2, reason="in a moment")
    time.sleep(0.3)
    assert early(woke) == 2, woke
    signal.notify()
    for t in threads:
        t.join(5.0)
