"""A second forge plugs in: the whole repo loop, in process, on an in-memory forge with no `LocalForge`.

The reconciler, executor, worker pool, repo handler, real agent processes (LocalRuntime) and real git
worktrees run as in the server; only the forge is `tests.support.fakes.InMemoryForge`, whose CI results
and reviews this test scripts. Red CI → the agent resumes with the failing output → green → approved →
merged through the forge's own gates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.support.fakes import InMemoryForge, NoSecrets
from tests.support.git_remote import git, make_remote

from optio.config import Settings
from optio.control.context import ControlContext
from optio.control.kinds.job import JobRunHandler
from optio.control.kinds.repo import RepoTaskHandler
from optio.control.kinds.review import ReviewRunHandler
from optio.control.ports import ForgeRegistry
from optio.control.processes import DbSink
from optio.control.worker import WorkerPool
from optio.forge.worktrees import RepoCaches
from optio.runtime.local import LocalRuntime
from optio.security.redact import registry_for
from optio.services.tasks import create_task
from optio.store import migrate, queue, workspaces
from optio.store.db import Database
from optio.store.models import Repo, RepoTask

AGENT_READS_CI = 'if grep -q "EXPECTED ok" "$OPTIO_PROMPT_FILE"; then echo ok > fixed.txt; else echo no > fixed.txt; fi'


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Loop:
    def __init__(self, tmp: Path) -> None:
        self.remote = make_remote(tmp)
        self.settings = Settings(data_dir=tmp / "data", workers=2, watch_interval_s=0.5, resync_interval_s=60.0)
        self.db = Database(self.settings.resolved_database_url)
        migrate.upgrade(self.db)
        with self.db.write() as session:
            self.workspace_id = workspaces.ensure_default(session).id
            repo = Repo(workspace_id=self.workspace_id, name="demo", remote_url=str(self.remote), forge="memory",
                        require_approval=True, auto_merge=True, agent_type="script", agent_config={})
            session.add(repo)
            session.flush()
            self.repo_id = repo.id
        # A forge tells Optio about changes (a webhook, here a call): the task is looked at again.
        self.forge = InMemoryForge(ci_repos={self.repo_id}, approval_repos={self.repo_id}, on_change=self.enqueue)
        self.runtime = LocalRuntime(DbSink(self.db, self.settings))
        self.ctx = ControlContext(
            settings=self.settings, db=self.db, runtime=self.runtime,
            forges=ForgeRegistry({self.forge.name: self.forge}),
            worktrees=RepoCaches(self.settings.resolved_data_dir), secrets=NoSecrets(),
            redactors=registry_for(str(self.db.engine.url)),
        )
        self.ctx.handlers = {h.kind: h for h in (JobRunHandler(), RepoTaskHandler(), ReviewRunHandler())}
        self.pool = WorkerPool(self.ctx)

    def enqueue(self, task_id: int) -> None:
        with self.db.write() as session:
            queue.enqueue(session, "repo_task", task_id, self.workspace_id, reason="forge event")

    def task(self, task_id: int) -> RepoTask:
        with self.db.read() as session:
            task = session.get(RepoTask, task_id)
            assert task is not None
            return task


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    loop = Loop(tmp_path)
    loop.pool.start()
    try:
        yield loop
    finally:
        loop.pool.stop()
        loop.runtime.shutdown()


def test_in_memory_forge_drives_red_ci_resume_green_review_merge(loop: Loop, tmp_path: Path) -> None:
    task_id = create_task(loop.db, loop.workspace_id, {"repo": "demo", "title": "Make CI green",
                                                       "prompt": "fix fixed.txt",
                                                       "agent_config": {"command": AGENT_READS_CI}}).id
    forge = loop.forge
    pr = wait_for("the PR", lambda: forge.pr_of_task(task_id))
    assert pr is not None and pr.info.state == "open"
    number, first_head = pr.info.number, pr.info.head_sha
    wait_for("pr_opened", lambda: loop.task(task_id).state == "pr_opened")

    forge.report_ci(loop.repo_id, number, status="failing", output="EXPECTED ok GOT no")
    # The agent is resumed with the failing output, fixes the file, and the PR moves to a new head.
    wait_for("a new head", lambda: forge.get_pr(loop.repo_id, number).head_sha != first_head)
    wait_for("pr_opened again", lambda: loop.task(task_id).state == "pr_opened")
    assert loop.task(task_id).resume_count == 1
    second_head = forge.get_pr(loop.repo_id, number).head_sha

    forge.report_ci(loop.repo_id, number, status="passing")
    time.sleep(0.3)
    assert forge.merges == [], "merged without the required approval"
    forge.submit_review(loop.repo_id, number, verdict="approve", comments="", author="user:test")
    wait_for("completed", lambda: loop.task(task_id).state in {"completed", "failed", "needs_attention"})
    task = loop.task(task_id)
    assert task.state == "completed", (task.state, task.error)
    [merge] = forge.merges
    assert (merge.number, merge.head_sha, merge.forced) == (number, second_head, False)
    assert forge.get_pr(loop.repo_id, number).state == "merged"
    # The fixed file really went to the remote on the task's branch, through the Worktrees port.
    assert git("show", f"{second_head}:fixed.txt", cwd=loop.remote).strip() == "ok"
    assert git("show", f"{first_head}:fixed.txt", cwd=loop.remote).strip() == "no"
