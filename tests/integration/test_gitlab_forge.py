"""`GitLabForge` against the fake GitLab: real HTTP, real git over smart HTTP with the token, real pipelines.

Each test drives the adapter the way control does (open the MR after a push, read CI/reviews/mergeability,
merge) and checks the result both through the port and in the fake's git and state.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import structlog
from tests.support.fake_gitlab import FakeGitLab, Project, _git
from tests.support.gitlab_optio import GitLabOptio, token_free

from optio.errors import Conflict
from optio.forge.base import BadSignature, ForgeBusy, LineComment, MergeRefused
from optio.forge.gitlab.forge import MAX_MERGE_WAITS
from optio.store.models import ReconcileItem, RepoTask

CI = 'test "$(cat fixed.txt)" = ok || { echo "EXPECTED ok GOT $(cat fixed.txt)"; exit 3; }'


def wait_for(what: str, check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeGitLab]:
    with FakeGitLab(tmp_path / "gitlab") as server:
        yield server


@pytest.fixture
def project(fake: FakeGitLab) -> Project:
    return fake.create_project("acme/tools/widget", files={"README.md": "demo\n", "fixed.txt": "start\n"},
                               ci_script=CI)


@pytest.fixture
def env(tmp_path: Path, fake: FakeGitLab, project: Project) -> Iterator[GitLabOptio]:
    setup = GitLabOptio(tmp_path, fake, project)
    yield setup
    setup.forge.shutdown()


def mark_pr_opened(env: GitLabOptio, task: int) -> None:
    """The task sits with its MR open, as control leaves it (state and branch written as control writes them)."""
    with env.db.write() as session:
        row = session.get(RepoTask, task)
        assert row is not None
        row.state, row.branch = "pr_opened", f"optio/{task}"


def log_lines(project: Project, branch: str) -> list[str]:
    return _git("log", "--format=%H %P|%s", branch, cwd=project.repo).stdout.decode().splitlines()


def test_opens_the_mr_into_the_default_branch_with_the_task_link_and_closes_line(env: GitLabOptio) -> None:
    issue = env.fake.create_issue(env.project, "Widget is broken")
    task = env.task(ticket_ref=f"#{issue.iid}")
    number, head = env.open(task, {"fixed.txt": "ok\n"}, title="Fix the widget")
    mr = env.project.mrs[number]
    assert (mr.source_branch, mr.target_branch, mr.sha, mr.title) == (f"optio/{task}", "main", head, "Fix the widget")
    assert f"Closes #{issue.iid}" in mr.description
    assert f"http://optio.test/tasks/{task}" in mr.description
    assert not mr.draft
    # A second push moves the same MR; no second MR is opened.
    head2 = env.push(task, {"more.txt": "x\n"})
    info = env.forge.open_or_update_pr(env.repo_id, task, head_branch=f"optio/{task}", head_sha=head2,
                                       title="Fix the widget", body="do it")
    assert info.number == number and len(env.project.mrs) == 1 and env.project.mrs[number].sha == head2


def test_draft_when_the_repo_asks_and_ready_before_the_merge(tmp_path: Path, fake: FakeGitLab,
                                                             project: Project) -> None:
    env = GitLabOptio(tmp_path, fake, project, repo_options={"forge_options": {"draft": True}})
    task = env.task()
    number, head = env.open(task, {"fixed.txt": "ok\n"})
    assert project.mrs[number].draft and project.mrs[number].title == "Draft: Change things"
    fake.wait_idle()
    env.forge.merge(env.repo_id, number, head_sha=head, message="Change things (!1)")
    assert project.mrs[number].state == "merged" and not project.mrs[number].draft


def test_red_pipeline_reports_failed_jobs_and_trace_tail_then_green(env: GitLabOptio) -> None:
    task = env.task()
    number, head = env.open(task, {"fixed.txt": "no\n"})
    env.fake.wait_idle()
    state = env.forge.pr_for_task(env.repo_id, task)
    assert state is not None and state.ci_required and state.ci is not None
    assert (state.ci.head_sha, state.ci.status) == (head, "failing")
    assert "failed job: test (stage test, script_failure)" in state.ci.output
    assert "EXPECTED ok GOT no" in state.ci.output
    assert token_free(state.ci.output, env.fake.bot.token)
    fixed = env.push(task, {"fixed.txt": "ok\n"})
    # Before the new head's pipeline ends, CI on the new head is pending, never the old head's red.
    pending = env.forge.ci_for_head(env.repo_id, number)
    assert pending is not None and pending.head_sha == fixed and pending.status in ("pending", "passing")
    env.fake.wait_idle()
    ci = env.forge.ci_for_head(env.repo_id, number)
    assert ci is not None and (ci.head_sha, ci.status) == (fixed, "passing")


def test_unresolved_discussion_with_a_line_comment_is_changes_requested(env: GitLabOptio) -> None:
    task = env.task()
    number, head = env.open(task, {"fixed.txt": "ok\n", "src/app.py": "print('hi')\n"})
    mr = env.project.mrs[number]
    env.fake.comment(env.project, mr, "Please rename the greeting.")
    env.fake.comment(env.project, mr, "use logging here", path="src/app.py", line=1)
    review = env.forge.latest_review(env.repo_id, number)
    assert review is not None and review.verdict == "request_changes"
    assert "Please rename the greeting." in review.comments
    assert "src/app.py:1: use logging here" in review.comments
    assert review.head_sha == head and review.author == "gitlab:reviewer"
    # The agent answers with a new head: the review stays on the head it was given on.
    env.push(task, {"src/app.py": "import logging\n"})
    again = env.forge.latest_review(env.repo_id, number)
    assert again is not None and again.head_sha == head and again.id == review.id
    # A new comment is a new review.
    env.fake.comment(env.project, mr, "still not right")
    newer = env.forge.latest_review(env.repo_id, number)
    assert newer is not None and newer.id > review.id


def test_reviewer_requested_changes_state_counts(env: GitLabOptio) -> None:
    task = env.task()
    number, _ = env.open(task, {"fixed.txt": "ok\n"})
    assert env.forge.latest_review(env.repo_id, number) is None
    env.fake.request_changes_as_reviewer(env.project, env.project.mrs[number])
    review = env.forge.latest_review(env.repo_id, number)
    assert review is not None and review.verdict == "request_changes" and "reviewer" in review.comments


def test_approvals_count_when_the_rule_is_met_and_reset_on_push(env: GitLabOptio) -> None:
    env.project.approvals_required = 1
    task = env.task()
    number, head = env.open(task, {"fixed.txt": "ok\n"})
    assert env.forge.latest_review(env.repo_id, number) is None
    env.fake.approve_as_person(env.project, env.project.mrs[number])
    review = env.forge.latest_review(env.repo_id, number)
    assert review is not None and (review.verdict, review.head_sha, review.author) == ("approve", head,
                                                                                       "gitlab:reviewer")
    env.push(task, {"fixed.txt": "ok\nmore\n"})
    assert env.forge.latest_review(env.repo_id, number) is None  # GitLab reset the approval on push


def test_review_agent_posts_a_real_review_with_line_comments(env: GitLabOptio) -> None:
    task = env.task()
    number, head = env.open(task, {"fixed.txt": "ok\n", "lib.py": "x = 1\n"})
    posted = env.forge.submit_review(env.repo_id, number, verdict="request_changes", comments="Needs a test.",
                                     author="review-agent:claude",
                                     line_comments=(LineComment("lib.py", 1, "name this constant"),))
    assert posted.verdict == "request_changes" and "lib.py:1: name this constant" in posted.comments
    mr = env.project.mrs[number]
    diff_notes = [n for d in mr.discussions for n in d.notes if n.type == "DiffNote"]
    assert [(n.position or {}).get("new_path") for n in diff_notes] == ["lib.py"]
    assert (diff_notes[0].position or {}).get("new_line") == 1
    review = env.forge.latest_review(env.repo_id, number)
    assert review is not None and review.verdict == "request_changes"
    assert review.author == "review-agent:claude"  # who posted it, though the token's user wrote the note
    assert "Needs a test." in review.comments and "lib.py:1: name this constant" in review.comments
    assert "optio-review" not in review.comments
    assert review.head_sha == head


def test_review_agent_approval_counts_for_the_head_it_was_given_on(env: GitLabOptio) -> None:
    task = env.task()
    number, head = env.open(task, {"fixed.txt": "ok\n"})
    env.forge.submit_review(env.repo_id, number, verdict="approve", comments="Looks right.",
                            author="review-agent:claude")
    # GitLab does not let the MR's author (Optio's token) approve; the verdict stands as Optio's note.
    assert env.project.mrs[number].approved_by == []
    review = env.forge.latest_review(env.repo_id, number)
    assert review is not None and (review.verdict, review.head_sha, review.author) == (
        "approve", head, "review-agent:claude")
    new_head = env.push(task, {"fixed.txt": "ok\nmore\n"})
    again = env.forge.latest_review(env.repo_id, number)
    assert again is not None and again.head_sha == head != new_head  # not an approval of the new head


def test_conflict_with_the_default_branch_is_unmergeable(env: GitLabOptio) -> None:
    task = env.task()
    number, _ = env.open(task, {"fixed.txt": "ok\n"})
    info = env.forge.get_pr(env.repo_id, number)
    assert info.mergeable is True
    tip = env.fake.push_to_default(env.project, {"fixed.txt": "someone else\n"})
    info = env.forge.get_pr(env.repo_id, number)
    assert info.mergeable is False and info.base_sha == tip


def test_squash_merge_makes_one_commit_deletes_the_branch_and_closes_the_issue(env: GitLabOptio) -> None:
    issue = env.fake.create_issue(env.project, "Widget is broken")
    task = env.task(ticket_ref=f"#{issue.iid}")
    head = env.push(task, {"fixed.txt": "almost\n"}, message="first try")
    number, head = env.open(task, {"fixed.txt": "ok\n"})
    before = log_lines(env.project, "main")
    env.fake.wait_idle()
    sha = env.forge.merge(env.repo_id, number, head_sha=head, message=f"Fix widget (!{number})\n\nOptio task #{task}")
    after = log_lines(env.project, "main")
    assert len(after) == len(before) + 1, "not one squash commit"
    commit, subject = after[0].split("|")
    assert commit.split() == [sha, before[0].split()[0]]  # one parent: the old tip
    assert subject == f"Fix widget (!{number})"
    assert _git("show", f"{sha}:fixed.txt", cwd=env.project.repo).stdout == b"ok\n"
    assert _git("rev-parse", "-q", "--verify", f"refs/heads/optio/{task}", cwd=env.project.repo,
                check=False).returncode != 0, "source branch not deleted"
    assert env.project.issues[issue.iid].state == "closed"
    state = env.forge.pr_for_task(env.repo_id, task)
    assert state is not None and state.info.state == "merged" and state.info.merged_sha == sha
    # Merging again is a no-op that answers the same commit.
    assert env.forge.merge(env.repo_id, number, head_sha=head, message="again") == sha


def test_protected_branch_refusal_is_merge_refused_naming_the_rule(env: GitLabOptio) -> None:
    env.fake.protect(env.project, "main", merge_level=0)
    task = env.task()
    number, head = env.open(task, {"fixed.txt": "ok\n"})
    with pytest.raises(MergeRefused) as refused:
        env.forge.merge(env.repo_id, number, head_sha=head, message="m")
    assert "protected branch 'main'" in refused.value.reason and "No one" in refused.value.reason
    assert env.project.mrs[number].state == "opened"


def test_approval_rule_refusal_is_merge_refused(env: GitLabOptio) -> None:
    env.project.approvals_required = 1
    task = env.task()
    number, head = env.open(task, {"fixed.txt": "ok\n"})
    with pytest.raises(MergeRefused) as refused:
        env.forge.merge(env.repo_id, number, head_sha=head, message="m")
    assert "needs approval" in refused.value.reason


def test_rate_limit_and_5xx_are_forge_busy_with_the_time_to_come_back(env: GitLabOptio) -> None:
    task = env.task()
    number, _ = env.open(task, {"fixed.txt": "ok\n"})
    env.fake.rate_limit_for(20)
    with pytest.raises(ForgeBusy) as busy:
        env.forge.pr_for_task(env.repo_id, task)
    assert 15 <= busy.value.retry_after_s <= 22
    env.fake.rate_limit_for(0)
    env.fake.inject(429, headers={"Retry-After": "7"})
    with pytest.raises(ForgeBusy) as busy:
        env.forge.get_pr(env.repo_id, number)
    assert busy.value.retry_after_s == 7
    env.fake.inject(503)
    with pytest.raises(ForgeBusy):
        env.forge.get_pr(env.repo_id, number)
    assert env.forge.get_pr(env.repo_id, number).number == number  # and then it answers again


class Receiver:
    """Where the fake GitLab delivers webhooks: every delivery kept with its headers and raw body."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.got.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/forge-hooks/1"

    def of(self, event: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in self.got if h.get("X-Gitlab-Event") == event]


def test_webhooks_verify_the_token_and_map_to_optios_mrs(env: GitLabOptio) -> None:
    receiver = Receiver()
    try:
        env.fake.add_hook(env.project, receiver.url, env.hook_token)
        task = env.task()
        mark_pr_opened(env, task)
        number, _ = env.open(task, {"fixed.txt": "no\n"})
        env.fake.comment(env.project, env.project.mrs[number], "hm")
        env.fake.wait_idle()
        wait_for("pipeline hooks", lambda: len(receiver.of("Pipeline Hook")) >= 3)
        headers, body = receiver.of("Merge Request Hook")[0]
        events = env.forge.parse_event(env.repo_id, headers, body)
        assert [(e.repo_id, e.number) for e in events] == [(env.repo_id, number)]
        kinds = {e.kind for h, b in receiver.got for e in env.forge.parse_event(env.repo_id, h, b)}
        assert {"ci", "review", "push", "updated"} <= kinds
        # A push to the default branch concerns every open MR of Optio's on it.
        env.fake.push_to_default(env.project, {"other.txt": "x\n"})
        wait_for("push hook", lambda: any(json.loads(b)["ref"] == "refs/heads/main"
                                          for _, b in receiver.of("Push Hook")))
        h, b = next((h, b) for h, b in receiver.of("Push Hook") if json.loads(b)["ref"] == "refs/heads/main")
        assert [(e.number, e.kind) for e in env.forge.parse_event(env.repo_id, h, b)] == [(number, "base_moved")]
        # The wrong token, or none: BadSignature, whatever the body says.
        for bad in ({**headers, "X-Gitlab-Token": "guess"}, {k: v for k, v in headers.items()
                                                             if k != "X-Gitlab-Token"}):
            with pytest.raises(BadSignature):
                env.forge.parse_event(env.repo_id, bad, body)
        assert env.forge.task_for_pr(env.repo_id, number) == task
    finally:
        receiver.httpd.shutdown()


def test_idle_polling_of_twenty_repos_makes_only_304_requests(env: GitLabOptio) -> None:
    tasks: list[tuple[int, int]] = []  # (repo id, task id)
    for n in range(20):
        project = env.project if n == 0 else env.fake.create_project(f"acme/repo{n}", ci_script="true")
        repo_id = env.repo_id if n == 0 else env.add_repo(project, f"repo{n}")
        task = env.task(repo="gl" if n == 0 else f"repo{n}")
        mark_pr_opened(env, task)
        env.open(task, {"fixed.txt": "ok\n"}, repo_id=repo_id)
        tasks.append((repo_id, task))
    env.fake.wait_idle()
    assert env.forge.poll_open_prs() == 20
    for repo_id, task in tasks:
        env.forge.pr_for_task(repo_id, task)  # the first look reads everything once
    with env.db.write() as session:
        session.query(ReconcileItem).delete()
    seen = len(env.fake.api_log)
    for _ in range(10):  # the watcher's ticks while nothing happens
        assert env.forge.poll_open_prs() == 20
        for repo_id, task in tasks[:3]:
            env.forge.pr_for_task(repo_id, task)  # control's periodic look at an idle MR
    idle = env.fake.api_log[seen:]
    assert len(idle) == 10 * (20 * 2 + 3 * 5)
    assert {status for _, _, status in idle} == {304}, [r for r in idle if r[2] != 304][:5]
    with env.db.read() as session:
        assert session.query(ReconcileItem).count() == 0, "an idle poll enqueued work"
    # Something changes on one repo: the next poll sees it and enqueues that task alone.
    project = env.project
    env.fake.comment(project, project.mrs[1], "look again")
    env.forge.poll_open_prs()
    with env.db.read() as session:
        assert [r.run_id for r in session.query(ReconcileItem).all()] == [tasks[0][1]]


def test_the_token_appears_in_no_error_or_log(env: GitLabOptio, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    token = env.fake.bot.token
    seen: list[str] = []
    structlog.configure(processors=[lambda _l, _m, event: seen.append(json.dumps(event, default=str)) or event,
                                    structlog.processors.JSONRenderer()])
    caplog.set_level(logging.DEBUG)
    try:
        task = env.task()
        number, head = env.open(task, {"fixed.txt": "no\n"})
        env.fake.wait_idle()
        errors: list[str] = []
        for status in (429, 500, 404, 401):
            env.fake.inject(status)
            try:
                env.forge.get_pr(env.repo_id, number)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        env.fake.protect(env.project, "main", merge_level=0)
        try:
            env.forge.merge(env.repo_id, number, head_sha=head, message="m")
        except MergeRefused as exc:
            errors.append(exc.reason)
        env.forge.submit_review(env.repo_id, number, verdict="approve", comments="fine", author="review-agent:x")
        env.forge.poll_open_prs()
        state = env.forge.pr_for_task(env.repo_id, task)
        assert len(errors) == 5
        texts = [*errors, *seen, caplog.text, repr(state), *(u for _, u, _ in env.fake.api_log),
                 *(u for _, u, _ in env.fake.git_log)]
        assert all(token_free(t, token) for t in texts)
    finally:
        structlog.reset_defaults()


def test_a_project_that_never_squashes_gets_a_merge_commit(env: GitLabOptio) -> None:
    env.project.squash_option = "never"
    task = env.task()
    number, head = env.open(task, {"fixed.txt": "ok\n"})
    before = log_lines(env.project, "main")[0].split()[0]
    sha = env.forge.merge(env.repo_id, number, head_sha=head, message="Merge it")
    parents = _git("show", "-s", "--format=%P", sha, cwd=env.project.repo).stdout.decode().split()
    assert parents == [before, head]
    assert env.project.mrs[number].squash is False


def test_git_over_http_needs_the_token(env: GitLabOptio, tmp_path: Path) -> None:
    url = env.fake.remote_url(env.project)
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_TERMINAL_PROMPT": "0"}
    anonymous = subprocess.run(["git", "ls-remote", url], env=base, capture_output=True, check=False)
    assert anonymous.returncode != 0
    wrong = url.replace("http://", "http://optio:guess@")
    assert subprocess.run(["git", "ls-remote", wrong], env=base, capture_output=True, check=False).returncode != 0
    task = env.task()
    head = env.push(task, {"fixed.txt": "ok\n"})  # Optio's git: the token through GIT_ASKPASS
    assert _git("rev-parse", f"optio/{task}", cwd=env.project.repo).stdout.decode().strip() == head
    assert all(token_free(path, env.fake.bot.token) for _, path, _ in env.fake.git_log)


def test_a_transient_merge_refusal_waits_and_a_lasting_one_goes_to_a_person(env: GitLabOptio) -> None:
    task = env.task()
    number, head = env.open(task, {"fixed.txt": "ok\n"})
    env.fake.refuse_merges(1)
    with pytest.raises(Conflict):
        env.forge.merge(env.repo_id, number, head_sha=head, message="m")
    with env.db.read() as session:
        queued = session.query(ReconcileItem).filter(ReconcileItem.run_id == task).one()
        assert queued.reason.startswith("merge waits")
    env.forge.merge(env.repo_id, number, head_sha=head, message="m")
    assert env.project.mrs[number].state == "merged"

    other = env.task()
    number, head = env.open(other, {"other.txt": "x\n"})
    env.fake.refuse_merges(100)
    for _ in range(MAX_MERGE_WAITS):
        with pytest.raises(Conflict):
            env.forge.merge(env.repo_id, number, head_sha=head, message="m")
    with pytest.raises(MergeRefused) as refused:
        env.forge.merge(env.repo_id, number, head_sha=head, message="m")
    assert "405 Method Not Allowed" in refused.value.reason


def test_a_push_gitlab_has_not_processed_yet_reads_as_the_new_head_pending(env: GitLabOptio) -> None:
    task = env.task()
    number, first = env.open(task, {"fixed.txt": "no\n"})
    env.fake.wait_idle()
    state = env.forge.pr_for_task(env.repo_id, task)
    assert state is not None and state.ci is not None and state.ci.status == "failing"
    env.project.lagging = True
    second = env.push(task, {"fixed.txt": "ok\n"})
    env.forge.open_or_update_pr(env.repo_id, task, head_branch=f"optio/{task}", head_sha=second, title="t",
                                body="b")
    assert env.project.mrs[number].sha == first  # GitLab still shows the old head
    state = env.forge.pr_for_task(env.repo_id, task)
    assert state is not None and state.ci is not None
    assert (state.info.head_sha, state.ci.head_sha, state.ci.status) == (second, second, "pending")
    assert state.info.mergeable is None
    env.fake.catch_up(env.project)
    env.fake.wait_idle()
    state = env.forge.pr_for_task(env.repo_id, task)
    assert state is not None and state.ci is not None
    assert (state.info.head_sha, state.ci.status) == (second, "passing")
