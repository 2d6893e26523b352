"""The whole repo loop on a GitLab repo: a real Optio control plane, the fake GitLab, and webhooks between them.

The reconciler, executor, worker pool, repo handler, a script agent run by the local runtime and Optio's real
git (cache, worktrees, pushes over smart HTTP with the token through GIT_ASKPASS) run as in the server; the
forge is `GitLabForge` registered for kind "gitlab" and the repo row says ``forge="gitlab"``. Changes reach
Optio as GitLab webhooks (the watcher's poll is slowed to a minute so events drive the loop), verified and
parsed by the forge and turned into reconciles as the webhook route does.

Red pipeline → the agent resumes with the failed job's trace → green → a person's diff note requests
changes → the agent resumes with ``path:line: text`` → the person resolves and approves → Optio squash-merges:
one commit on the default branch, the source branch gone, the issue closed by ``Closes #N``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.support.fake_gitlab import FakeGitLab, _git
from tests.support.gitlab_optio import GitLabOptio, token_free

from optio.config import Settings
from optio.control.context import ControlContext
from optio.control.kinds.job import JobRunHandler
from optio.control.kinds.repo import RepoTaskHandler
from optio.control.kinds.review import ReviewRunHandler
from optio.control.ports import ForgeRegistry
from optio.control.processes import DbSink
from optio.control.worker import WorkerPool
from optio.forge.base import BadSignature
from optio.runtime.local import LocalRuntime
from optio.security.redact import registry_for
from optio.store import migrate, queue
from optio.store.db import Database
from optio.store.models import Repo, RepoTask, RunEvent

CI = 'grep -q "^ok" fixed.txt || { echo "EXPECTED ok GOT $(cat fixed.txt)"; exit 3; }'
AGENT = ('if grep -q "fixed.txt:1: say please" "$OPTIO_PROMPT_FILE"; then echo "ok please" > fixed.txt; '
         'elif grep -q "EXPECTED ok GOT no" "$OPTIO_PROMPT_FILE"; then echo ok > fixed.txt; '
         'else echo no > fixed.txt; fi')


def wait_for(what: str, check: Callable[[], object], timeout: float = 90.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class HookRoute:
    """What ``POST /api/forge-hooks/{repo_id}`` does with a GitLab delivery: verify and parse it through the
    repo's forge, then reconcile the tasks whose MRs it names."""

    def __init__(self, env: GitLabOptio) -> None:
        self.env = env
        self.refused = 0
        self.delivered = 0
        route = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = route.handle(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/forge-hooks/{env.repo_id}"

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        try:
            events = self.env.forge.parse_event(self.env.repo_id, headers, body)
        except BadSignature:
            self.refused += 1
            return 401
        self.delivered += 1
        for event in events:
            task = self.env.forge.task_for_pr(event.repo_id, event.number)
            if task is not None:
                with self.env.db.write() as session:
                    queue.enqueue(session, "repo_task", task, self.env.workspace_id, reason=f"gitlab {event.kind}")
        return 204


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[tuple[GitLabOptio, WorkerPool]]:
    settings = Settings(data_dir=tmp_path / "data", workers=2, watch_interval_s=60.0, resync_interval_s=60.0,
                        executor_error_backoff_s=0.2)
    db = Database(settings.resolved_database_url)
    migrate.upgrade(db)
    with FakeGitLab(tmp_path / "gitlab") as fake:
        project = fake.create_project("acme/tools/widget", files={"README.md": "demo\n", "fixed.txt": "start\n"},
                                      ci_script=CI)
        env = GitLabOptio(tmp_path, fake, project, db=db,
                          repo_options={"require_approval": True, "auto_merge": True})
        route = HookRoute(env)
        fake.add_hook(project, route.url, env.hook_token)
        runtime = LocalRuntime(DbSink(db, settings))
        ctx = ControlContext(settings=settings, db=db, runtime=runtime,
                             forges=ForgeRegistry({env.forge.name: env.forge}), worktrees=env.caches,
                             secrets=env.secrets, redactors=registry_for(str(db.engine.url)))
        ctx.handlers = {h.kind: h for h in (JobRunHandler(), RepoTaskHandler(), ReviewRunHandler())}
        pool = WorkerPool(ctx)
        pool.start()
        try:
            yield env, pool
        finally:
            pool.stop()
            runtime.shutdown()
            env.forge.shutdown()
            route.httpd.shutdown()


def test_a_task_on_gitlab_goes_red_reviewed_green_approved_and_squash_merged(loop: tuple[GitLabOptio, WorkerPool]
                                                                             ) -> None:
    env, _pool = loop
    fake, project = env.fake, env.project
    issue = fake.create_issue(project, "fixed.txt must say ok")
    main_before = _git("rev-parse", "main", cwd=project.repo).stdout.decode().strip()
    task_id = env.task(title="Make fixed.txt say ok", ticket_ref=f"#{issue.iid}",
                       agent_config={"command": AGENT})

    def task() -> RepoTask:
        with env.db.read() as session:
            row = session.get(RepoTask, task_id)
            assert row is not None
            return row

    mr = wait_for("the MR", lambda: fake.mr_of_branch(project, f"optio/{task_id}"))
    assert mr is not None and f"Closes #{issue.iid}" in mr.description
    first_head = mr.sha
    # Red pipeline: the agent is resumed with the job trace and pushes a new head, which goes green.
    wait_for("a second head", lambda: mr.sha != first_head)
    assert task().resume_count == 1
    second_head = mr.sha
    wait_for("green pipeline on the new head", lambda: any(p.sha == second_head and p.status == "success"
                                                           for p in project.pipelines))
    wait_for("waiting for review", lambda: task().state == "pr_opened" and mr.sha == second_head)
    time.sleep(1.0)
    assert mr.state == "opened", "merged without the required approval"

    # A person asks for changes on a line: the agent gets `path:line: text` and pushes again.
    fake.comment(project, mr, "say please", path="fixed.txt", line=1)
    wait_for("a third head", lambda: mr.sha != second_head)
    assert _git("show", f"{mr.sha}:fixed.txt", cwd=project.repo).stdout == b"ok please\n"
    wait_for("pr_opened again", lambda: task().state == "pr_opened")
    time.sleep(1.0)
    assert mr.state == "opened", "merged past an unresolved review"

    fake.resolve_all(project, mr)
    fake.wait_idle()
    fake.approve_as_person(project, mr)
    wait_for("completed", lambda: task().state in {"completed", "failed", "needs_attention"})
    final = task()
    assert final.state == "completed", (final.state, final.error)

    assert mr.state == "merged" and mr.squash_commit_sha
    log = _git("log", "--format=%H %P", f"{main_before}..main", cwd=project.repo).stdout.decode().splitlines()
    assert log == [f"{mr.squash_commit_sha} {main_before}"], "not exactly one squash commit on main"
    assert _git("show", "main:fixed.txt", cwd=project.repo).stdout == b"ok please\n"
    assert _git("rev-parse", "-q", "--verify", f"refs/heads/optio/{task_id}", cwd=project.repo,
                check=False).returncode != 0
    assert project.issues[issue.iid].state == "closed"
    with env.db.read() as session:
        events = session.query(RunEvent).filter(RunEvent.run_id == task_id).all()
        text = " ".join(f"{e.event} {e.reason}" for e in events) + (final.error or "") + (final.note or "")
    assert token_free(text, fake.bot.token)


def test_a_protected_branch_refusal_ends_needs_attention_naming_the_rule(loop: tuple[GitLabOptio, WorkerPool]
                                                                        ) -> None:
    env, _pool = loop
    fake, project = env.fake, env.project
    fake.protect(project, "main", merge_level=0)  # "No one" may merge into main
    with env.db.write() as session:
        repo = session.get(Repo, env.repo_id)
        assert repo is not None
        repo.require_approval = False
    task_id = env.task(title="Say ok", agent_config={"command": "echo ok > fixed.txt"})

    def task() -> RepoTask:
        with env.db.read() as session:
            row = session.get(RepoTask, task_id)
            assert row is not None
            return row

    wait_for("needs_attention", lambda: task().state in {"needs_attention", "completed", "failed"}, timeout=120)
    final = task()
    assert final.state == "needs_attention", (final.state, final.error)
    assert "protected branch 'main'" in (final.error or "") and "No one" in (final.error or "")
    mr = fake.mr_of_branch(project, f"optio/{task_id}")
    assert mr is not None and mr.state == "opened"
    assert token_free(final.error or "", fake.bot.token)


@pytest.mark.parametrize("outage", ["rate_limit", "5xx_storm"])
def test_a_lasting_rate_limit_or_5xx_storm_defers_and_then_the_task_completes(
        loop: tuple[GitLabOptio, WorkerPool], outage: str) -> None:
    env, _pool = loop
    fake, project = env.fake, env.project
    with env.db.write() as session:
        repo = session.get(Repo, env.repo_id)
        assert repo is not None
        repo.require_approval = False
    # The pipeline takes a moment, so the outage starts while the task waits on its MR.
    project.ci_script = "sleep 1; " + CI
    task_id = env.task(title="Say ok", agent_config={"command": "echo ok > fixed.txt"})

    def task() -> RepoTask:
        with env.db.read() as session:
            row = session.get(RepoTask, task_id)
            assert row is not None
            return row

    wait_for("the MR", lambda: fake.mr_of_branch(project, f"optio/{task_id}"))
    if outage == "rate_limit":
        fake.rate_limit_for(6)
    else:
        fake.fail_for(6, 503)
    start = time.monotonic()
    wait_for("completed", lambda: task().state in {"completed", "failed", "needs_attention"}, timeout=120)
    final = task()
    assert final.state == "completed", (final.state, final.error)
    assert time.monotonic() - start >= 4, "the outage did not hold the task back"
    refused = {429} if outage == "rate_limit" else {503}
    assert refused & {status for _, _, status in fake.api_log}, "the outage was never met"
    assert len(project.mrs) == 1, "a second MR was opened"
    assert final.attempts == 1 and final.resume_count == 0, "the agent ran again"
    assert project.mrs[1].state == "merged"
