"""The repo loop on GitHub: `optio serve` + the real CLI against `tests.support.fake_github.FakeGitHub`.

The fake speaks GitHub's real REST shapes (each one checked against GitHub's published OpenAPI description in
tests/integration/test_fake_github_openapi.py), serves clones and pushes over smart HTTP from real bare repos,
runs a fake Actions runner on each pushed head, and delivers webhooks signed with X-Hub-Signature-256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.fake_github import FakeGitHub, Repo
from tests.support.optio_server import OptioServer

TOKEN = "ghp_optio_token_7f3a9c"
PERSON = "ghp_person_token_55e1"
HOOK_SECRET = "hook-secret-5b2d"
CI_NEEDS_OK = (
    'c=$(cat fixed.txt 2>/dev/null); if [ "$c" = ok ]; then echo pass; else echo "EXPECTED ok GOT $c"; exit 1; fi'
)
AGENT_READS_CI = 'if grep -q "EXPECTED ok" "$OPTIO_PROMPT_FILE"; then echo ok > fixed.txt; else echo no > fixed.txt; fi'
END = {"completed", "failed", "cancelled", "needs_attention"}


class GitHubLoop:
    """One Optio server and one fake GitHub, wired like a real install: token secret, webhook secret, hook URL."""

    def __init__(self, tmp: Path, *, watch_interval_s: float = 30.0) -> None:
        self.github = FakeGitHub(tmp / "github").__enter__()
        self.server = OptioServer(tmp / "data", env={"OPTIO_OUTBOUND_ALLOWLIST": "127.0.0.1",
                                                     "OPTIO_WATCH_INTERVAL_S": str(watch_interval_s)}).start()
        self.server.cli("secret", "set", "GITHUB_TOKEN", "--value", TOKEN, check=True)
        self.server.cli("secret", "set", "GITHUB_HOOK", "--value", HOOK_SECRET, check=True)

    def add_repo(self, name: str, *extra: str, ci: str | None = CI_NEEDS_OK,
                 files: dict[str, str] | None = None) -> tuple[Repo, int]:
        repo = self.github.create_repo("acme", name, ci_command=ci, files=files)
        extra = (*extra, "--no-forge-ci") if ci is None else extra
        res = self.server.cli("repo", "add", self.github.remote_url(repo), "--forge", "github", "--api-url",
                              self.github.api_url, "--token-secret", "GITHUB_TOKEN", "--webhook-secret",
                              "GITHUB_HOOK", "--json", *extra, check=True)
        repo_id = json.loads(res.stdout)["id"]
        self.github.hook(repo, f"{self.server.url}/api/forge-hooks/{repo_id}", HOOK_SECRET)
        return repo, repo_id

    def task(self, task_id: int) -> dict:
        return self.server.api("GET", f"/api/repo-tasks/{task_id}").json()

    def wait(self, task_id: int, states: set[str], timeout: float = 120) -> dict:
        return self.server.wait_state(f"/api/repo-tasks/{task_id}", states, timeout=timeout)

    def new_task(self, repo: str, title: str, command: str) -> int:
        res = self.server.cli("task", "new", "--repo", repo, "--title", title, "--prompt", title, "--command",
                              command, "--json", check=True)
        return int(json.loads(res.stdout)["id"])

    def events(self, task_id: int) -> list[dict]:
        return self.server.api("GET", f"/api/repo-tasks/{task_id}/events").json()

    def agent_starts(self, task_id: int) -> int:
        with sqlite3.connect(self.server.data_dir / "optio.db") as db:
            return db.execute("SELECT count(*) FROM agent_processes WHERE run_kind='repo_task' AND run_id=?",
                              (task_id,)).fetchone()[0]

    def close(self) -> None:
        self.server.stop()
        self.github.__exit__()


@pytest.fixture(scope="module")
def shared_gh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHubLoop]:
    loop = GitHubLoop(tmp_path_factory.mktemp("github-loop"))
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture
def gh(shared_gh: GitHubLoop) -> GitHubLoop:
    """The module's server and fake GitHub, with no fault left over: each test uses repos of its own name, so
    they share one install (as repos on one real install do) and the module pays for one start."""
    shared_gh.github.rate_limited_until = shared_gh.github.fail_5xx_until = 0.0
    if shared_gh.server.proc is None or shared_gh.server.proc.poll() is not None:
        shared_gh.server.start()  # a test that stopped it to read its files
    return shared_gh


def wait_until(what: str, check, timeout: float = 90):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_red_ci_and_a_line_comment_resume_the_agent_then_it_squash_merges_and_closes_the_issue(
        gh: GitHubLoop) -> None:
    repo, _repo_id = gh.add_repo("loop", "--require-approval")
    issue = gh.github.create_issue(repo, "fixed.txt must say ok")
    # The agent reads the failing check's output (red CI) and then the reviewer's line comment; it waits for a
    # gate first so the task can be tied to the issue before its PR is opened.
    agent = ('until [ -f "$HOME/gate" ]; do sleep 0.1; done; '
             'if grep -q "notes.txt:1: say why" "$OPTIO_PROMPT_FILE"; then echo because > notes.txt; fi; '
             'if grep -q "EXPECTED ok" "$OPTIO_PROMPT_FILE"; then echo ok > fixed.txt; '
             'elif [ ! -f fixed.txt ]; then echo no > fixed.txt; fi')
    task_id = gh.new_task("loop", "Make CI green", agent)
    home = gh.server.data_dir / "homes" / f"repo_task-{task_id}"
    wait_until("the agent", lambda: gh.task(task_id)["state"] == "running" and home.is_dir())
    with sqlite3.connect(gh.server.data_dir / "optio.db") as db:
        db.execute("UPDATE repo_tasks SET ticket_ref=? WHERE id=?", (f"acme/loop#{issue}", task_id))
    (home / "gate").write_text("go")

    pull = wait_until("the PR", lambda: next(iter(repo.pulls.values()), None))
    assert pull.head == f"optio/{task_id}" and f"Closes #{issue}" in pull.body
    assert f"/api/repo-tasks/{task_id}" in pull.body
    # Red CI on the first head (fixed.txt says no): the agent is resumed with the check's output and job log.
    wait_until("the second head", lambda: gh.task(task_id)["resume_count"] >= 1 and gh.github.show(
        repo, "fixed.txt", pull.head_sha) == "ok\n", timeout=120)
    wait_until("green CI", lambda: any(r.head_sha == pull.head_sha and r.conclusion == "success"
                                       for r in repo.checks))
    gh.wait(task_id, {"pr_opened"})
    assert gh.task(task_id)["state"] == "pr_opened", "merged without the required approval"

    # A person asks for changes with a line comment: the agent's resume prompt has `path:line: text`.
    head = pull.head_sha
    gh.github.review_as(PERSON, repo, pull.number, event="REQUEST_CHANGES", body="One more thing",
                        comments=[{"path": "notes.txt", "line": 1, "body": "say why"}])
    wait_until("the head after the review", lambda: pull.head_sha != head, timeout=120)
    assert gh.github.show(repo, "notes.txt", pull.head_sha) == "because\n"
    wait_until("green CI again", lambda: any(r.head_sha == pull.head_sha and r.conclusion == "success"
                                             for r in repo.checks))
    gh.github.review_as(PERSON, repo, pull.number, event="APPROVE", body="Thanks")
    task = gh.wait(task_id, END)
    assert task["state"] == "completed", (task, gh.server.log()[-3000:])
    assert gh.github.log(repo) == [f"Make CI green (#{pull.number})", "initial"]
    assert gh.github.show(repo, "fixed.txt") == "ok\n"
    assert repo.issues[issue]["state"] == "closed"
    assert f"optio/{task_id}" not in gh.github.branches(repo), "the head branch is deleted after the merge"
    assert pull.merged and gh.agent_starts(task_id) == 3
    # Webhooks did the waking: every delivery verified.
    assert gh.github.deliveries and all(status == 200 for _event, status in gh.github.deliveries)


def test_draft_pull_request_is_marked_ready_when_optio_merges_it(gh: GitHubLoop) -> None:
    repo, _ = gh.add_repo("drafty", "--draft", ci=None)
    task_id = gh.new_task("drafty", "Change it", "echo changed > change.txt")
    task = gh.wait(task_id, END)
    assert task["state"] == "completed", (task, gh.server.log()[-3000:])
    [pull] = repo.pulls.values()
    assert pull.opened_as_draft and pull.merged and not pull.draft


def test_protected_branch_refusal_ends_needs_attention_naming_the_rule(gh: GitHubLoop) -> None:
    repo, _ = gh.add_repo("guarded", ci=None)
    repo.required_approvals = 1  # branch protection: one approving review, which nobody gives
    task_id = gh.new_task("guarded", "Change it", "echo changed > change.txt")
    task = gh.wait(task_id, END)
    assert task["state"] == "needs_attention", task
    assert "At least 1 approving review is required" in task["error"]
    assert gh.github.log(repo) == ["initial"]
    time.sleep(2)
    assert gh.task(task_id)["state"] == "needs_attention", "a refusal is never retried by itself"


def test_lasting_rate_limit_defers_then_completes_without_duplicates(gh: GitHubLoop) -> None:
    repo, _ = gh.add_repo("limited", ci=None)
    gh.github.rate_limited_until = time.time() + 20  # remaining 0 until a reset 20 s away
    task_id = gh.new_task("limited", "Change it", "echo changed > change.txt")
    wait_until("the deferral", lambda: any(e["event"] == "forge_busy" for e in gh.events(task_id)), timeout=60)
    shown = gh.task(task_id)
    assert shown["state"] not in END and "rate limit" in (shown.get("note") or "") + json.dumps(gh.events(task_id))
    task = gh.wait(task_id, END, timeout=120)
    assert task["state"] == "completed", (task, gh.server.log()[-3000:])
    assert len(repo.pulls) == 1 and gh.agent_starts(task_id) == 1
    assert task["attempts"] == 1 and task["error"] is None
    assert not (task.get("note") or "").startswith("waiting for the forge"), "the wait is over"


def test_5xx_storm_defers_then_completes_without_duplicates(gh: GitHubLoop) -> None:
    repo, _ = gh.add_repo("stormy", ci=None)
    gh.github.fail_5xx_until = time.time() + 30
    task_id = gh.new_task("stormy", "Change it", "echo changed > change.txt")
    task = gh.wait(task_id, END, timeout=150)
    assert task["state"] == "completed", (task, gh.server.log()[-3000:])
    assert any(status == 502 for _m, _p, status in gh.github.requests), "the storm was met"
    assert len(repo.pulls) == 1 and gh.agent_starts(task_id) == 1


def test_webhook_with_a_bad_signature_is_refused_and_changes_nothing(gh: GitHubLoop) -> None:
    _repo, repo_id = gh.add_repo("hooked", ci=None)
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    bad = "sha256=" + hmac.new(b"wrong", body, hashlib.sha256).hexdigest()
    url = f"{gh.server.url}/api/forge-hooks/{repo_id}"
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1", "Content-Type": "application/json"}
    assert httpx.post(url, content=body, headers={**headers, "X-Hub-Signature-256": bad}).status_code == 401
    assert httpx.post(url, content=body, headers=headers).status_code == 401
    good = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    first = httpx.post(url, content=body, headers={**headers, "X-Hub-Signature-256": good})
    assert first.status_code == 200 and first.json()["duplicate"] is False
    again = httpx.post(url, content=body, headers={**headers, "X-Hub-Signature-256": good})
    assert again.json()["duplicate"] is True, "a redelivery is handled once"
    assert httpx.post(f"{gh.server.url}/api/forge-hooks/99999", content=body, headers=headers).status_code == 204


def test_repo_add_detects_github_and_says_what_access_is_missing(gh: GitHubLoop) -> None:
    repo = gh.github.create_repo("acme", "private")
    gh.server.cli("secret", "set", "WRONG_TOKEN", "--value", "ghp_not_a_token", check=True)
    res = gh.server.cli("repo", "add", gh.github.remote_url(repo), "--forge", "github", "--api-url",
                        gh.github.api_url, "--token-secret", "WRONG_TOKEN")
    assert res.returncode != 0 and "GitHub does not accept the one given (401)" in res.stdout + res.stderr
    res = gh.server.cli("repo", "add", gh.github.remote_url(repo), "--forge", "github", "--api-url",
                        gh.github.api_url)
    assert res.returncode != 0 and "--token-secret" in res.stdout + res.stderr
    def refused(body: dict) -> str:
        res = gh.server.api("POST", "/api/repos", json={"remote_url": gh.github.remote_url(repo), **body})
        assert res.status_code == 422, res.text
        return str(res.json()["error"]["field"])

    assert refused({"forge": "gitea"}) == "forge"
    assert refused({"api_url": gh.github.api_url}) == "api_url"  # an API root for a repo on the local forge
    assert refused({"forge": "github", "api_url": gh.github.api_url, "credential_secret": "GITHUB_TOKEN",
                    "webhook_secret": "NO_SUCH_SECRET"}) == "webhook_secret"
    assert refused({"forge": "github", "api_url": gh.github.api_url,
                    "forge_options": {"app_id": 1, "private_key_secret": "GITHUB_TOKEN"}}) == \
        "forge_options.installation_id"
    assert refused({"forge": "github", "api_url": "http://10.0.0.1/api/v3",
                    "credential_secret": "GITHUB_TOKEN"}) == "api_url"  # the SSRF guard
    assert refused({"forge": "github", "api_url": gh.github.api_url, "credential_secret": "GITHUB_TOKEN",
                    "forge_options": {"nonsense": 1}}) == "forge_options.nonsense"


def test_token_value_appears_nowhere(gh: GitHubLoop) -> None:
    repo, _ = gh.add_repo("secretive", ci="echo token-check; exit 1")
    task_id = gh.new_task("secretive", "Change it", 'echo "$OPTIO_TASK_ID" > change.txt; ps -ef')
    wait_until("red CI read", lambda: gh.task(task_id)["resume_count"] >= 1 or gh.task(task_id)["state"] in END,
               timeout=120)
    gh.server.stop()
    dump = "\n".join(sqlite3.connect(gh.server.data_dir / "optio.db").iterdump())
    assert TOKEN not in dump
    assert TOKEN not in gh.server.log()
    for path in gh.server.data_dir.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".jsonl", ".txt", ".json", ".md"):
            assert TOKEN not in path.read_text(errors="replace"), path
    assert any(r.head_sha for r in repo.checks)


def test_idle_repos_are_polled_with_conditional_requests_only(tmp_path: Path) -> None:
    """Scaled down from the issue's 20 repos for 2 minutes to 3 repos for 20 s, with a 1 s poll interval
    (OPTIO_WATCH_INTERVAL_S): each poll looks at every open PR, so the claim holds per poll either way."""
    loop = GitHubLoop(tmp_path, watch_interval_s=1.0)
    try:
        tasks = []
        for i in range(3):
            repo, _ = loop.add_repo(f"idle{i}", "--require-approval", ci="true")
            tasks.append((repo, loop.new_task(f"idle{i}", "Change it", "echo changed > change.txt")))
        for repo, task_id in tasks:
            wait_until("green CI", lambda repo=repo: any(r.conclusion == "success" for r in repo.checks))
            loop.wait(task_id, {"pr_opened"})
        time.sleep(4)  # every conditional request has its ETag now
        before = list(loop.github.requests)
        time.sleep(20)
        during = loop.github.requests[len(before):]
        assert [r for r in during if r[2] != 304] == [], "an idle repo cost rate limit"
        assert len(during) >= 3 * 10, "the poller looked at every PR about once a second"
        assert all(loop.task(task_id)["state"] == "pr_opened" for _repo, task_id in tasks)
    finally:
        loop.close()


def test_github_app_installation_token_is_minted_once_and_used_for_git_and_api(gh: GitHubLoop) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    gh.github.add_app(77, 4242, public)
    gh.server.cli("secret", "set", "APP_KEY", "--value", pem, check=True)
    repo = gh.github.create_repo("acme", "appy")
    res = gh.server.cli("repo", "add", gh.github.remote_url(repo), "--forge", "github", "--api-url",
                        gh.github.api_url, "--app-id", "77", "--installation-id", "4242", "--app-key-secret",
                        "APP_KEY", "--no-forge-ci", "--json", check=True)
    assert json.loads(res.stdout)["forge_options"]["app_id"] == 77
    task_id = gh.new_task("appy", "Change it", "echo changed > change.txt")
    task = gh.wait(task_id, END)
    assert task["state"] == "completed", (task, gh.server.log()[-3000:])
    assert gh.github.log(repo)[0].startswith("Change it (#")
    # One token for registration's check, reused (cached until just before expiry) by the server for everything.
    assert len(gh.github.minted) <= 2, gh.github.minted
    server_token = gh.github.minted[-1]
    bad = gh.server.cli("repo", "add", gh.github.remote_url(repo), "--forge", "github", "--api-url",
                        gh.github.api_url, "--app-id", "77", "--installation-id", "4242")
    assert bad.returncode != 0 and "private_key_secret is missing" in bad.stdout + bad.stderr
    gh.server.stop()
    assert server_token not in gh.server.log()
    assert server_token not in "\n".join(sqlite3.connect(gh.server.data_dir / "optio.db").iterdump())


def test_base_moved_on_github_makes_a_conflict_the_agent_rebases(gh: GitHubLoop) -> None:
    repo, _ = gh.add_repo("shared", "--require-approval", ci=None, files={"shared.txt": "base\n"})
    agent = ('if grep -qi "conflict" "$OPTIO_PROMPT_FILE"; then '
             'git fetch -q origin && (git rebase origin/main || '
             '{ printf "theirs\\nours\\n" > shared.txt; git add shared.txt; GIT_EDITOR=true git rebase --continue; }); '
             'else echo ours > shared.txt; fi')
    task_id = gh.new_task("shared", "Ours", agent)
    gh.wait(task_id, {"pr_opened"})
    pull = next(iter(repo.pulls.values()))
    head = pull.head_sha
    # Someone else lands a change on main: GitHub's push webhook wakes the task, mergeable_state is "dirty".
    gh.github.push_to(repo, "main", {"shared.txt": "theirs\n"}, "theirs")
    wait_until("the rebased head", lambda: pull.head_sha != head, timeout=120)
    assert "conflict" in [e["event"] for e in gh.events(task_id)]
    gh.wait(task_id, {"pr_opened"})
    gh.github.review_as(PERSON, repo, pull.number, event="APPROVE", body="ok")
    task = gh.wait(task_id, END)
    assert task["state"] == "completed", (task, gh.server.log()[-3000:])
    assert gh.github.show(repo, "shared.txt") == "theirs\nours\n"
    assert gh.github.log(repo) == [f"Ours (#{pull.number})", "theirs", "initial"]
