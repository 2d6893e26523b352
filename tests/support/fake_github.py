"""A stateful GitHub double: a real HTTP server on 127.0.0.1 speaking GitHub's REST shapes over real git.

* Repos are real bare repositories, cloned and pushed over smart HTTP (`git http-backend`) with a token as the
  basic-auth password, like github.com's HTTPS remotes.
* Pull requests point at real refs: mergeability is a real `git merge-tree`, a squash merge writes a real
  commit on the base branch, and an issue named by ``Closes #N`` in the PR body closes on merge.
* A fake Actions runner runs the repo's CI command on every pushed head and reports a check run (with its
  output, an annotation and a job log served through the logs redirect).
* Reviews are posted by token holders (Optio, a test "person"); webhooks go to Optio signed with
  ``X-Hub-Signature-256`` over the raw body; ETags answer 304; rate limits, 5xx storms and branch protection
  can be switched on.

Every JSON response the API serves is kept in `served` with its route template, so a test can check each
shape against GitHub's published OpenAPI description (tests/integration/test_fake_github_openapi.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from tests.support import http_client
from tests.support.fake_forge import FakeForge, seed_bare_repo
from tests.support.git_http import read_body, serve_http_backend
from tests.support.http_listener import never_blocks_in_accept

GIT_ENV = {"PATH": "/usr/bin:/bin:/usr/local/bin", "GIT_AUTHOR_NAME": "GitHub",
           "GIT_AUTHOR_EMAIL": "noreply@github.com", "GIT_COMMITTER_NAME": "GitHub",
           "GIT_COMMITTER_EMAIL": "noreply@github.com", "GIT_CONFIG_NOSYSTEM": "1"}
TS = "2026-01-01T00:00:00Z"


def _git(*args: str, cwd: Path, input: bytes | None = None, check: bool = True) -> str:
    env = {**GIT_ENV, "HOME": str(cwd)}
    res = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, env=env, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {res.stderr.decode(errors='replace')}")
    return res.stdout.decode(errors="replace")


@dataclass
class CheckRun:
    id: int
    head_sha: str
    name: str
    status: str = "queued"
    conclusion: str | None = None
    title: str | None = None
    summary: str | None = None
    log: str = ""
    annotations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Review:
    id: int
    login: str
    state: str
    body: str
    commit_id: str
    comments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Pull:
    number: int
    title: str
    body: str
    head: str
    base: str
    head_sha: str
    draft: bool = False
    opened_as_draft: bool = False
    state: str = "open"
    merged: bool = False
    merge_commit_sha: str | None = None
    reviews: list[Review] = field(default_factory=list)
    id: int = 0


@dataclass
class Repo:
    owner: str
    name: str
    path: Path
    id: int
    default_branch: str = "main"
    ci_command: str | None = None
    pulls: dict[int, Pull] = field(default_factory=dict)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_number: int = 1
    checks: list[CheckRun] = field(default_factory=list)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    required_checks: list[str] | None = None
    required_approvals: int = 0
    allow_squash: bool = True
    allow_merge_commit: bool = True
    allow_rebase: bool = True
    webhook_url: str | None = None
    webhook_secret: str | None = None
    # Where `issues` events go besides the repo hook (a tracker integration, e.g. Optio's ticket source).
    issue_hooks: list[tuple[str, str]] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class FakeGitHub(FakeForge[str]):
    """GitHub at ``api_url`` (Enterprise-style ``/api/v3``), git at ``{base_url}/OWNER/REPO.git``."""

    def __init__(self, root: Path, *, tokens: dict[str, str] | None = None) -> None:
        super().__init__(root, dict(tokens or {"ghp_optio_token_7f3a9c": "optio-bot",
                                               "ghp_person_token_55e1": "reviewer"}))
        self.tokens = self.holders  # token -> login
        self.repos: dict[str, Repo] = {}
        self.served: list[tuple[str, str, int, Any]] = []  # (method, route template, status, body)
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status) of API requests
        self.request_bodies: list[tuple[str, str, bytes]] = []  # (method, path, body) of API requests with a body
        self.deliveries: list[tuple[str, int]] = []  # (event, status Optio answered)
        self.rate_limited_until: float = 0.0
        self.fail_5xx_until: float = 0.0
        self.fail_5xx_paths: str = ""
        self.apps: dict[int, tuple[int, str, int]] = {}
        self.minted: list[str] = []
        self._ids = 1000
        self._lock = threading.RLock()
        self._ci_threads: list[threading.Thread] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self)

            def do_POST(self) -> None:
                fake._handle(self)

            def do_PUT(self) -> None:
                fake._handle(self)

            def do_PATCH(self) -> None:
                fake._handle(self)

            def do_DELETE(self) -> None:
                fake._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        never_blocks_in_accept(self.httpd)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # --- lifecycle and setup ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v3"

    def __enter__(self) -> FakeGitHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def create_repo(self, owner: str, name: str, *, files: dict[str, str] | None = None,
                    ci_command: str | None = None) -> Repo:
        path = self.root / owner / f"{name}.git"
        seed_bare_repo(path, default_branch="main", files=files or {"README.md": "demo\n"}, message="initial",
                       env=GIT_ENV, scratch=self.root)
        repo = Repo(owner=owner, name=name, path=path, id=self._next_id(), ci_command=ci_command)
        self.repos[repo.full_name] = repo
        return repo

    def remote_url(self, repo: Repo) -> str:
        return f"{self.base_url}/{repo.full_name}.git"

    def create_issue(self, repo: Repo, title: str, *, body: str = "", labels: list[str] | tuple[str, ...] = (),
                     assignee: str | None = None, login: str = "reporter") -> int:
        """An issue filed by `login`; its `issues` `opened` event goes to the issue hooks."""
        with self._lock:
            number = repo.next_number
            repo.next_number += 1
            repo.issues[number] = {"number": number, "title": title, "state": "open", "id": self._next_id(),
                                   "body": body, "labels": list(labels), "assignee": assignee, "login": login,
                                   "comments": [], "state_reason": None, "closed_at": None}
        self.deliver_issue(repo, number, "opened")
        return number

    def set_labels(self, repo: Repo, number: int, labels: list[str]) -> None:
        """Someone relabels the issue in the browser: a `labeled`/`unlabeled` event per change."""
        with self._lock:
            issue = repo.issues[number]
            before = list(issue["labels"])
            issue["labels"] = list(labels)
        for name in labels:
            if name not in before:
                self.deliver_issue(repo, number, "labeled", label=name)
        for name in before:
            if name not in labels:
                self.deliver_issue(repo, number, "unlabeled", label=name)

    def issue_hook(self, repo: Repo, url: str, secret: str) -> None:
        """Send the repo's `issues` events to `url` too, signed with `secret`."""
        repo.issue_hooks.append((url, secret))

    def hook(self, repo: Repo, url: str, secret: str) -> None:
        repo.webhook_url, repo.webhook_secret = url, secret

    def log(self, repo: Repo, branch: str | None = None) -> list[str]:
        return _git("log", "--format=%s", branch or repo.default_branch, cwd=repo.path).splitlines()

    def show(self, repo: Repo, path: str, ref: str | None = None) -> str:
        return _git("show", f"{ref or repo.default_branch}:{path}", cwd=repo.path)

    def branches(self, repo: Repo) -> list[str]:
        out = _git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=repo.path)
        return out.split()

    def wait_ci_idle(self, timeout: float = 60) -> None:
        for t in list(self._ci_threads):
            t.join(timeout)

    def pull_of_branch(self, repo: Repo, branch: str) -> Pull | None:
        found = [p for p in repo.pulls.values() if p.head == branch]
        return found[-1] if found else None

    def review_as(self, token: str, repo: Repo, number: int, *, event: str, body: str,
                  comments: list[dict[str, Any]] | None = None) -> int:
        """A person reviews through the API, like a browser would."""
        res = http_client.post(f"{self.api_url}/repos/{repo.full_name}/pulls/{number}/reviews",
                         headers={"Authorization": f"token {token}"},
                         json={"event": event, "body": body, "comments": comments or []})
        res.raise_for_status()
        return int(res.json()["id"])

    def push_to(self, repo: Repo, branch: str, files: dict[str, str], message: str) -> str:
        """Someone else pushes to ``branch`` (e.g. moves the base under an open PR)."""
        seed = Path(tempfile.mkdtemp(dir=self.root))
        _git("clone", "-q", "-b", branch, str(repo.path), str(seed / "w"), cwd=seed)
        work = seed / "w"
        for rel, content in files.items():
            (work / rel).write_text(content)
        _git("add", "-A", cwd=work)
        _git("commit", "-qm", message, cwd=work)
        before = self._refs(repo)
        _git("push", "-q", "origin", branch, cwd=work)
        shutil.rmtree(seed)
        self._after_push(repo, before)
        return self._refs(repo)[branch]

    # --- git ----------------------------------------------------------------------------------------------

    def _refs(self, repo: Repo) -> dict[str, str]:
        out = _git("for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads", cwd=repo.path)
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def _mergeable(self, repo: Repo, pull: Pull) -> tuple[bool, str]:
        """(clean, tree) of merging the head onto the base, by real git."""
        base = self._refs(repo).get(pull.base, "")
        res = subprocess.run(["git", "merge-tree", "--write-tree", base, pull.head_sha], cwd=repo.path,
                             capture_output=True, text=True, env={**GIT_ENV, "HOME": str(repo.path)}, check=False)
        return res.returncode == 0, res.stdout.split("\n", 1)[0].strip()

    def _git_http(self, req: BaseHTTPRequestHandler, path: str, query: str, body: bytes) -> None:
        match = re.match(r"^/([^/]+)/([^/]+?)\.git(/.*)$", path)
        repo = self.repos.get(f"{match.group(1)}/{match.group(2)}") if match else None
        if repo is None or match is None:
            return self._send(req, 404, {"message": "Not Found"})
        auth = req.headers.get("Authorization", "")
        login = self.basic_holder(auth)
        if login is not None:
            # GitHub takes an App's installation token over git only with the user name `x-access-token`.
            user, _, password = base64.b64decode(auth[6:]).decode(errors="replace").partition(":")
            if password in self.minted and user != "x-access-token":
                login = None
        if login is None:
            req.send_response(401)
            req.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
            req.send_header("Content-Length", "0")
            req.end_headers()
            return None
        is_push = path.endswith("/git-receive-pack") and req.command == "POST"
        before = self._refs(repo) if is_push else {}
        serve_http_backend(req, project_root=self.root, path_info=path, query=query, body=body, remote_user=login)
        if is_push:
            self._after_push(repo, before)
        return None

    def _after_push(self, repo: Repo, before: dict[str, str]) -> None:
        after = self._refs(repo)
        for branch, sha in after.items():
            if before.get(branch) == sha:
                continue
            with self._lock:
                for pull in repo.pulls.values():
                    if pull.state == "open" and pull.head == branch:
                        pull.head_sha = sha
            self.deliver(repo, "push", {"ref": f"refs/heads/{branch}", "before": before.get(branch, "0" * 40),
                                        "after": sha, "repository": self.repository(repo)})
            self._run_ci(repo, sha, branch)

    # --- the fake Actions runner ----------------------------------------------------------------------------

    def _run_ci(self, repo: Repo, sha: str, branch: str) -> None:
        if not repo.ci_command or branch == repo.default_branch:
            return
        run = CheckRun(id=self._next_id(), head_sha=sha, name="ci", status="in_progress")
        with self._lock:
            repo.checks.append(run)

        def work() -> None:
            scratch = Path(tempfile.mkdtemp(dir=self.root))
            try:
                _git("worktree", "add", "-q", "--detach", str(scratch / "w"), sha, cwd=repo.path)
                res = subprocess.run(["sh", "-c", repo.ci_command or "true"], cwd=scratch / "w", capture_output=True,
                                     text=True, env={"PATH": GIT_ENV["PATH"], "HOME": str(scratch)}, timeout=120,
                                     check=False)
                output = res.stdout + res.stderr
                _git("worktree", "remove", "--force", str(scratch / "w"), cwd=repo.path, check=False)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            with self._lock:
                run.status = "completed"
                run.conclusion = "success" if res.returncode == 0 else "failure"
                run.title = "CI passed" if res.returncode == 0 else f"CI failed (exit {res.returncode})"
                run.summary = output.strip().splitlines()[-1] if output.strip() else ""
                run.log = f"2026-01-01T00:00:00.0000000Z ##[group]Run ci\n{output}##[endgroup]\n"
                if res.returncode != 0:
                    run.annotations = [{"path": ".github", "start_line": 1, "end_line": 1,
                                        "annotation_level": "failure", "message": f"Process completed with exit "
                                                                                  f"code {res.returncode}."}]
            self.deliver(repo, "check_run", {"action": "completed", "check_run": self.check_run(repo, run),
                                             "repository": self.repository(repo)})

        thread = threading.Thread(target=work, daemon=True)
        self._ci_threads.append(thread)
        thread.start()

    # --- webhooks -------------------------------------------------------------------------------------------

    def deliver(self, repo: Repo, event: str, payload: dict[str, Any], *, secret: str | None = None) -> int | None:
        if not repo.webhook_url:
            return None
        body = json.dumps(payload).encode()
        key = (secret if secret is not None else repo.webhook_secret or "").encode()
        signature = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        try:
            res = http_client.post(repo.webhook_url, content=body, timeout=10, headers={
                "Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": signature, "User-Agent": "GitHub-Hookshot/fake"})
            status = res.status_code
        except httpx.HTTPError:
            status = 0
        self.deliveries.append((event, status))
        return status

    def deliver_issue(self, repo: Repo, number: int, action: str, *, label: str | None = None,
                      secret: str | None = None) -> list[int]:
        """An `issues` event to every issue hook (`secret` overrides theirs, e.g. to forge one); statuses."""
        payload: dict[str, Any] = {"action": action, "issue": self.issue(repo, repo.issues[number]),
                                   "repository": self.repository(repo), "sender": self.user("reporter")}
        if label is not None:
            payload["label"] = self.label(repo, label)
        body = json.dumps(payload).encode()
        statuses = []
        for url, key in list(repo.issue_hooks):
            signature = "sha256=" + hmac.new((secret if secret is not None else key).encode(), body,
                                             hashlib.sha256).hexdigest()
            try:
                status = http_client.post(url, content=body, timeout=30, headers={
                    "Content-Type": "application/json", "X-GitHub-Event": "issues",
                    "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": signature,
                    "User-Agent": "GitHub-Hookshot/fake"}).status_code
            except httpx.HTTPError:
                status = 0
            self.deliveries.append(("issues", status))
            statuses.append(status)
        return statuses

    # --- response shapes (GitHub's, see the OpenAPI description) ---------------------------------------------

    def label(self, repo: Repo, name: str) -> dict[str, Any]:
        lid = sum(name.encode()) + 7
        return {"id": lid, "node_id": f"LA_{lid}", "url": f"{self.api_url}/repos/{repo.full_name}/labels/{name}",
                "name": name, "description": None, "color": "ededed", "default": False}

    def issue(self, repo: Repo, issue: dict[str, Any]) -> dict[str, Any]:
        u = f"{self.api_url}/repos/{repo.full_name}/issues/{issue['number']}"
        assignee = self.user(issue["assignee"]) if issue.get("assignee") else None
        return {"id": issue["id"], "node_id": f"I_{issue['id']}", "url": u,
                "repository_url": f"{self.api_url}/repos/{repo.full_name}", "labels_url": f"{u}/labels{{/name}}",
                "comments_url": f"{u}/comments", "events_url": f"{u}/events",
                "html_url": f"{self.base_url}/{repo.full_name}/issues/{issue['number']}", "number": issue["number"],
                "state": issue["state"], "state_reason": issue.get("state_reason"), "title": issue["title"],
                "body": issue.get("body") or None, "user": self.user(issue.get("login") or "reporter"),
                "labels": [self.label(repo, name) for name in issue.get("labels") or []], "assignee": assignee,
                "assignees": [assignee] if assignee else [], "milestone": None, "locked": False,
                "active_lock_reason": None, "comments": len(issue.get("comments") or []), "created_at": TS,
                "updated_at": TS, "closed_at": issue.get("closed_at"), "author_association": "OWNER"}

    def issue_comment(self, repo: Repo, number: int, comment: dict[str, Any]) -> dict[str, Any]:
        u = f"{self.api_url}/repos/{repo.full_name}"
        return {"id": comment["id"], "node_id": f"IC_{comment['id']}", "url": f"{u}/issues/comments/{comment['id']}",
                "html_url": f"{self.base_url}/{repo.full_name}/issues/{number}#issuecomment-{comment['id']}",
                "body": comment["body"], "user": self.user(comment["login"]), "created_at": TS, "updated_at": TS,
                "issue_url": f"{u}/issues/{number}", "author_association": "COLLABORATOR"}

    def user(self, login: str) -> dict[str, Any]:
        uid = sum(login.encode()) + 1
        u = f"{self.api_url}/users/{login}"
        return {"login": login, "id": uid, "node_id": f"U_{uid}", "avatar_url": f"{self.base_url}/avatars/{login}",
                "gravatar_id": "", "url": u, "html_url": f"{self.base_url}/{login}", "followers_url": f"{u}/followers",
                "following_url": f"{u}/following{{/other_user}}", "gists_url": f"{u}/gists{{/gist_id}}",
                "starred_url": f"{u}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{u}/subscriptions",
                "organizations_url": f"{u}/orgs", "repos_url": f"{u}/repos", "events_url": f"{u}/events{{/privacy}}",
                "received_events_url": f"{u}/received_events", "type": "User", "site_admin": False}

    def repository(self, repo: Repo, *, full: bool = False) -> dict[str, Any]:
        u = f"{self.api_url}/repos/{repo.full_name}"
        data: dict[str, Any] = {
            "id": repo.id, "node_id": f"R_{repo.id}", "name": repo.name, "full_name": repo.full_name,
            "owner": self.user(repo.owner), "private": True, "html_url": f"{self.base_url}/{repo.full_name}",
            "description": None, "fork": False, "url": u, "archive_url": f"{u}/{{archive_format}}{{/ref}}",
            "assignees_url": f"{u}/assignees{{/user}}", "blobs_url": f"{u}/git/blobs{{/sha}}",
            "branches_url": f"{u}/branches{{/branch}}", "collaborators_url": f"{u}/collaborators{{/collaborator}}",
            "comments_url": f"{u}/comments{{/number}}", "commits_url": f"{u}/commits{{/sha}}",
            "compare_url": f"{u}/compare/{{base}}...{{head}}", "contents_url": f"{u}/contents/{{+path}}",
            "contributors_url": f"{u}/contributors", "deployments_url": f"{u}/deployments",
            "downloads_url": f"{u}/downloads", "events_url": f"{u}/events", "forks_url": f"{u}/forks",
            "git_commits_url": f"{u}/git/commits{{/sha}}", "git_refs_url": f"{u}/git/refs{{/sha}}",
            "git_tags_url": f"{u}/git/tags{{/sha}}", "git_url": f"git://127.0.0.1/{repo.full_name}.git",
            "issue_comment_url": f"{u}/issues/comments{{/number}}", "issue_events_url": f"{u}/issues/events{{/number}}",
            "issues_url": f"{u}/issues{{/number}}", "keys_url": f"{u}/keys{{/key_id}}",
            "labels_url": f"{u}/labels{{/name}}", "languages_url": f"{u}/languages", "merges_url": f"{u}/merges",
            "milestones_url": f"{u}/milestones{{/number}}",
            "notifications_url": f"{u}/notifications{{?since,all,participating}}", "pulls_url": f"{u}/pulls{{/number}}",
            "releases_url": f"{u}/releases{{/id}}", "ssh_url": f"git@127.0.0.1:{repo.full_name}.git",
            "stargazers_url": f"{u}/stargazers", "statuses_url": f"{u}/statuses/{{sha}}",
            "subscribers_url": f"{u}/subscribers", "subscription_url": f"{u}/subscription", "tags_url": f"{u}/tags",
            "teams_url": f"{u}/teams", "trees_url": f"{u}/git/trees{{/sha}}", "clone_url": self.remote_url(repo),
            "mirror_url": None, "hooks_url": f"{u}/hooks", "svn_url": f"{self.base_url}/{repo.full_name}",
            "homepage": None, "language": None, "forks_count": 0, "stargazers_count": 0, "watchers_count": 0,
            "size": 1, "default_branch": repo.default_branch, "open_issues_count": 0, "is_template": False,
            "topics": [], "has_issues": True, "has_projects": False, "has_wiki": False, "has_pages": False,
            "has_downloads": True, "has_discussions": False, "archived": False, "disabled": False,
            "visibility": "private", "pushed_at": TS, "created_at": TS, "updated_at": TS, "forks": 0,
            "open_issues": 0, "watchers": 0, "license": None,
        }
        if full:
            data.update({
                "permissions": {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
                "allow_squash_merge": repo.allow_squash, "allow_merge_commit": repo.allow_merge_commit,
                "allow_rebase_merge": repo.allow_rebase, "delete_branch_on_merge": False,
                "network_count": 0, "subscribers_count": 0,
            })
        return data

    def _branch_ref(self, repo: Repo, branch: str, sha: str) -> dict[str, Any]:
        return {"label": f"{repo.owner}:{branch}", "ref": branch, "sha": sha, "user": self.user(repo.owner),
                "repo": self.repository(repo)}

    def pull(self, repo: Repo, pull: Pull, *, full: bool = False) -> dict[str, Any]:
        u = f"{self.api_url}/repos/{repo.full_name}"
        html = f"{self.base_url}/{repo.full_name}/pull/{pull.number}"
        base_sha = self._refs(repo).get(pull.base, "0" * 40)
        data: dict[str, Any] = {
            "url": f"{u}/pulls/{pull.number}", "id": pull.id, "node_id": f"PR_{pull.id}", "html_url": html,
            "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "issue_url": f"{u}/issues/{pull.number}",
            "commits_url": f"{u}/pulls/{pull.number}/commits",
            "review_comments_url": f"{u}/pulls/{pull.number}/comments",
            "review_comment_url": f"{u}/pulls/comments{{/number}}",
            "comments_url": f"{u}/issues/{pull.number}/comments",
            "statuses_url": f"{u}/statuses/{pull.head_sha}", "number": pull.number, "state": pull.state,
            "locked": False, "title": pull.title, "user": self.user("optio-bot"), "body": pull.body, "labels": [],
            "milestone": None, "active_lock_reason": None, "created_at": TS, "updated_at": TS,
            "closed_at": TS if pull.state == "closed" else None, "merged_at": TS if pull.merged else None,
            "merge_commit_sha": pull.merge_commit_sha, "assignee": None, "assignees": [], "requested_reviewers": [],
            "requested_teams": [], "head": self._branch_ref(repo, pull.head, pull.head_sha),
            "base": self._branch_ref(repo, pull.base, base_sha),
            "_links": {k: {"href": v} for k, v in {
                "self": f"{u}/pulls/{pull.number}", "html": html, "issue": f"{u}/issues/{pull.number}",
                "comments": f"{u}/issues/{pull.number}/comments",
                "review_comments": f"{u}/pulls/{pull.number}/comments",
                "review_comment": f"{u}/pulls/comments{{/number}}", "commits": f"{u}/pulls/{pull.number}/commits",
                "statuses": f"{u}/statuses/{pull.head_sha}"}.items()},
            "author_association": "CONTRIBUTOR", "auto_merge": None, "draft": pull.draft,
        }
        if full:
            clean, _tree = self._mergeable(repo, pull) if pull.state == "open" else (True, "")
            data.update({"merged": pull.merged, "mergeable": clean if pull.state == "open" else None,
                         "rebaseable": clean, "mergeable_state": ("clean" if clean else "dirty")
                         if pull.state == "open" else "unknown", "merged_by": self.user("optio-bot")
                         if pull.merged else None, "comments": 0, "review_comments": 0,
                         "maintainer_can_modify": False, "commits": 1, "additions": 1, "deletions": 0,
                         "changed_files": 1})
        return data

    def check_run(self, repo: Repo, run: CheckRun) -> dict[str, Any]:
        u = f"{self.api_url}/repos/{repo.full_name}"
        app = {"id": 15368, "slug": "github-actions", "node_id": "MDM6QXBwMTUzNjg=", "client_id": "Iv1.actions",
               "owner": self.user("github"), "name": "GitHub Actions", "description": "Automate your workflow",
               "external_url": "https://help.github.com/en/actions", "html_url": "https://github.com/apps/github-actions",
               "created_at": TS, "updated_at": TS, "permissions": {"checks": "write"}, "events": ["push"]}
        return {
            "id": run.id, "head_sha": run.head_sha, "node_id": f"CR_{run.id}", "external_id": str(run.id),
            "url": f"{u}/check-runs/{run.id}", "html_url": f"{self.base_url}/{repo.full_name}/runs/{run.id}",
            "details_url": f"{self.base_url}/{repo.full_name}/actions/runs/{run.id}/job/{run.id}",
            "status": run.status, "conclusion": run.conclusion, "started_at": TS,
            "completed_at": TS if run.status == "completed" else None,
            "output": {"title": run.title, "summary": run.summary, "text": None,
                       "annotations_count": len(run.annotations),
                       "annotations_url": f"{u}/check-runs/{run.id}/annotations"},
            "name": run.name, "check_suite": {"id": run.id + 1}, "app": app, "pull_requests": [
                {"url": f"{u}/pulls/{p.number}", "id": p.id, "number": p.number,
                 "head": {"ref": p.head, "sha": p.head_sha, "repo": {"id": repo.id, "url": u, "name": repo.name}},
                 "base": {"ref": p.base, "sha": self._refs(repo).get(p.base, ""),
                          "repo": {"id": repo.id, "url": u, "name": repo.name}}}
                for p in repo.pulls.values() if p.state == "open" and p.head_sha == run.head_sha],
        }

    def review(self, repo: Repo, pull: Pull, review: Review) -> dict[str, Any]:
        html = f"{self.base_url}/{repo.full_name}/pull/{pull.number}#pullrequestreview-{review.id}"
        return {"id": review.id, "node_id": f"PRR_{review.id}", "user": self.user(review.login), "body": review.body,
                "state": review.state, "html_url": html,
                "pull_request_url": f"{self.api_url}/repos/{repo.full_name}/pulls/{pull.number}",
                "_links": {"html": {"href": html}, "pull_request": {
                    "href": f"{self.api_url}/repos/{repo.full_name}/pulls/{pull.number}"}},
                "submitted_at": TS, "commit_id": review.commit_id, "author_association": "COLLABORATOR"}

    def review_comment(self, repo: Repo, pull: Pull, review: Review, comment: dict[str, Any]) -> dict[str, Any]:
        u = f"{self.api_url}/repos/{repo.full_name}"
        html = f"{self.base_url}/{repo.full_name}/pull/{pull.number}#discussion_r{comment['id']}"
        return {"url": f"{u}/pulls/comments/{comment['id']}", "id": comment["id"], "node_id": f"PRRC_{comment['id']}",
                "pull_request_review_id": review.id, "diff_hunk": "@@ -1 +1 @@", "path": comment["path"],
                "position": 1, "original_position": 1, "commit_id": review.commit_id,
                "original_commit_id": review.commit_id, "user": self.user(review.login), "body": comment["body"],
                "created_at": TS, "updated_at": TS, "html_url": html, "pull_request_url": f"{u}/pulls/{pull.number}",
                "author_association": "COLLABORATOR",
                "_links": {"self": {"href": f"{u}/pulls/comments/{comment['id']}"}, "html": {"href": html},
                           "pull_request": {"href": f"{u}/pulls/{pull.number}"}},
                "line": comment["line"], "original_line": comment["line"], "side": "RIGHT"}

    # --- the API --------------------------------------------------------------------------------------------

    def _send(self, req: BaseHTTPRequestHandler, status: int, body: Any = None, *, template: str = "",
              headers: dict[str, str] | None = None, raw: bytes | None = None, content_type: str = "application/json"
              ) -> None:
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        extra = dict(headers or {})
        if raw is None and body is not None and req.command == "GET" and status == 200:
            etag = '"' + hashlib.sha1(payload).hexdigest() + '"'
            extra["ETag"] = etag
            if req.headers.get("If-None-Match") == etag:
                status, payload = 304, b""
        if template and status != 304 and body is not None:
            self.served.append((req.command, template, status, body))
        # Recorded before the answer goes out: a client that has its answer can count on seeing its request here.
        with self._lock:
            if urlsplit(req.path).path.startswith("/api/v3"):
                self.requests.append((req.command, req.path, status))
        req.send_response(status)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(len(payload)))
        limits = {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999",
                  "X-RateLimit-Reset": str(int(time.time()) + 3600)}
        for name, value in {**limits, **extra}.items():
            req.send_header(name, value)
        req.end_headers()
        if payload and req.command != "HEAD":
            req.wfile.write(payload)

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        body = read_body(req)
        split = urlsplit(req.path)
        if split.path == "/api/graphql":  # GitHub Enterprise's GraphQL endpoint beside /api/v3
            return self._api(req, "/graphql", {}, body)
        if not split.path.startswith("/api/v3/"):
            if split.path.startswith("/_logs/"):
                return self._serve_log(req, split.path)
            return self._git_http(req, split.path, split.query, body)
        if body and split.path.startswith("/api/v3/"):
            with self._lock:
                self.request_bodies.append((req.command, split.path, body))
        try:
            return self._api(req, split.path.removeprefix("/api/v3").rstrip("/"), parse_qs(split.query), body)
        except Exception as exc:  # a bug in the fake shows as a 500 with its message
            return self._send(req, 500, {"message": f"fake github: {type(exc).__name__}: {exc}"})

    def _serve_log(self, req: BaseHTTPRequestHandler, path: str) -> None:
        run_id = int(path.rsplit("/", 1)[1])
        for repo in self.repos.values():
            for run in repo.checks:
                if run.id == run_id:
                    return self._send(req, 200, raw=run.log.encode(), content_type="text/plain")
        return self._send(req, 404, {"message": "Not Found"})

    def add_app(self, app_id: int, installation_id: int, public_key_pem: str, *, token_ttl_s: int = 3600) -> None:
        """A GitHub App installed on the owner: its JWTs (RS256, ``iss`` = app id) mint installation tokens."""
        self.apps[app_id] = (installation_id, public_key_pem, token_ttl_s)

    def _mint(self, req: BaseHTTPRequestHandler, installation_id: int) -> None:
        import jwt  # PyJWT, which githubkit's App auth uses too

        auth = req.headers.get("Authorization", "")
        claims: dict[str, Any] | None = None
        for app_id, (installation, key, ttl) in self.apps.items():
            try:
                claims = jwt.decode(auth.removeprefix("Bearer "), key, algorithms=["RS256"])
            except jwt.PyJWTError:
                continue
            if str(claims.get("iss")) == str(app_id) and installation == installation_id:
                token = f"ghs_{uuid.uuid4().hex}"
                self.tokens[token] = f"app-{app_id}[bot]"
                self.minted.append(token)
                expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + ttl))
                return self._send(req, 201, {"token": token, "expires_at": expires, "permissions": {
                    "contents": "write", "pull_requests": "write", "checks": "read"},
                    "repository_selection": "all"}, template="/app/installations/{installation_id}/access_tokens")
        return self._send(req, 401, {"message": "A JSON web token could not be decoded"})

    def _graphql(self, req: BaseHTTPRequestHandler, data: dict[str, Any]) -> None:
        """The one mutation Optio needs from GraphQL: taking a draft PR out of draft."""
        token = req.headers.get("Authorization", "").partition(" ")[2]
        if token not in self.tokens:
            return self._send(req, 401, {"message": "Bad credentials"})
        if "markPullRequestReadyForReview" not in data.get("query", ""):
            return self._send(req, 200, {"errors": [{"message": "unsupported by the fake"}]})
        node = data.get("variables", {}).get("id")
        with self._lock:
            for repo in self.repos.values():
                for pull in repo.pulls.values():
                    if f"PR_{pull.id}" == node:
                        pull.draft = False
                        return self._send(req, 200, {"data": {"markPullRequestReadyForReview": {
                            "pullRequest": {"isDraft": False}}}})
        return self._send(req, 200, {"errors": [{"message": f"Could not resolve to a node with the global id of "
                                                            f"'{node}'", "type": "NOT_FOUND"}]})

    def _api(self, req: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]], body: bytes) -> None:
        if path == "/graphql" and req.command == "POST":
            return self._graphql(req, json.loads(body or b"{}"))
        minting = re.match(r"^/app/installations/(\d+)/access_tokens$", path)
        if minting and req.command == "POST":
            return self._mint(req, int(minting.group(1)))
        auth = req.headers.get("Authorization", "")
        token = auth.split(" ", 1)[1] if " " in auth else ""
        login = self.tokens.get(token)
        if login is None:
            return self._send(req, 401, {"message": "Bad credentials",
                                         "documentation_url": "https://docs.github.com/rest"})
        now = time.time()
        if now < self.rate_limited_until:
            reset = str(int(self.rate_limited_until) + 1)
            return self._send(req, 403, {"message": "API rate limit exceeded for user.",
                                         "documentation_url": "https://docs.github.com/rest/rate-limit"},
                              headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
        if now < self.fail_5xx_until and self.fail_5xx_paths in path:
            return self._send(req, 502, {"message": "Server Error"})
        data = json.loads(body) if body else {}
        m = re.match(r"^/repos/([^/]+)/([^/]+)(/.*)?$", path)
        if m is None:
            return self._send(req, 404, {"message": "Not Found"})
        repo = self.repos.get(f"{m.group(1)}/{m.group(2)}")
        if repo is None:
            return self._send(req, 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
        rest = m.group(3) or ""
        method = req.command
        with self._lock:
            return self._route(req, repo, method, rest, query, data, login)

    def _route(self, req: BaseHTTPRequestHandler, repo: Repo, method: str, rest: str, query: dict[str, list[str]],
               data: dict[str, Any], login: str) -> None:
        T = "/repos/{owner}/{repo}"
        if self._diff_route(req, repo, method, rest, query):
            return None
        if rest == "" and method == "GET":
            return self._send(req, 200, self.repository(repo, full=True), template=T)
        if rest == "/pulls" and method == "GET":
            state = (query.get("state") or ["open"])[0]
            head = (query.get("head") or [""])[0].partition(":")[2]
            found = [self.pull(repo, p) for p in repo.pulls.values()
                     if (state == "all" or p.state == state or (state == "closed" and p.merged))
                     and (not head or p.head == head)]
            return self._send(req, 200, found, template=T + "/pulls")
        if rest == "/pulls" and method == "POST":
            refs = self._refs(repo)
            if data["head"] not in refs:
                return self._send(req, 422, {"message": "Validation Failed", "errors": [
                    {"resource": "PullRequest", "field": "head", "code": "invalid"}]})
            if any(p.head == data["head"] and p.state == "open" for p in repo.pulls.values()):
                return self._send(req, 422, {"message": "Validation Failed", "errors": [
                    {"resource": "PullRequest", "code": "custom",
                     "message": f"A pull request already exists for {repo.owner}:{data['head']}."}]})
            number = repo.next_number
            repo.next_number += 1
            pull = Pull(number=number, title=data["title"], body=data.get("body") or "", head=data["head"],
                        base=data["base"], head_sha=refs[data["head"]], draft=bool(data.get("draft")),
                        opened_as_draft=bool(data.get("draft")),
                        id=self._next_id())
            repo.pulls[number] = pull
            self._send(req, 201, self.pull(repo, pull, full=True), template=T + "/pulls")
            self.deliver(repo, "pull_request", {"action": "opened", "number": number,
                                                "pull_request": self.pull(repo, pull, full=True),
                                                "repository": self.repository(repo)})
            return None
        m = re.match(r"^/pulls/(\d+)(/.*)?$", rest)
        if m:
            pull = repo.pulls.get(int(m.group(1)))
            if pull is None:
                return self._send(req, 404, {"message": "Not Found"})
            return self._pull_route(req, repo, pull, method, m.group(2) or "", data, login)
        m = re.match(r"^/commits/([0-9a-f]{40})/(check-runs|status)$", rest)
        if m and method == "GET":
            sha = m.group(1)
            if m.group(2) == "check-runs":
                runs = [self.check_run(repo, r) for r in repo.checks if r.head_sha == sha]
                return self._send(req, 200, {"total_count": len(runs), "check_runs": runs},
                                  template=T + "/commits/{ref}/check-runs")
            statuses = repo.statuses.get(sha, [])
            state = "pending" if not statuses else "failure" if any(s["state"] in ("failure", "error")
                                                                     for s in statuses) else "success"
            return self._send(req, 200, {"state": state, "sha": sha, "total_count": len(statuses),
                                         "statuses": statuses, "repository": self.repository(repo),
                                         "commit_url": f"{self.api_url}/repos/{repo.full_name}/commits/{sha}",
                                         "url": f"{self.api_url}/repos/{repo.full_name}/commits/{sha}/status"},
                              template=T + "/commits/{ref}/status")
        m = re.match(r"^/check-runs/(\d+)/annotations$", rest)
        if m and method == "GET":
            run = next((r for r in repo.checks if r.id == int(m.group(1))), None)
            notes = [] if run is None else [{**a, "start_column": None, "end_column": None, "title": a["message"],
                                             "raw_details": None, "blob_href": f"{self.base_url}/blob/{a['path']}"}
                                            for a in run.annotations]
            return self._send(req, 200, notes, template=T + "/check-runs/{check_run_id}/annotations")
        m = re.match(r"^/actions/jobs/(\d+)/logs$", rest)
        if m and method == "GET":
            return self._send(req, 302, None, headers={"Location": f"{self.base_url}/_logs/{m.group(1)}"})
        m = re.match(r"^/branches/([^/]+)/protection/required_status_checks$", rest)
        if m and method == "GET":
            if repo.required_checks is None or m.group(1) != repo.default_branch:
                return self._send(req, 404, {"message": "Branch not protected"})
            u = f"{self.api_url}/repos/{repo.full_name}/branches/{m.group(1)}/protection/required_status_checks"
            return self._send(req, 200, {"url": u, "contexts_url": f"{u}/contexts", "strict": False,
                                         "contexts": list(repo.required_checks),
                                         "checks": [{"context": c, "app_id": None} for c in repo.required_checks]},
                              template=T + "/branches/{branch}/protection/required_status_checks")
        m = re.match(r"^/git/refs/heads/(.+)$", rest)
        if m and method == "DELETE":
            _git("update-ref", "-d", f"refs/heads/{m.group(1)}", cwd=repo.path, check=False)
            return self._send(req, 204)
        if rest == "/issues" and method == "GET":
            return self._list_issues(req, repo, query)
        m = re.match(r"^/issues/(\d+)(/comments)?$", rest)
        if m and int(m.group(1)) in repo.issues:
            return self._issue_route(req, repo, repo.issues[int(m.group(1))], method, m.group(2) or "", data, login)
        m = re.match(r"^/statuses/([0-9a-f]{40})$", rest)
        if m and method == "POST":
            status = {"id": self._next_id(), "node_id": "SC_1", "state": data["state"], "context": data["context"],
                      "description": data.get("description"), "target_url": data.get("target_url"),
                      "avatar_url": None, "url": f"{self.api_url}/repos/{repo.full_name}/statuses/{m.group(1)}",
                      "created_at": TS, "updated_at": TS}
            repo.statuses.setdefault(m.group(1), []).append(status)
            return self._send(req, 201, status)
        return self._send(req, 404, {"message": f"Not Found ({method} {rest})"})

    def _list_issues(self, req: BaseHTTPRequestHandler, repo: Repo, query: dict[str, list[str]]) -> None:
        """`GET /repos/{owner}/{repo}/issues`: state, labels (all of them, comma-separated), assignee; newest
        first unless `direction=asc`. (GitHub lists pull requests here too, marked `pull_request`; pull requests
        of this fake live apart, so it lists issues only.)"""
        state = (query.get("state") or ["open"])[0]
        wanted = [x for x in (query.get("labels") or [""])[0].split(",") if x]
        assignee = (query.get("assignee") or [""])[0]
        per_page = int((query.get("per_page") or ["30"])[0])
        found = []
        for issue in repo.issues.values():
            if state != "all" and issue["state"] != state:
                continue
            if any(name.lower() not in {x.lower() for x in issue["labels"]} for name in wanted):
                continue
            if assignee and (issue.get("assignee") or "") != assignee and not (
                    assignee == "none" and not issue.get("assignee")):
                continue
            found.append(self.issue(repo, issue))
        found.sort(key=lambda i: i["number"], reverse=(query.get("direction") or ["desc"])[0] != "asc")
        return self._send(req, 200, found[:per_page], template="/repos/{owner}/{repo}/issues")

    def _issue_route(self, req: BaseHTTPRequestHandler, repo: Repo, issue: dict[str, Any], method: str, rest: str,
                     data: dict[str, Any], login: str) -> None:
        T = "/repos/{owner}/{repo}/issues/{issue_number}"
        number = issue["number"]
        if rest == "" and method == "GET":
            return self._send(req, 200, self.issue(repo, issue), template=T)
        if rest == "" and method == "PATCH":
            before = issue["state"]
            for key in ("title", "body"):
                if key in data:
                    issue[key] = data[key]
            if "labels" in data:
                issue["labels"] = [x if isinstance(x, str) else x["name"] for x in data["labels"]]
            if data.get("state") in ("open", "closed"):
                issue["state"] = data["state"]
                issue["state_reason"] = data.get("state_reason") or ("completed" if data["state"] == "closed"
                                                                     else "reopened")
                issue["closed_at"] = TS if data["state"] == "closed" else None
            self._send(req, 200, self.issue(repo, issue), template=T)
            if issue["state"] != before:
                self.deliver_issue(repo, number, "closed" if issue["state"] == "closed" else "reopened")
            return None
        if rest == "/comments" and method == "GET":
            return self._send(req, 200, [self.issue_comment(repo, number, c) for c in issue["comments"]],
                              template=T + "/comments")
        if rest == "/comments" and method == "POST":
            if not isinstance(data.get("body"), str) or not data["body"]:
                return self._send(req, 422, {"message": "Validation Failed", "errors": [
                    {"resource": "IssueComment", "field": "body", "code": "missing_field"}]})
            comment = {"id": self._next_id(), "body": data["body"], "login": login}
            issue["comments"].append(comment)
            return self._send(req, 201, self.issue_comment(repo, number, comment), template=T + "/comments")
        return self._send(req, 404, {"message": f"Not Found ({method} issue {rest})"})

    def _pull_route(self, req: BaseHTTPRequestHandler, repo: Repo, pull: Pull, method: str, rest: str,
                    data: dict[str, Any], login: str) -> None:
        T = "/repos/{owner}/{repo}/pulls/{pull_number}"
        if rest == "" and method == "GET":
            return self._send(req, 200, self.pull(repo, pull, full=True), template=T)
        if rest == "" and method == "PATCH":
            if data.get("state") in ("open", "closed") and not pull.merged:
                pull.state = data["state"]
            return self._send(req, 200, self.pull(repo, pull, full=True), template=T)
        if rest == "/reviews" and method == "GET":
            return self._send(req, 200, [self.review(repo, pull, r) for r in pull.reviews], template=T + "/reviews")
        if rest == "/reviews" and method == "POST":
            state = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED"}.get(data.get("event", ""),
                                                                                       "COMMENTED")
            comments = [{"id": self._next_id(), "path": c["path"], "line": int(c.get("line") or 1),
                         "body": c["body"]} for c in data.get("comments") or []]
            review = Review(id=self._next_id(), login=login, state=state, body=data.get("body") or "",
                            commit_id=data.get("commit_id") or pull.head_sha, comments=comments)
            pull.reviews.append(review)
            self._send(req, 200, self.review(repo, pull, review), template=T + "/reviews")
            self.deliver(repo, "pull_request_review", {"action": "submitted",
                                                       "review": self.review(repo, pull, review),
                                                       "pull_request": self.pull(repo, pull),
                                                       "repository": self.repository(repo)})
            return None
        m = re.match(r"^/reviews/(\d+)/comments$", rest)
        if m and method == "GET":
            review = next((r for r in pull.reviews if r.id == int(m.group(1))), None)
            if review is None:
                return self._send(req, 404, {"message": "Not Found"})
            return self._send(req, 200, [self.review_comment(repo, pull, review, c) for c in review.comments],
                              template=T + "/reviews/{review_id}/comments")
        if rest == "/merge" and method == "PUT":
            return self._merge(req, repo, pull, data)
        return self._send(req, 404, {"message": "Not Found"})

    def _merge(self, req: BaseHTTPRequestHandler, repo: Repo, pull: Pull, data: dict[str, Any]) -> None:
        T = "/repos/{owner}/{repo}/pulls/{pull_number}/merge"
        if pull.state != "open":
            return self._send(req, 405, {"message": "Pull Request is not mergeable"})
        if pull.draft:
            return self._send(req, 405, {"message": "Pull Request is still a draft"})
        if data.get("sha") and data["sha"] != pull.head_sha:
            return self._send(req, 409, {"message": "Head branch was modified. Review and try the merge again."})
        method = data.get("merge_method", "merge")
        allowed = {"squash": repo.allow_squash, "merge": repo.allow_merge_commit, "rebase": repo.allow_rebase}
        if not allowed.get(method):
            return self._send(req, 405, {"message": f"{method.capitalize()} merges are not allowed on this "
                                                    "repository."})
        approvals = {r.login for r in pull.reviews if r.state == "APPROVED" and r.commit_id == pull.head_sha}
        if len(approvals) < repo.required_approvals:
            return self._send(req, 405, {"message": f"At least {repo.required_approvals} approving review is "
                                                    "required by reviewers with write access."})
        for context in repo.required_checks or []:
            runs = [r for r in repo.checks if r.head_sha == pull.head_sha and r.name == context]
            if not runs or runs[-1].conclusion != "success":
                return self._send(req, 405, {"message": f"Required status check \"{context}\" is expected."})
        clean, tree = self._mergeable(repo, pull)
        if not clean:
            return self._send(req, 405, {"message": "Pull Request is not mergeable"})
        base_sha = self._refs(repo)[pull.base]
        title = data.get("commit_title") or f"{pull.title} (#{pull.number})"
        message = f"{title}\n\n{data.get('commit_message') or ''}".strip() + "\n"
        sha = _git("commit-tree", tree, "-p", base_sha, "-m", message, cwd=repo.path).strip()
        _git("update-ref", f"refs/heads/{pull.base}", sha, base_sha, cwd=repo.path)
        pull.state, pull.merged, pull.merge_commit_sha = "closed", True, sha
        for number in re.findall(r"(?i)\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?) #(\d+)", pull.body):
            if int(number) in repo.issues:
                repo.issues[int(number)]["state"] = "closed"
        self._send(req, 200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"},
                   template=T)
        self.deliver(repo, "pull_request", {"action": "closed", "number": pull.number,
                                            "pull_request": self.pull(repo, pull, full=True),
                                            "repository": self.repository(repo)})
        self.deliver(repo, "push", {"ref": f"refs/heads/{pull.base}", "before": base_sha, "after": sha,
                                    "repository": self.repository(repo)})
        return None

    # --- a pull request's files (GET /pulls/{n}/files), computed by git from the repo's own objects -------------

    def _diff_route(self, req: BaseHTTPRequestHandler, repo: Repo, method: str, rest: str,
                    query: dict[str, list[str]]) -> bool:
        m = re.match(r"^/pulls/(\d+)/files$", rest)
        if not m or method != "GET":
            return False
        pull = repo.pulls.get(int(m.group(1)))
        if pull is None:
            self._send(req, 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
            return True
        per_page = min(int((query.get("per_page") or ["30"])[0]), 100)
        page = max(int((query.get("page") or ["1"])[0]), 1)
        files = self.pull_files(repo, pull)[:3000]  # GitHub lists 3,000 files at most
        self._send(req, 200, files[(page - 1) * per_page:page * per_page],
                   template="/repos/{owner}/{repo}/pulls/{pull_number}/files")
        return True

    def pull_files(self, repo: Repo, pull: Pull) -> list[dict[str, Any]]:
        """GitHub's diff entries of base...head: numstat for the counts (``-`` for binary), name-status for
        the kind of change, the unified diff of each text file as its ``patch``."""
        base = self._refs(repo).get(pull.base, pull.head_sha)
        span = f"{base}...{pull.head_sha}"
        numstat = _git("diff", "-z", "-M", "--numstat", span, cwd=repo.path).split("\0")
        names = _git("diff", "-z", "-M", "--name-status", span, cwd=repo.path).split("\0")
        kinds = {"A": "added", "M": "modified", "D": "removed", "R": "renamed", "T": "changed", "C": "copied"}
        out: list[dict[str, Any]] = []
        i = j = 0
        while i < len(numstat) and numstat[i]:
            added, deleted, path = numstat[i].split("\t", 2)
            previous = None
            if not path:
                previous, path = numstat[i + 1], numstat[i + 2]
                i += 2
            i += 1
            letter = names[j][0]
            j += 3 if letter in "RC" else 2
            sha = _git("rev-parse", f"{base}:{path}" if letter == "D" else f"{pull.head_sha}:{path}",
                       cwd=repo.path).strip()
            blob = f"{self.base_url}/{repo.full_name}/blob/{pull.head_sha}/{path}"
            entry: dict[str, Any] = {
                "sha": sha, "filename": path, "status": kinds.get(letter, "modified"),
                "additions": 0 if added == "-" else int(added), "deletions": 0 if deleted == "-" else int(deleted),
                "changes": 0 if added == "-" else int(added) + int(deleted), "blob_url": blob,
                "raw_url": blob.replace("/blob/", "/raw/"),
                "contents_url": f"{self.api_url}/repos/{repo.full_name}/contents/{path}?ref={pull.head_sha}"}
            diff = _git("diff", "-M", span, "--", *([previous] if previous else []), path, cwd=repo.path)
            if added != "-" and "\n@@" in diff:
                entry["patch"] = diff[diff.index("\n@@") + 1:]
            if previous:
                entry["previous_filename"] = previous
            out.append(entry)
        return out

