"""A stateful fake GitLab: a real HTTP server on 127.0.0.1 that speaks GitLab's REST API v4 and smart-HTTP git.

What is real: the git repositories (bare repos served by ``git http-backend``, clone and push with a token as
the basic-auth password, as GitLab takes personal access tokens), merge requests whose ``sha``,
``has_conflicts`` and ``diff_refs`` come from git (``git merge-tree``), squash merges that write a real commit
onto the target branch, a pipeline runner that runs the project's CI script on each pushed head in a checkout
of it and keeps its output as the job trace, issues closed by ``Closes #N`` on merge, protected branches that
refuse a merge to a user below their merge access level, approvals that reset on push, and webhooks POSTed
with ``X-Gitlab-Token`` to the project's hooks.

The JSON has GitLab's own field names and types (``ExpandedMergeRequestSchema``, ``PipelineSchema``,
``JobSchema``, ``DiscussionSchema``, ... as published in GitLab's API models): the test
``tests/integration/test_gitlab_fake_schema.py`` checks every kind of response this fake sends against the
TypeScript models of ``@gitbeaker/core`` (the maintained GitLab API client on npm, whose response types
follow GitLab's documented entities), so the fake cannot drift into a private dialect. GETs carry a weak
``ETag`` and answer a matching ``If-None-Match`` with 304 (Rack::ETag / ConditionalGet, as GitLab's Rails API
does). ``inject`` and ``rate_limit_for`` answer API calls with 5xx or 429 (``Retry-After``,
``RateLimit-Reset``), like GitLab's application rate limits.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.fake_forge import FakeForge, seed_bare_repo
from tests.support.git_http import read_body, serve_http_backend
from tests.support.http_listener import never_blocks_in_accept

CLOSING = re.compile(r"(?i)\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?|implement(?:s|ed)?)\s*:?\s+#(\d+)")
ACCESS = {0: "No one", 30: "Developers + Maintainers", 40: "Maintainers"}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


GIT_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "GitLab", "GIT_AUTHOR_EMAIL": "gitlab@fake.test",
           "GIT_COMMITTER_NAME": "GitLab", "GIT_COMMITTER_EMAIL": "gitlab@fake.test"}


def _git(*args: str, cwd: Path, input: bytes | None = None, check: bool = True,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, check=check,
                          env={**GIT_ENV, "HOME": str(cwd), **(env or {})})


@dataclass
class User:
    id: int
    username: str
    name: str
    token: str

    def brief(self, base: str) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "name": self.name, "state": "active",
                "locked": False, "avatar_url": f"{base}/uploads/user/avatar/{self.id}/a.png",
                "web_url": f"{base}/{self.username}"}


@dataclass
class Note:
    id: int
    body: str
    author: User
    created_at: str
    type: str | None
    resolvable: bool
    position: dict[str, Any] | None = None
    resolved: bool = False
    resolved_by: User | None = None
    resolved_at: str | None = None
    system: bool = False


@dataclass
class Discussion:
    id: str
    individual_note: bool
    notes: list[Note]


@dataclass
class Version:
    id: int
    head: str
    base: str
    start: str
    created_at: str


@dataclass
class MergeRequest:
    id: int
    iid: int
    title: str
    description: str
    source_branch: str
    target_branch: str
    author: User
    sha: str
    created_at: str
    updated_at: str
    state: str = "opened"
    squash: bool = False
    force_remove_source_branch: bool = False
    has_conflicts: bool = False
    merge_status: str = "can_be_merged"
    merged_at: str | None = None
    closed_at: str | None = None
    merged_by: User | None = None
    merge_commit_sha: str | None = None
    squash_commit_sha: str | None = None
    discussions: list[Discussion] = field(default_factory=list)
    approved_by: list[User] = field(default_factory=list)
    reviewers: dict[int, tuple[User, str, str]] = field(default_factory=dict)  # user id -> (user, state, at)
    versions: list[Version] = field(default_factory=list)

    @property
    def draft(self) -> bool:
        return bool(re.match(r"(?i)^\s*(\[draft\]|\(draft\)|draft:|draft\s*-)", self.title))


@dataclass
class Job:
    id: int
    name: str
    stage: str
    status: str
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    trace: str = ""
    failure_reason: str | None = None


@dataclass
class Pipeline:
    id: int
    iid: int
    ref: str
    sha: str
    before_sha: str
    status: str
    created_at: str
    updated_at: str
    user: User
    jobs: list[Job] = field(default_factory=list)
    started_at: str | None = None
    finished_at: str | None = None
    duration: int | None = None


@dataclass
class Issue:
    id: int
    iid: int
    title: str
    description: str
    author: User
    created_at: str
    updated_at: str
    state: str = "opened"
    closed_at: str | None = None
    closed_by: User | None = None
    labels: list[str] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Protection:
    id: int
    name: str
    merge_level: int
    push_level: int


@dataclass
class Project:
    id: int
    path: str  # group/sub/proj
    default_branch: str
    repo: Path
    created_at: str
    ci_script: str | None = None
    squash_option: str = "default_on"
    merge_method: str = "ff"
    only_allow_merge_if_pipeline_succeeds: bool = False
    only_allow_merge_if_all_discussions_are_resolved: bool = False
    approvals_required: int = 0
    merge_requests_author_approval: bool = False
    members: dict[int, int] = field(default_factory=dict)  # user id -> access level
    mrs: dict[int, MergeRequest] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    pipelines: list[Pipeline] = field(default_factory=list)
    protected: dict[str, Protection] = field(default_factory=dict)
    hooks: list[tuple[str, str]] = field(default_factory=list)  # (url, secret token)
    # GitLab updates MRs from a push asynchronously (PostReceive); while lagging, MRs keep their old head.
    lagging: bool = False


@dataclass
class Delivery:
    event: str
    url: str
    status: int | None
    payload: dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class FakeGitLab(FakeForge[User]):
    """One GitLab instance: users, projects, and the HTTP server that serves both the API and git."""

    def __init__(self, root: Path, *, host: str = "127.0.0.1") -> None:
        self.bot = User(1, "optio-bot", "Optio Bot", "glpat-" + uuid.uuid4().hex)
        self.person = User(2, "reviewer", "Rita Reviewer", "glpat-" + uuid.uuid4().hex)
        super().__init__(root, {u.token: u for u in (self.bot, self.person)})
        self.users = self.holders  # token -> user
        self.repos = root / "repositories"
        self.repos.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.projects: dict[int, Project] = {}
        self._ids: dict[str, int] = {}
        self.api_log: list[tuple[str, str, int]] = []
        self.git_log: list[tuple[str, str, int]] = []
        self.deliveries: list[Delivery] = []
        self._injected: list[tuple[int, dict[str, str]]] = []
        self._rate_limited_until = 0.0
        self._down_until, self._down_status = 0.0, 503
        self._refuse_merges = 0
        self._hooks: queue.Queue[tuple[str, str, str, dict[str, Any]] | None] = queue.Queue()
        self._runner: queue.Queue[tuple[int, int] | None] = queue.Queue()
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

            def do_DELETE(self) -> None:
                fake._handle(self)

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        never_blocks_in_accept(self.httpd)
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        self._threads = [threading.Thread(target=self.httpd.serve_forever, daemon=True),
                         threading.Thread(target=self._deliver_loop, daemon=True),
                         threading.Thread(target=self._runner_loop, daemon=True)]

    # --- life ------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> FakeGitLab:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.put(None)
        self._runner.put(None)
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next(self, kind: str) -> int:
        with self.lock:
            self._ids[kind] = self._ids.get(kind, 0) + 1
            return self._ids[kind]

    # --- what a test sets up and does as a person -----------------------------------------------------

    def create_project(self, path: str, *, files: dict[str, str] | None = None, default_branch: str = "main",
                       ci_script: str | None = None) -> Project:
        repo = self.repos / f"{path}.git"
        seed_bare_repo(repo, default_branch=default_branch, files=files or {"README.md": "demo\n"},
                       message="Initial commit", env=GIT_ENV, scratch=self.root)
        project = Project(id=self._next("project"), path=path, default_branch=default_branch, repo=repo,
                          created_at=now_iso(), ci_script=ci_script,
                          members={self.bot.id: 40, self.person.id: 40})
        with self.lock:
            self.projects[project.id] = project
        return project

    def remote_url(self, project: Project) -> str:
        return f"{self.base_url}/{project.path}.git"

    def add_hook(self, project: Project, url: str, token: str) -> None:
        with self.lock:
            project.hooks.append((url, token))

    def protect(self, project: Project, branch: str, *, merge_level: int = 40, push_level: int = 40) -> None:
        with self.lock:
            project.protected[branch] = Protection(self._next("protection"), branch, merge_level, push_level)

    def create_issue(self, project: Project, title: str, *, description: str = "",
                     labels: list[str] | tuple[str, ...] = ()) -> Issue:
        """An issue a person files; its `Issue Hook` (`open`) goes to the project's hooks."""
        with self.lock:
            iid = len(project.issues) + 1
            issue = Issue(self._next("issue"), iid, title, description, self.person, now_iso(), now_iso(),
                          labels=list(labels))
            project.issues[iid] = issue
        self.issue_hook(project, issue, "open")
        return issue

    def set_labels(self, project: Project, issue: Issue, labels: list[str]) -> None:
        """A person relabels the issue: an `Issue Hook` (`update`) with the label change."""
        with self.lock:
            before = list(issue.labels)
            issue.labels, issue.updated_at = list(labels), now_iso()
        self.issue_hook(project, issue, "update", changes={"labels": {
            "previous": [self._hook_label(project, x) for x in before],
            "current": [self._hook_label(project, x) for x in labels]}})

    def issue_hook(self, project: Project, issue: Issue, action: str, *, changes: dict[str, Any] | None = None
                   ) -> None:
        """Queue the issue's `Issue Hook` to the project's hooks."""
        payload = self._issue_payload(project, issue, action, changes)
        for url, hook_token in project.hooks:
            self._hooks.put(("Issue Hook", url, hook_token, payload))

    def send_issue_hook(self, project: Project, issue: Issue, action: str, *, token: str | None = None) -> list[int]:
        """Send the issue's `Issue Hook` now (a redelivery from the hook's settings page); `token` overrides the
        hooks' own, e.g. to forge one. Returns each receiver's status."""
        data = json.dumps(self._issue_payload(project, issue, action, None)).encode()
        statuses = []
        for url, hook_token in list(project.hooks):
            req = urllib.request.Request(url, data=data, method="POST", headers={
                "Content-Type": "application/json", "X-Gitlab-Event": "Issue Hook",
                "X-Gitlab-Token": hook_token if token is None else token, "X-Gitlab-Event-UUID": str(uuid.uuid4()),
                "User-Agent": "GitLab/17.5.0"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    statuses.append(resp.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
        return statuses

    def _issue_payload(self, project: Project, issue: Issue, action: str, changes: dict[str, Any] | None
                       ) -> dict[str, Any]:
        return {
            "object_kind": "issue", "event_type": "issue", "user": self._hook_user(issue.author),
            "project": self._hook_project(project), "repository": self._hook_repository(project),
            "object_attributes": {
                "id": issue.id, "iid": issue.iid, "title": issue.title, "description": issue.description,
                "assignee_ids": [], "assignee_id": None, "author_id": issue.author.id, "project_id": project.id,
                "created_at": issue.created_at, "updated_at": issue.updated_at, "position": 0, "branch_name": None,
                "milestone_id": None, "state": issue.state, "action": action,
                "url": f"{self.base_url}/{project.path}/-/issues/{issue.iid}",
                "labels": [self._hook_label(project, x) for x in issue.labels]},
            "labels": [self._hook_label(project, x) for x in issue.labels], "changes": changes or {},
            "assignees": []}

    def _hook_label(self, project: Project, name: str) -> dict[str, Any]:
        return {"id": sum(name.encode()) + 5, "title": name, "color": "#ededed", "project_id": project.id,
                "created_at": project.created_at, "updated_at": project.created_at, "template": False,
                "description": "", "type": "ProjectLabel", "group_id": None}

    def mr_of_branch(self, project: Project, branch: str) -> MergeRequest | None:
        with self.lock:
            found = [m for m in project.mrs.values() if m.source_branch == branch]
            return found[-1] if found else None

    def comment(self, project: Project, mr: MergeRequest, body: str, *, user: User | None = None,
                path: str | None = None, line: int | None = None, resolvable: bool = True) -> Discussion:
        """A person starts a thread on the MR (a diff note on ``path:line`` of the head when given)."""
        with self.lock:
            position = None
            if path is not None:
                refs = self._diff_refs(project, mr)
                position = {**refs, "position_type": "text", "old_path": path, "new_path": path,
                            "old_line": None, "new_line": line}
            return self._discussion(project, mr, user or self.person, body, position=position,
                                    individual=not resolvable)

    def resolve_all(self, project: Project, mr: MergeRequest, *, user: User | None = None) -> None:
        """A person resolves every thread on the MR."""
        with self.lock:
            for d in mr.discussions:
                for n in d.notes:
                    if n.resolvable and not n.resolved:
                        n.resolved, n.resolved_by, n.resolved_at = True, user or self.person, now_iso()
            mr.updated_at = now_iso()
            self._mr_hook(project, mr, "update", user or self.person)

    def approve_as_person(self, project: Project, mr: MergeRequest) -> None:
        with self.lock:
            self._approve(project, mr, self.person, None)

    def request_changes_as_reviewer(self, project: Project, mr: MergeRequest) -> None:
        with self.lock:
            mr.reviewers[self.person.id] = (self.person, "requested_changes", now_iso())
            mr.updated_at = now_iso()

    def push_to_default(self, project: Project, files: dict[str, str], message: str = "Base change") -> str:
        """A person moves the default branch (a commit made outside Optio)."""
        work = Path(tempfile.mkdtemp(dir=self.root, prefix="push-"))
        try:
            _git("clone", "-q", "-b", project.default_branch, str(project.repo), "w", cwd=work)
            for name, content in files.items():
                (work / "w" / name).write_text(content)
            _git("add", "-A", cwd=work / "w")
            _git("commit", "-qm", message, cwd=work / "w")
            before = self._rev(project, project.default_branch)
            _git("push", "-q", "origin", f"HEAD:{project.default_branch}", cwd=work / "w")
            after = self._rev(project, project.default_branch) or ""
        finally:
            shutil.rmtree(work, ignore_errors=True)
        with self.lock:
            self._after_push(project, {f"refs/heads/{project.default_branch}": (before, after)}, self.person)
        return after

    def catch_up(self, project: Project) -> None:
        """GitLab's background processing of the pushes made while ``project.lagging`` finishes."""
        with self.lock:
            project.lagging = False
            for mr in project.mrs.values():
                sha = self._rev(project, mr.source_branch)
                if mr.state == "opened" and sha is not None and sha != mr.sha:
                    mr.sha = sha
                    mr.approved_by.clear()
                    self._new_version(project, mr)
                    self._recheck(project, mr)

    def inject(self, status: int, *, times: int = 1, headers: dict[str, str] | None = None) -> None:
        """The next ``times`` API calls answer ``status`` (a 5xx, or a 429 with its headers)."""
        with self.lock:
            self._injected.extend([(status, dict(headers or {}))] * times)

    def rate_limit_for(self, seconds: float) -> None:
        """Every API call answers 429 until ``seconds`` from now (``Retry-After`` and ``RateLimit-Reset``)."""
        with self.lock:
            self._rate_limited_until = time.time() + seconds

    def refuse_merges(self, times: int) -> None:
        """The next ``times`` merges answer 405 though the MR is mergeable, as GitLab does while it still
        processes a push (its mergeability check not yet caught up)."""
        with self.lock:
            self._refuse_merges = times

    def fail_for(self, seconds: float, status: int = 503) -> None:
        """Every API call answers ``status`` (a 5xx storm) until ``seconds`` from now."""
        with self.lock:
            self._down_until, self._down_status = time.time() + seconds, status

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until every pipeline has finished and every webhook has been delivered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                busy = any(p.status in ("created", "pending", "running") for pr in self.projects.values()
                           for p in pr.pipelines)
            if not busy and self._hooks.empty() and self._runner.empty():
                return
            time.sleep(0.05)
        raise TimeoutError("fake GitLab did not settle")

    # --- git --------------------------------------------------------------------------------------------

    def _rev(self, project: Project, branch: str) -> str | None:
        out = _git("rev-parse", "-q", "--verify", f"refs/heads/{branch}^{{commit}}", cwd=project.repo, check=False)
        return out.stdout.decode().strip() or None

    def _refs(self, project: Project) -> dict[str, str]:
        out = _git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", cwd=project.repo).stdout
        return dict(line.split(" ", 1) for line in out.decode().splitlines() if line)  # type: ignore[misc]

    def _merge_tree(self, project: Project, base: str, head: str) -> tuple[str | None, list[str]]:
        """(tree of head merged onto base, conflicting files): real git, as GitLab's mergeability check."""
        out = _git("merge-tree", "--write-tree", "--name-only", "--no-messages", base, head, cwd=project.repo,
                   check=False)
        lines = out.stdout.decode().splitlines()
        if out.returncode == 0:
            return lines[0], []
        return None, [line for line in lines[1:] if line]

    def _merge_base(self, project: Project, a: str, b: str) -> str:
        return _git("merge-base", a, b, cwd=project.repo, check=False).stdout.decode().strip() or a

    def _diff_refs(self, project: Project, mr: MergeRequest) -> dict[str, str]:
        version = mr.versions[-1]
        return {"base_sha": version.base, "head_sha": version.head, "start_sha": version.start}

    def _project_of_git_path(self, path: str) -> tuple[Project, str] | None:
        m = re.match(r"^/(.+?\.git)(/.*)$", path)
        if not m:
            return None
        name = m.group(1).removesuffix(".git")
        with self.lock:
            for project in self.projects.values():
                if project.path == name:
                    return project, m.group(2)
        return None

    def _serve_git(self, req: BaseHTTPRequestHandler, path: str, query: str) -> None:
        found = self._project_of_git_path(path)
        if found is None:
            return self._send(req, 404, b"", {})
        project, rest = found
        user = self.basic_holder(req.headers.get("Authorization"))
        if user is None:  # a private project: clone and push both need the token
            self.git_log.append((req.command, path, 401))
            return self._send(req, 401, b"HTTP Basic: Access denied\n", {"WWW-Authenticate": 'Basic realm="GitLab"'})
        body = read_body(req)
        is_push = rest.endswith("/git-receive-pack") and req.command == "POST"

        def after(status: int) -> None:
            """What GitLab does with a push happens before the pusher hears back (under the lock)."""
            self.git_log.append((req.command, path, status))
            if is_push:
                now = self._refs(project)
                changes = {ref: (before.get(ref), now.get(ref)) for ref in set(before) | set(now)
                           if before.get(ref) != now.get(ref)}
                if changes:
                    self._after_push(project, changes, user)

        with self.lock:
            before = self._refs(project) if is_push else {}
            serve_http_backend(req, project_root=self.repos, path_info=f"/{project.path}.git{rest}", query=query,
                               body=body, remote_user=user.username, home=self.root, before_reply=after)
        return None

    def _after_push(self, project: Project, changes: dict[str, tuple[str | None, str | None]], user: User) -> None:
        """What GitLab does after a push: MRs follow their source, conflicts are recomputed, CI runs, hooks fire."""
        for ref, (before, after) in changes.items():
            branch = ref.removeprefix("refs/heads/")
            for mr in project.mrs.values():
                if mr.state != "opened" or project.lagging:
                    continue
                if mr.source_branch == branch and after is not None and after != mr.sha:
                    mr.sha = after
                    mr.approved_by.clear()  # approvals reset on push
                    self._new_version(project, mr)
                if mr.source_branch == branch or mr.target_branch == branch:
                    self._recheck(project, mr)
            self._hook(project, "Push Hook", self._push_payload(project, ref, before, after, user))
            if after is not None:
                self._start_pipeline(project, branch, after, before or "0" * 40, user)

    def _new_version(self, project: Project, mr: MergeRequest) -> None:
        start = self._rev(project, mr.target_branch) or mr.sha
        mr.versions.append(Version(self._next("version"), mr.sha, self._merge_base(project, start, mr.sha), start,
                                   now_iso()))
        mr.updated_at = now_iso()

    def _recheck(self, project: Project, mr: MergeRequest) -> None:
        target = self._rev(project, mr.target_branch)
        if target is None:
            return
        tree, _conflicts = self._merge_tree(project, target, mr.sha)
        was = mr.has_conflicts
        mr.has_conflicts = tree is None
        mr.merge_status = "cannot_be_merged" if mr.has_conflicts else "can_be_merged"
        if was != mr.has_conflicts:
            mr.updated_at = now_iso()

    # --- CI ----------------------------------------------------------------------------------------------

    def _start_pipeline(self, project: Project, ref: str, sha: str, before: str, user: User) -> None:
        if project.ci_script is None:
            return  # no CI configuration: GitLab creates no pipeline
        at = now_iso()
        pipeline = Pipeline(self._next("pipeline"), len(project.pipelines) + 1, ref, sha, before, "pending", at, at,
                            user, jobs=[Job(self._next("job"), "test", "test", "pending", at)])
        project.pipelines.append(pipeline)
        self._pipeline_changed(project, pipeline)
        self._runner.put((project.id, pipeline.id))

    def _pipeline_changed(self, project: Project, pipeline: Pipeline) -> None:
        pipeline.updated_at = now_iso()
        mr = next((m for m in project.mrs.values() if m.source_branch == pipeline.ref and m.state == "opened"), None)
        self._hook(project, "Pipeline Hook", self._pipeline_payload(project, pipeline, mr))

    def _runner_loop(self) -> None:
        while True:
            item = self._runner.get()
            if item is None:
                return
            try:
                self._run_pipeline(*item)
            except Exception as exc:  # a runner crash is a failed job, never a dead runner
                with self.lock:
                    pipeline = self._pipeline(self.projects[item[0]], item[1])
                    pipeline.status = pipeline.jobs[0].status = "failed"
                    pipeline.jobs[0].trace += f"\nrunner system failure: {exc}\n"

    def _run_pipeline(self, project_id: int, pipeline_id: int) -> None:
        with self.lock:
            project = self.projects[project_id]
            pipeline = self._pipeline(project, pipeline_id)
            if pipeline.status != "pending":
                return
            job = pipeline.jobs[0]
            pipeline.status = job.status = "running"
            pipeline.started_at = job.started_at = now_iso()
            self._pipeline_changed(project, pipeline)
            script, sha = project.ci_script or "true", pipeline.sha
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(dir=self.root, prefix="job-"))
        try:
            archive = _git("archive", "--format=tar", sha, cwd=project.repo).stdout
            subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
            proc = subprocess.run(["/bin/sh", "-c", script], cwd=work, capture_output=True, timeout=120,
                                  env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
                                       "CI": "true", "GITLAB_CI": "true", "CI_COMMIT_SHA": sha,
                                       "CI_COMMIT_REF_NAME": pipeline.ref}, check=False)
            code, output = proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            code, output = 1, "job timed out\n"
        finally:
            shutil.rmtree(work, ignore_errors=True)
        with self.lock:
            job.trace = (f"Running with fake-gitlab-runner\nChecking out {sha[:8]} as {pipeline.ref}...\n$ {script}\n"
                         f"{output}")
            job.trace += "Job succeeded\n" if code == 0 else f"ERROR: Job failed: exit code {code}\n"
            job.status = pipeline.status = "success" if code == 0 else "failed"
            job.failure_reason = None if code == 0 else "script_failure"
            job.finished_at = pipeline.finished_at = now_iso()
            pipeline.duration = max(1, int(time.monotonic() - started))
            self._pipeline_changed(project, pipeline)

    def _pipeline(self, project: Project, pipeline_id: int) -> Pipeline:
        for p in project.pipelines:
            if p.id == pipeline_id:
                return p
        raise ApiError(404, "404 Not found")

    # --- webhooks ----------------------------------------------------------------------------------------

    def _hook(self, project: Project, event: str, payload: dict[str, Any]) -> None:
        for url, token in project.hooks:
            self._hooks.put((event, url, token, payload))

    def _deliver_loop(self) -> None:
        while True:
            item = self._hooks.get()
            if item is None:
                return
            event, url, token, payload = item
            data = json.dumps(payload).encode()
            req = urllib.request.Request(url, data=data, method="POST", headers={
                "Content-Type": "application/json", "X-Gitlab-Event": event, "X-Gitlab-Token": token,
                "X-Gitlab-Event-UUID": str(uuid.uuid4()), "X-Gitlab-Instance": self.base_url,
                "User-Agent": "GitLab/17.5.0"})
            status: int | None
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = None
            self.deliveries.append(Delivery(event, url, status, payload))

    # --- JSON in GitLab's shapes ---------------------------------------------------------------------------

    def _project_json(self, p: Project) -> dict[str, Any]:
        base, name = self.base_url, p.path.rsplit("/", 1)[-1]
        namespace = p.path.rsplit("/", 1)[0]
        return {
            "id": p.id, "description": None, "name": name, "name_with_namespace": p.path.replace("/", " / "),
            "path": name, "path_with_namespace": p.path, "created_at": p.created_at,
            "default_branch": p.default_branch, "tag_list": [], "topics": [],
            "ssh_url_to_repo": f"git@{self.host}:{p.path}.git", "http_url_to_repo": f"{base}/{p.path}.git",
            "web_url": f"{base}/{p.path}", "readme_url": f"{base}/{p.path}/-/blob/{p.default_branch}/README.md",
            "forks_count": 0, "avatar_url": None, "star_count": 0, "last_activity_at": p.created_at,
            "namespace": {"id": p.id + 1000, "name": namespace.rsplit("/", 1)[-1], "path": namespace.rsplit("/", 1)[-1],
                          "kind": "group", "full_path": namespace, "parent_id": None, "avatar_url": None,
                          "web_url": f"{base}/groups/{namespace}"},
            "visibility": "private", "archived": False, "empty_repo": False, "issues_enabled": True,
            "merge_requests_enabled": True, "jobs_enabled": True, "wiki_enabled": False, "snippets_enabled": False,
            "merge_method": p.merge_method, "squash_option": p.squash_option,
            "only_allow_merge_if_pipeline_succeeds": p.only_allow_merge_if_pipeline_succeeds,
            "allow_merge_on_skipped_pipeline": False,
            "only_allow_merge_if_all_discussions_are_resolved": p.only_allow_merge_if_all_discussions_are_resolved,
            "remove_source_branch_after_merge": True, "autoclose_referenced_issues": True,
            "merge_requests_author_approval": p.merge_requests_author_approval,
            "permissions": {"project_access": {"access_level": p.members.get(self.bot.id, 0),
                                               "notification_level": 3}, "group_access": None},
        }

    def _pipeline_json(self, p: Pipeline, project: Project) -> dict[str, Any]:
        return {"id": p.id, "iid": p.iid, "project_id": project.id, "sha": p.sha, "ref": p.ref, "status": p.status,
                "source": "push", "created_at": p.created_at, "updated_at": p.updated_at,
                "web_url": f"{self.base_url}/{project.path}/-/pipelines/{p.id}"}

    def _expanded_pipeline_json(self, p: Pipeline, project: Project) -> dict[str, Any]:
        text = {"success": "passed"}.get(p.status, p.status)
        return {**self._pipeline_json(p, project), "before_sha": p.before_sha, "tag": False, "yaml_errors": None,
                "user": self.bot.brief(self.base_url) if p.user is self.bot else p.user.brief(self.base_url),
                "started_at": p.started_at, "finished_at": p.finished_at, "committed_at": None,
                "duration": p.duration, "queued_duration": None, "coverage": None,
                "detailed_status": {"icon": f"status_{p.status}", "text": text, "label": text, "group": p.status,
                                    "tooltip": text, "has_details": True,
                                    "details_path": f"/{project.path}/-/pipelines/{p.id}", "illustration": None,
                                    "favicon": f"/assets/ci_favicons/favicon_status_{p.status}.png"}}

    def _job_json(self, j: Job, p: Pipeline, project: Project) -> dict[str, Any]:
        commit = self._commit_json(project, p.sha)
        started, finished = j.started_at, j.finished_at
        return {"id": j.id, "name": j.name, "stage": j.stage, "status": j.status, "ref": p.ref, "tag": False,
                "coverage": None, "allow_failure": False, "created_at": j.created_at, "started_at": started,
                "finished_at": finished, "erased_at": None, "duration": p.duration, "queued_duration": 0.1,
                "failure_reason": j.failure_reason, "user": p.user.brief(self.base_url), "commit": commit,
                "pipeline": self._pipeline_json(p, project), "web_url": f"{self.base_url}/{project.path}/-/jobs/{j.id}",
                "artifacts": [], "artifacts_expire_at": None, "tag_list": [],
                "runner": {"id": 1, "paused": False, "description": "fake-gitlab-runner", "ip_address": "127.0.0.1",
                           "is_shared": True, "runner_type": "instance_type", "name": "fake-gitlab-runner",
                           "online": True, "status": "online"},
                "project": {"ci_job_token_scope_enabled": False}}

    def _commit_json(self, project: Project, sha: str) -> dict[str, Any]:
        out = _git("show", "-s", "--format=%H%x00%s%x00%B%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%P", sha,
                   cwd=project.repo).stdout.decode()
        full, title, message, an, ae, ad, cn, ce, cd, parents = out.split("\x00")
        return {"id": full, "short_id": full[:8], "title": title, "message": message, "author_name": an,
                "author_email": ae, "authored_date": ad, "committer_name": cn, "committer_email": ce,
                "committed_date": cd, "created_at": cd, "parent_ids": parents.split(),
                "web_url": f"{self.base_url}/{project.path}/-/commit/{full}"}

    def _head_pipeline(self, project: Project, mr: MergeRequest) -> Pipeline | None:
        mine = [p for p in project.pipelines if p.ref == mr.source_branch and p.sha == mr.sha]
        return mine[-1] if mine else None

    def _detailed_status(self, project: Project, mr: MergeRequest) -> str:
        if mr.state != "opened":
            return "not_open"
        if mr.draft:
            return "draft_status"
        if mr.has_conflicts:
            return "broken_status"
        pipeline = self._head_pipeline(project, mr)
        if project.only_allow_merge_if_pipeline_succeeds:
            if pipeline is None or pipeline.status in ("created", "pending", "running"):
                return "ci_still_running"
            if pipeline.status != "success":
                return "ci_must_pass"
        if project.only_allow_merge_if_all_discussions_are_resolved and self._unresolved(mr):
            return "discussions_not_resolved"
        if project.approvals_required > len(mr.approved_by):
            return "not_approved"
        return "mergeable"

    @staticmethod
    def _unresolved(mr: MergeRequest) -> bool:
        return any(n.resolvable and not n.resolved for d in mr.discussions for n in d.notes)

    def _mr_json(self, project: Project, mr: MergeRequest, *, expanded: bool) -> dict[str, Any]:
        base = self.base_url
        ref = f"!{mr.iid}"
        author = mr.author.brief(base)
        data: dict[str, Any] = {
            "id": mr.id, "iid": mr.iid, "project_id": project.id, "title": mr.title, "description": mr.description,
            "state": mr.state, "created_at": mr.created_at, "updated_at": mr.updated_at,
            "merged_by": mr.merged_by.brief(base) if mr.merged_by else None,
            "merge_user": mr.merged_by.brief(base) if mr.merged_by else None, "merged_at": mr.merged_at,
            "closed_by": None, "closed_at": mr.closed_at, "target_branch": mr.target_branch,
            "source_branch": mr.source_branch, "user_notes_count": sum(len(d.notes) for d in mr.discussions),
            "upvotes": 0, "downvotes": 0, "author": author, "assignees": [], "assignee": None,
            "reviewers": [u.brief(base) for u, _, _ in mr.reviewers.values()], "source_project_id": project.id,
            "target_project_id": project.id, "labels": [], "draft": mr.draft, "work_in_progress": mr.draft,
            "milestone": None, "merge_when_pipeline_succeeds": False, "merge_status": mr.merge_status,
            "detailed_merge_status": self._detailed_status(project, mr), "sha": mr.sha,
            "merge_commit_sha": mr.merge_commit_sha, "squash_commit_sha": mr.squash_commit_sha,
            "discussion_locked": None, "should_remove_source_branch": None,
            "force_remove_source_branch": mr.force_remove_source_branch, "prepared_at": mr.created_at,
            "reference": ref, "references": {"short": ref, "relative": ref, "full": f"{project.path}{ref}"},
            "web_url": f"{base}/{project.path}/-/merge_requests/{mr.iid}",
            "time_stats": {"time_estimate": 0, "total_time_spent": 0, "human_time_estimate": None,
                           "human_total_time_spent": None},
            "squash": mr.squash, "squash_on_merge": mr.squash,
            "task_completion_status": {"count": 0, "completed_count": 0},
            "has_conflicts": mr.has_conflicts, "blocking_discussions_resolved": not self._unresolved(mr),
            "approvals_before_merge": None,
        }
        if expanded:
            pipeline = self._head_pipeline(project, mr)
            data.update({
                "subscribed": True, "changes_count": "1", "latest_build_started_at": None,
                "latest_build_finished_at": None, "first_deployed_to_production_at": None,
                "pipeline": self._pipeline_json(pipeline, project) if pipeline else None,
                "head_pipeline": self._expanded_pipeline_json(pipeline, project) if pipeline else None,
                "diff_refs": self._diff_refs(project, mr), "merge_error": None, "first_contribution": False,
                "user": {"can_merge": self._can_merge(project, mr.target_branch, self.bot)},
            })
        return data

    def _note_json(self, project: Project, mr: MergeRequest, n: Note) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": n.id, "type": n.type, "body": n.body, "attachment": None, "author": n.author.brief(self.base_url),
            "created_at": n.created_at, "updated_at": n.created_at, "system": n.system, "noteable_id": mr.id,
            "noteable_type": "MergeRequest", "noteable_iid": mr.iid, "project_id": project.id,
            "commit_id": None, "resolvable": n.resolvable, "confidential": False, "internal": False,
        }
        if n.resolvable:
            data.update({"resolved": n.resolved, "resolved_by": n.resolved_by.brief(self.base_url)
                         if n.resolved_by else None, "resolved_at": n.resolved_at})
        if n.position is not None:
            data["position"] = n.position
        return data

    def _discussion_json(self, project: Project, mr: MergeRequest, d: Discussion) -> dict[str, Any]:
        return {"id": d.id, "individual_note": d.individual_note,
                "notes": [self._note_json(project, mr, n) for n in d.notes]}

    def _issue_json(self, project: Project, i: Issue) -> dict[str, Any]:
        ref = f"#{i.iid}"
        return {
            "id": i.id, "iid": i.iid, "project_id": project.id, "title": i.title, "description": i.description,
            "state": i.state, "created_at": i.created_at, "updated_at": i.updated_at, "closed_at": i.closed_at,
            "closed_by": i.closed_by.brief(self.base_url) if i.closed_by else None, "labels": list(i.labels),
            "milestone": None,
            "assignees": [], "author": i.author.brief(self.base_url), "type": "ISSUE", "assignee": None,
            "user_notes_count": len(i.notes), "merge_requests_count": 0, "upvotes": 0, "downvotes": 0, "due_date": None,
            "confidential": False, "discussion_locked": None, "issue_type": "issue",
            "web_url": f"{self.base_url}/{project.path}/-/issues/{i.iid}",
            "time_stats": {"time_estimate": 0, "total_time_spent": 0, "human_time_estimate": None,
                           "human_total_time_spent": None},
            "task_completion_status": {"count": 0, "completed_count": 0}, "has_tasks": False, "task_status": "",
            "references": {"short": ref, "relative": ref, "full": f"{project.path}{ref}"},
            "_links": {"self": f"{self.base_url}/api/v4/projects/{project.id}/issues/{i.iid}",
                       "notes": f"{self.base_url}/api/v4/projects/{project.id}/issues/{i.iid}/notes",
                       "award_emoji": f"{self.base_url}/api/v4/projects/{project.id}/issues/{i.iid}/award_emoji",
                       "project": f"{self.base_url}/api/v4/projects/{project.id}"},
            "subscribed": False,
        }

    def _branch_json(self, project: Project, name: str, sha: str) -> dict[str, Any]:
        commit = self._commit_json(project, sha)
        commit.pop("web_url")
        protection = project.protected.get(name)
        return {"name": name, "merged": False, "protected": protection is not None,
                "default": name == project.default_branch, "developers_can_push": protection is None,
                "developers_can_merge": protection is None or protection.merge_level <= 30,
                "can_push": self._can_push(project, name, self.bot),
                "web_url": f"{self.base_url}/{project.path}/-/tree/{name}", "commit": commit}

    def _protection_json(self, p: Protection) -> dict[str, Any]:
        def level(n: int, i: int) -> list[dict[str, Any]]:
            return [{"id": i, "access_level": n, "access_level_description": ACCESS.get(n, str(n)), "user_id": None,
                     "group_id": None}]
        return {"id": p.id, "name": p.name, "push_access_levels": level(p.push_level, p.id * 10),
                "merge_access_levels": level(p.merge_level, p.id * 10 + 1),
                "unprotect_access_levels": level(40, p.id * 10 + 2), "allow_force_push": False,
                "code_owner_approval_required": False}

    def _approvals_json(self, project: Project, mr: MergeRequest) -> dict[str, Any]:
        left = max(0, project.approvals_required - len(mr.approved_by))
        return {"id": mr.id, "iid": mr.iid, "project_id": project.id, "title": mr.title,
                "description": mr.description, "state": mr.state, "created_at": mr.created_at,
                "updated_at": mr.updated_at, "merge_status": mr.merge_status, "approved": bool(mr.approved_by)
                and left == 0, "approvals_required": project.approvals_required, "approvals_left": left,
                "approved_by": [{"user": u.brief(self.base_url)} for u in mr.approved_by]}

    def _push_payload(self, project: Project, ref: str, before: str | None, after: str | None,
                      user: User) -> dict[str, Any]:
        commits = [] if after is None else [self._hook_commit(project, after)]
        return {"object_kind": "push", "event_name": "push", "before": before or "0" * 40,
                "after": after or "0" * 40, "ref": ref, "ref_protected": ref.removeprefix("refs/heads/")
                in project.protected, "checkout_sha": after, "message": None, "user_id": user.id,
                "user_name": user.name, "user_username": user.username, "user_email": "",
                "user_avatar": "", "project_id": project.id, "project": self._hook_project(project),
                "commits": commits, "total_commits_count": len(commits),
                "repository": self._hook_repository(project)}

    def _hook_commit(self, project: Project, sha: str) -> dict[str, Any]:
        c = self._commit_json(project, sha)
        return {"id": c["id"], "message": c["message"], "title": c["title"], "timestamp": c["committed_date"],
                "url": c["web_url"], "author": {"name": c["author_name"], "email": c["author_email"]},
                "added": [], "modified": [], "removed": []}

    def _hook_project(self, p: Project) -> dict[str, Any]:
        j = self._project_json(p)
        return {"id": p.id, "name": j["name"], "description": "", "web_url": j["web_url"], "avatar_url": None,
                "git_ssh_url": j["ssh_url_to_repo"], "git_http_url": j["http_url_to_repo"],
                "namespace": j["namespace"]["name"], "visibility_level": 0,
                "path_with_namespace": p.path, "default_branch": p.default_branch, "ci_config_path": None,
                "homepage": j["web_url"], "url": j["ssh_url_to_repo"], "ssh_url": j["ssh_url_to_repo"],
                "http_url": j["http_url_to_repo"]}

    def _hook_repository(self, p: Project) -> dict[str, Any]:
        j = self._project_json(p)
        return {"name": j["name"], "url": j["ssh_url_to_repo"], "description": "", "homepage": j["web_url"],
                "git_http_url": j["http_url_to_repo"], "git_ssh_url": j["ssh_url_to_repo"], "visibility_level": 0}

    def _hook_user(self, user: User) -> dict[str, Any]:
        return {"id": user.id, "name": user.name, "username": user.username, "avatar_url": "", "email": "[REDACTED]"}

    def _hook_mr(self, project: Project, mr: MergeRequest, action: str | None = None) -> dict[str, Any]:
        data = {"id": mr.id, "iid": mr.iid, "title": mr.title, "description": mr.description,
                "source_branch": mr.source_branch, "target_branch": mr.target_branch,
                "source_project_id": project.id, "target_project_id": project.id, "state": mr.state,
                "merge_status": mr.merge_status, "detailed_merge_status": self._detailed_status(project, mr),
                "author_id": mr.author.id, "created_at": mr.created_at, "updated_at": mr.updated_at,
                "draft": mr.draft, "work_in_progress": mr.draft, "url": self._mr_json(project, mr,
                                                                                     expanded=False)["web_url"],
                "last_commit": self._hook_commit(project, mr.sha), "merge_commit_sha": mr.merge_commit_sha,
                "blocking_discussions_resolved": not self._unresolved(mr), "assignee_id": None,
                "milestone_id": None, "position": 0, "source": self._hook_project(project),
                "target": self._hook_project(project)}
        if action is not None:
            data["action"] = action
        return data

    def _mr_hook(self, project: Project, mr: MergeRequest, action: str, user: User) -> None:
        self._hook(project, "Merge Request Hook", {
            "object_kind": "merge_request", "event_type": "merge_request", "user": self._hook_user(user),
            "project": self._hook_project(project), "repository": self._hook_repository(project),
            "object_attributes": self._hook_mr(project, mr, action), "labels": [], "changes": {},
            "assignees": [], "reviewers": []})

    def _pipeline_payload(self, project: Project, p: Pipeline, mr: MergeRequest | None) -> dict[str, Any]:
        return {
            "object_kind": "pipeline",
            "object_attributes": {"id": p.id, "iid": p.iid, "ref": p.ref, "tag": False, "sha": p.sha,
                                  "before_sha": p.before_sha, "source": "push", "status": p.status,
                                  "detailed_status": p.status, "stages": ["test"], "created_at": p.created_at,
                                  "finished_at": p.finished_at, "duration": p.duration, "queued_duration": None,
                                  "variables": [], "url": f"{self.base_url}/{project.path}/-/pipelines/{p.id}"},
            "merge_request": None if mr is None else {
                "id": mr.id, "iid": mr.iid, "title": mr.title, "source_branch": mr.source_branch,
                "source_project_id": project.id, "target_branch": mr.target_branch,
                "target_project_id": project.id, "state": mr.state, "merge_status": mr.merge_status,
                "detailed_merge_status": self._detailed_status(project, mr),
                "url": f"{self.base_url}/{project.path}/-/merge_requests/{mr.iid}"},
            "user": self._hook_user(p.user), "project": self._hook_project(project),
            "commit": self._hook_commit(project, p.sha),
            "builds": [{"id": j.id, "stage": j.stage, "name": j.name, "status": j.status, "created_at": j.created_at,
                        "started_at": j.started_at, "finished_at": j.finished_at, "failure_reason": j.failure_reason,
                        "when": "on_success", "manual": False, "allow_failure": False, "user": self._hook_user(p.user)}
                       for j in p.jobs],
        }

    # --- state changes the API makes -----------------------------------------------------------------------

    def _level(self, project: Project, user: User) -> int:
        return project.members.get(user.id, 0)

    def _can_merge(self, project: Project, branch: str, user: User) -> bool:
        rule = project.protected.get(branch)
        level = self._level(project, user)
        return level >= 30 and (rule is None or (rule.merge_level > 0 and level >= rule.merge_level))

    def _can_push(self, project: Project, branch: str, user: User) -> bool:
        rule = project.protected.get(branch)
        level = self._level(project, user)
        return level >= 30 and (rule is None or (rule.push_level > 0 and level >= rule.push_level))

    def _discussion(self, project: Project, mr: MergeRequest, user: User, body: str, *,
                    position: dict[str, Any] | None = None, individual: bool = False) -> Discussion:
        note = Note(self._next("note"), body, user, now_iso(), None if individual else
                    ("DiffNote" if position else "DiscussionNote"), resolvable=not individual, position=position)
        discussion = Discussion(uuid.uuid4().hex + uuid.uuid4().hex[:8], individual, [note])
        mr.discussions.append(discussion)
        mr.updated_at = now_iso()
        self._hook(project, "Note Hook", {
            "object_kind": "note", "event_type": "note", "user": self._hook_user(user), "project_id": project.id,
            "project": self._hook_project(project), "repository": self._hook_repository(project),
            "object_attributes": {"id": note.id, "note": body, "noteable_type": "MergeRequest",
                                  "author_id": user.id, "created_at": note.created_at,
                                  "updated_at": note.created_at, "project_id": project.id, "attachment": None,
                                  "line_code": None, "commit_id": "", "noteable_id": mr.id, "system": False,
                                  "st_diff": None, "discussion_id": discussion.id, "type": note.type,
                                  "position": position, "url":
                                  f"{self.base_url}/{project.path}/-/merge_requests/{mr.iid}#note_{note.id}"},
            "merge_request": self._hook_mr(project, mr)})
        return discussion

    def _approve(self, project: Project, mr: MergeRequest, user: User, sha: str | None) -> None:
        if sha is not None and sha != mr.sha:
            raise ApiError(409, "SHA does not match HEAD of source branch")
        if user is mr.author and not project.merge_requests_author_approval:
            raise ApiError(401, "401 Unauthorized")
        if user in mr.approved_by:
            raise ApiError(401, "401 Unauthorized")
        mr.approved_by.append(user)
        mr.updated_at = now_iso()
        self._mr_hook(project, mr, "approved", user)

    def _merge(self, project: Project, mr: MergeRequest, user: User, params: dict[str, Any]) -> None:
        if mr.state != "opened" or mr.draft:
            raise ApiError(405, "405 Method Not Allowed")
        sha = params.get("sha")
        if sha and sha != mr.sha:
            raise ApiError(409, "SHA does not match HEAD of source branch: " + mr.sha)
        if not self._can_merge(project, mr.target_branch, user):
            raise ApiError(401, "401 Unauthorized")
        self._recheck(project, mr)
        if mr.has_conflicts:
            raise ApiError(406, "Branch cannot be merged")
        if self._detailed_status(project, mr) != "mergeable" or self._refuse_merges > 0:
            self._refuse_merges = max(0, self._refuse_merges - 1)
            raise ApiError(405, "405 Method Not Allowed")
        target = self._rev(project, mr.target_branch)
        assert target is not None
        tree, _ = self._merge_tree(project, target, mr.sha)
        assert tree is not None
        squash = {"always": True, "never": False}.get(project.squash_option, bool(params.get("squash", mr.squash)))
        env = {"GIT_AUTHOR_NAME": mr.author.name, "GIT_AUTHOR_EMAIL": f"{mr.author.username}@fake.test",
               "GIT_COMMITTER_NAME": user.name, "GIT_COMMITTER_EMAIL": f"{user.username}@fake.test"}
        if squash:
            message = params.get("squash_commit_message") or mr.title
            new = _git("commit-tree", tree, "-p", target, "-F", "-", cwd=project.repo, input=message.encode(),
                       env=env).stdout.decode().strip()
            mr.squash_commit_sha = new
        else:
            message = params.get("merge_commit_message") or (
                f"Merge branch '{mr.source_branch}' into '{mr.target_branch}'\n\n{mr.title}\n\nSee merge request "
                f"{project.path}!{mr.iid}")
            new = _git("commit-tree", tree, "-p", target, "-p", mr.sha, "-F", "-", cwd=project.repo,
                       input=message.encode(), env=env).stdout.decode().strip()
        mr.merge_commit_sha = None if squash and project.merge_method != "merge" else new
        _git("update-ref", f"refs/heads/{mr.target_branch}", new, target, cwd=project.repo)
        mr.state, mr.merged_at, mr.merged_by, mr.squash = "merged", now_iso(), user, squash
        mr.updated_at = mr.merged_at
        if params.get("should_remove_source_branch") or mr.force_remove_source_branch:
            old = self._rev(project, mr.source_branch)
            _git("update-ref", "-d", f"refs/heads/{mr.source_branch}", cwd=project.repo)
            self._hook(project, "Push Hook", self._push_payload(project, f"refs/heads/{mr.source_branch}", old,
                                                                None, user))
        if mr.target_branch == project.default_branch:
            for n in {int(x) for x in CLOSING.findall(f"{mr.description}\n{message}")}:
                issue = project.issues.get(n)
                if issue is not None and issue.state == "opened":
                    issue.state, issue.closed_at, issue.closed_by = "closed", now_iso(), user
        self._mr_hook(project, mr, "merge", user)
        self._after_push(project, {f"refs/heads/{mr.target_branch}": (target, new)}, user)

    # --- the API -------------------------------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        if not parts.path.startswith("/api/v4/"):
            return self._serve_git(req, parts.path, parts.query)
        status, body, headers = self._api(req, parts.path.removeprefix("/api/v4"), parse_qs(parts.query))
        with self.lock:
            self.api_log.append((req.command, req.path, status))
        self._send(req, status, body, headers)

    def _api(self, req: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]
             ) -> tuple[int, bytes, dict[str, str]]:
        raw = read_body(req)
        with self.lock:
            injected = self._injected.pop(0) if self._injected else None
            limited = self._rate_limited_until - time.time()
            down = self._down_status if self._down_until > time.time() else None
        if down is not None:
            injected = (down, {})
        if limited > 0:
            injected = (429, {"Retry-After": str(int(limited) + 1), "RateLimit-Limit": "600",
                              "RateLimit-Remaining": "0", "RateLimit-Reset": str(int(self._rate_limited_until) + 1)})
        if injected is not None:
            status, extra = injected
            message = "Retry later" if status == 429 else f"{status} Internal Server Error"
            return status, json.dumps({"message": message}).encode(), {"Content-Type": "application/json", **extra}
        user = self.users.get(req.headers.get("PRIVATE-TOKEN", ""))
        if user is None:
            return _json(401, {"message": "401 Unauthorized"})
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return _json(400, {"error": "body is not JSON"})
        flat = {k.removesuffix("[]"): v[-1] for k, v in query.items()}
        try:
            with self.lock:
                status, result = self._route(req.command, path, flat, data, user)
        except ApiError as exc:
            return status_json(exc)
        if isinstance(result, str):
            return status, result.encode(), {"Content-Type": "text/plain"}
        body = json.dumps(result).encode()
        headers = {"Content-Type": "application/json"}
        if req.command == "GET" and status == 200:
            etag = 'W/"' + hashlib.md5(body).hexdigest() + '"'
            headers["ETag"] = etag
            if req.headers.get("If-None-Match") == etag:
                return 304, b"", {"ETag": etag}
        return status, body, headers

    def _find_project(self, ident: str) -> Project:
        key = unquote(ident)
        for p in self.projects.values():
            if str(p.id) == key or p.path == key:
                return p
        raise ApiError(404, "404 Project Not Found")

    def _route(self, verb: str, path: str, q: dict[str, str], data: dict[str, Any], user: User) -> tuple[int, Any]:
        seg = path.strip("/").split("/")
        if len(seg) < 2 or seg[0] != "projects":
            raise ApiError(404, "404 Not Found")
        project = self._find_project(seg[1])
        if self._level(project, user) < 10:
            raise ApiError(404, "404 Project Not Found")
        rest = [unquote(s) for s in seg[2:]]
        if (diffs := self._diff_route(verb, project, rest, q)) is not None:
            return diffs
        match (verb, rest):
            case ("GET", []):
                return 200, self._project_json(project)
            case ("GET", ["merge_requests"]):
                mrs = [m for m in project.mrs.values()
                       if q.get("state", "all") in ("all", m.state)
                       and ("source_branch" not in q or m.source_branch == q["source_branch"])
                       and ("target_branch" not in q or m.target_branch == q["target_branch"])]
                key = q.get("order_by", "created_at")
                mrs.sort(key=lambda m: (getattr(m, key, m.created_at), m.iid), reverse=q.get("sort", "desc") == "desc")
                return 200, [self._mr_json(project, m, expanded=False) for m in mrs[: int(q.get("per_page", 20))]]
            case ("POST", ["merge_requests"]):
                return 201, self._mr_json(project, self._create_mr(project, user, data), expanded=True)
            case (_, ["merge_requests", iid, *more]):
                mr = project.mrs.get(int(iid)) if iid.isdigit() else None
                if mr is None:
                    raise ApiError(404, "404 Not found")
                return self._route_mr(verb, project, mr, more, q, data, user)
            case ("GET", ["repository", "branches", name]):
                sha = self._rev(project, name)
                if sha is None:
                    raise ApiError(404, "404 Branch Not Found")
                return 200, self._branch_json(project, name, sha)
            case ("DELETE", ["repository", "branches", name]):
                if self._rev(project, name) is None:
                    raise ApiError(404, "404 Branch Not Found")
                if name == project.default_branch or not self._can_push(project, name, user):
                    raise ApiError(403, "403 Forbidden")
                old = self._rev(project, name)
                _git("update-ref", "-d", f"refs/heads/{name}", cwd=project.repo)
                self._hook(project, "Push Hook", self._push_payload(project, f"refs/heads/{name}", old, None, user))
                return 204, ""
            case ("GET", ["protected_branches", name]):
                if name not in project.protected:
                    raise ApiError(404, "404 Not found")
                return 200, self._protection_json(project.protected[name])
            case ("GET", ["pipelines"]):
                found = [p for p in project.pipelines if ("sha" not in q or p.sha == q["sha"])
                         and ("ref" not in q or p.ref == q["ref"])]
                key = q.get("order_by", "id")
                found.sort(key=lambda p: (getattr(p, key, p.id), p.id), reverse=q.get("sort", "desc") == "desc")
                return 200, [self._pipeline_json(p, project) for p in found[: int(q.get("per_page", 20))]]
            case ("GET", ["pipelines", pid]):
                return 200, self._expanded_pipeline_json(self._pipeline(project, int(pid)), project)
            case ("GET", ["pipelines", pid, "jobs"]):
                pipeline = self._pipeline(project, int(pid))
                jobs = [j for j in pipeline.jobs if "scope" not in q or j.status == q["scope"]]
                return 200, [self._job_json(j, pipeline, project) for j in jobs]
            case ("POST", ["pipelines", pid, "retry"]):
                pipeline = self._pipeline(project, int(pid))
                for job in pipeline.jobs:
                    job.status, job.trace, job.failure_reason = "pending", "", None
                pipeline.status = "pending"
                self._pipeline_changed(project, pipeline)
                self._runner.put((project.id, pipeline.id))
                return 201, self._expanded_pipeline_json(pipeline, project)
            case ("POST", ["pipeline"]):
                ref = q.get("ref") or data.get("ref")
                sha = self._rev(project, str(ref)) if ref else None
                if sha is None:
                    raise ApiError(400, "Reference not found")
                self._start_pipeline(project, str(ref), sha, "0" * 40, user)
                return 201, self._expanded_pipeline_json(project.pipelines[-1], project)
            case ("GET", ["jobs", jid, "trace"]):
                for p in project.pipelines:
                    for j in p.jobs:
                        if j.id == int(jid):
                            return 200, j.trace
                raise ApiError(404, "404 Not found")
            case ("GET", ["issues"]):
                return 200, self._list_issues(project, q)
            case (_, ["issues", iid, *more]):
                issue = project.issues.get(int(iid)) if iid.isdigit() else None
                if issue is None:
                    raise ApiError(404, "404 Not found")
                return self._route_issue(verb, project, issue, more, data, user)
        raise ApiError(404, "404 Not Found")

    def _list_issues(self, project: Project, q: dict[str, str]) -> list[dict[str, Any]]:
        """`GET /projects/:id/issues`: state (opened, closed, all), labels (all of them, comma-separated),
        assignee_username, milestone; ordered by created_at (or updated_at), newest first unless sort=asc."""
        wanted = [x.lower() for x in q.get("labels", "").split(",") if x]
        found = [i for i in project.issues.values()
                 if q.get("state", "all") in ("all", i.state)
                 and all(name in {x.lower() for x in i.labels} for name in wanted)
                 and not q.get("assignee_username") and not q.get("milestone")]  # nobody is assigned here
        key = "updated_at" if q.get("order_by") == "updated_at" else "created_at"
        found.sort(key=lambda i: (getattr(i, key), i.iid), reverse=q.get("sort", "desc") == "desc")
        return [self._issue_json(project, i) for i in found[: int(q.get("per_page", 20))]]

    def _issue_note_json(self, project: Project, issue: Issue, note: dict[str, Any]) -> dict[str, Any]:
        author = note["author"].brief(self.base_url)
        return {"id": note["id"], "type": None, "body": note["body"], "attachment": None, "author": author,
                "created_at": note["created_at"], "updated_at": note["created_at"], "system": False,
                "noteable_id": issue.id, "noteable_type": "Issue", "noteable_iid": issue.iid,
                "project_id": project.id, "resolvable": False, "confidential": False, "internal": False,
                "commands_changes": {}}

    def _route_issue(self, verb: str, project: Project, issue: Issue, more: list[str], data: dict[str, Any],
                     user: User) -> tuple[int, Any]:
        match (verb, more):
            case ("GET", []):
                return 200, self._issue_json(project, issue)
            case ("PUT", []):
                if "title" in data:
                    issue.title = str(data["title"])
                if "description" in data:
                    issue.description = str(data["description"])
                if "labels" in data:
                    labels = data["labels"]
                    issue.labels = [x for x in (labels.split(",") if isinstance(labels, str) else labels) if x]
                action = "update"
                if data.get("state_event") == "close" and issue.state == "opened":
                    issue.state, issue.closed_at, issue.closed_by, action = "closed", now_iso(), user, "close"
                elif data.get("state_event") == "reopen" and issue.state == "closed":
                    issue.state, issue.closed_at, issue.closed_by, action = "opened", None, None, "reopen"
                issue.updated_at = now_iso()
                self.issue_hook(project, issue, action)
                return 200, self._issue_json(project, issue)
            case ("GET", ["notes"]):
                return 200, [self._issue_note_json(project, issue, n) for n in issue.notes]
            case ("POST", ["notes"]):
                body = str(data.get("body") or "")
                if not body:
                    raise ApiError(400, "body is missing")
                note = {"id": self._next("note"), "body": body, "author": user, "created_at": now_iso()}
                issue.notes.append(note)
                issue.updated_at = note["created_at"]
                return 201, self._issue_note_json(project, issue, note)
        raise ApiError(404, "404 Not Found")

    def _create_mr(self, project: Project, user: User, data: dict[str, Any]) -> MergeRequest:
        source, target = str(data.get("source_branch") or ""), str(data.get("target_branch") or "")
        title = str(data.get("title") or "")
        if not source or not target or not title:
            raise ApiError(400, "source_branch, target_branch and title are required")
        sha = self._rev(project, source)
        if sha is None or self._rev(project, target) is None:
            raise ApiError(404, "404 Branch Not Found")
        if any(m.source_branch == source and m.target_branch == target and m.state == "opened"
               for m in project.mrs.values()):
            raise ApiError(409, f"Another open merge request already exists for this source branch: !{source}")
        at = now_iso()
        mr = MergeRequest(self._next("mr"), len(project.mrs) + 1, title, str(data.get("description") or ""), source,
                          target, user, sha, at, at, squash=bool(data.get("squash", False)),
                          force_remove_source_branch=bool(data.get("remove_source_branch", False)))
        project.mrs[mr.iid] = mr
        self._new_version(project, mr)
        self._recheck(project, mr)
        self._mr_hook(project, mr, "open", user)
        return mr

    def _route_mr(self, verb: str, project: Project, mr: MergeRequest, more: list[str], q: dict[str, str],
                  data: dict[str, Any], user: User) -> tuple[int, Any]:
        match (verb, more):
            case ("GET", []):
                return 200, self._mr_json(project, mr, expanded=True)
            case ("PUT", []):
                if "title" in data:
                    mr.title = str(data["title"])
                if "description" in data:
                    mr.description = str(data["description"])
                if data.get("state_event") == "close" and mr.state == "opened":
                    mr.state, mr.closed_at = "closed", now_iso()
                    self._mr_hook(project, mr, "close", user)
                mr.updated_at = now_iso()
                self._mr_hook(project, mr, "update", user)
                return 200, self._mr_json(project, mr, expanded=True)
            case ("PUT", ["merge"]):
                self._merge(project, mr, user, data)
                return 200, self._mr_json(project, mr, expanded=True)
            case ("GET", ["discussions"]):
                return 200, [self._discussion_json(project, mr, d) for d in mr.discussions]
            case ("POST", ["discussions"]):
                body = str(data.get("body") or "")
                if not body:
                    raise ApiError(400, "body is missing")
                position = data.get("position")
                if position is not None:
                    position = {"base_sha": position.get("base_sha"), "start_sha": position.get("start_sha"),
                                "head_sha": position.get("head_sha"), "old_path": position.get("old_path"),
                                "new_path": position.get("new_path"), "position_type": "text",
                                "old_line": position.get("old_line"), "new_line": position.get("new_line")}
                return 201, self._discussion_json(project, mr, self._discussion(project, mr, user, body,
                                                                                 position=position))
            case ("PUT", ["discussions", did]):
                for d in mr.discussions:
                    if d.id == did:
                        for n in d.notes:
                            if n.resolvable:
                                n.resolved = bool(data.get("resolved"))
                                n.resolved_by, n.resolved_at = (user, now_iso()) if n.resolved else (None, None)
                        mr.updated_at = now_iso()
                        return 200, self._discussion_json(project, mr, d)
                raise ApiError(404, "404 Not found")
            case ("POST", ["notes"]):
                body = str(data.get("body") or "")
                if not body:
                    raise ApiError(400, "body is missing")
                d = self._discussion(project, mr, user, body, individual=True)
                return 201, self._note_json(project, mr, d.notes[0])
            case ("GET", ["approvals"]):
                return 200, self._approvals_json(project, mr)
            case ("POST", ["approve"]):
                self._approve(project, mr, user, data.get("sha"))
                return 201, self._approvals_json(project, mr)
            case ("POST", ["unapprove"]):
                if user not in mr.approved_by:
                    raise ApiError(404, "404 Not found")
                mr.approved_by.remove(user)
                mr.updated_at = now_iso()
                self._mr_hook(project, mr, "unapproved", user)
                return 201, self._approvals_json(project, mr)
            case ("GET", ["reviewers"]):
                return 200, [{"user": u.brief(self.base_url), "state": state, "created_at": at}
                             for u, state, at in mr.reviewers.values()]
            case ("GET", ["versions"]):
                return 200, [{"id": v.id, "head_commit_sha": v.head, "base_commit_sha": v.base,
                              "start_commit_sha": v.start, "created_at": v.created_at, "merge_request_id": mr.id,
                              "state": "collected", "real_size": "1", "patch_id_sha": v.head}
                             for v in reversed(mr.versions)]
        raise ApiError(404, "404 Not Found")

    # --- a merge request's diffs (GET .../merge_requests/:iid/diffs), computed by git from the repo itself -------

    def _diff_route(self, verb: str, project: Project, rest: list[str], q: dict[str, str]
                    ) -> tuple[int, Any] | None:
        if verb != "GET" or len(rest) != 3 or rest[0] != "merge_requests" or rest[2] != "diffs":
            return None
        mr = project.mrs.get(int(rest[1])) if rest[1].isdigit() else None
        if mr is None:
            raise ApiError(404, "404 Not found")
        per_page = min(int(q.get("per_page", "20")), 100)
        page = max(int(q.get("page", "1")), 1)
        return 200, self.mr_diffs(project, mr)[(page - 1) * per_page:page * per_page]

    def mr_diffs(self, project: Project, mr: MergeRequest) -> list[dict[str, Any]]:
        """GitLab's ``MergeRequestDiffSchema`` list for the MR's latest version (base...head): modes and kind of
        change from ``git diff --raw``, each file's unified diff from its first hunk (or git's "Binary files")."""
        refs = self._diff_refs(project, mr)
        span = f"{refs['base_sha']}...{refs['head_sha']}"
        raw = _git("diff", "-z", "-M", "--raw", span, cwd=project.repo).stdout.decode().split("\0")
        out: list[dict[str, Any]] = []
        i = 0
        while i < len(raw) and raw[i]:
            old_mode, new_mode, _old, _new, status = raw[i].lstrip(":").split(" ")
            old_path = raw[i + 1]
            new_path = raw[i + 2] if status[0] in "RC" else old_path
            i += 3 if status[0] in "RC" else 2
            text = _git("diff", "-M", span, "--", *({old_path, new_path}), cwd=project.repo).stdout.decode()
            lines = text.splitlines(keepends=True)
            start = next((n for n, line in enumerate(lines) if line.startswith(("@@", "Binary files"))), len(lines))
            out.append({"old_path": old_path, "new_path": new_path, "a_mode": old_mode, "b_mode": new_mode,
                        "new_file": status[0] == "A", "renamed_file": status[0] == "R",
                        "deleted_file": status[0] == "D", "diff": "".join(lines[start:]),
                        "generated_file": False, "collapsed": False, "too_large": False})
        return out

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        req.send_response(status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                req.send_header(name, value)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if body and req.command != "HEAD":
            req.wfile.write(body)


def _json(status: int, value: Any) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps(value).encode(), {"Content-Type": "application/json"}


def status_json(exc: ApiError) -> tuple[int, bytes, dict[str, str]]:
    return exc.status, json.dumps({"message": exc.message}).encode(), {"Content-Type": "application/json",
                                                                        **exc.headers}
