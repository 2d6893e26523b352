"""The GitHub forge: a repo's pull requests, CI, reviews and merges on github.com or GitHub Enterprise Server.

Nothing of GitHub's state is copied into Optio's database: a task's PR is found by its head branch
(``optio/<task-id>``) and read through conditional requests, so GitHub stays the one truth and a restart
loses nothing. CI is GitHub's own (check runs and commit statuses on the head; the branch protection's
required checks when the token may read them, else all); reviews are GitHub reviews, a request for changes
read with its line comments as ``path:line: text``; merging squashes through the API when the repo allows
it and reports a refusal (a protected branch's rule) as `MergeRefused`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import structlog

from optio.control.ports import SecretsProvider
from optio.errors import Conflict, NotFound
from optio.forge.base import (
    DIFF_FILES_MAX,
    BadSignature,
    CiInfo,
    DiffFile,
    DiffSummary,
    ForgeBusy,
    ForgeEvent,
    LineComment,
    MergeRefused,
    PullRequestInfo,
    PullRequestState,
    ReviewInfo,
)
from optio.forge.github.client import AppTokens, GitHubClient, GitHubError
from optio.forge.github.events import parse_delivery
from optio.forge.hosted import HostedBase, HostedRepo, default_api_url, issue_number, project_path
from optio.security.ssrf import Allowlist
from optio.store import forge_hooks, queue
from optio.store.db import Database

log = structlog.get_logger("optio.forge.github")

KIND = "github"
BRANCH_PREFIX = "optio/"
# A review posted by Optio's review agent carries this marker, so its verdict is told apart from a person's.
REVIEW_AGENT_MARKER = "<!-- optio:review-agent -->"
REVIEW_AGENT_AUTHOR = "review-agent:github"
LOG_TAIL_CHARS = 6000
OUTPUT_MAX = 60_000
FAILED = frozenset({"failure", "cancelled", "timed_out", "action_required", "startup_failure", "stale"})
PASSED = frozenset({"success", "neutral", "skipped"})
# Branch protection that cannot be read (no admin right, or none set) is looked up again after this long.
PROTECTION_RECHECK_S = 600.0
FILES_PER_PAGE = 100  # GitHub's most per page of a PR's files (it lists 3,000 at most in all)
FILE_STATUSES = {"added": "added", "copied": "added", "removed": "deleted", "renamed": "renamed"}


@dataclass(frozen=True)
class _Check:
    name: str
    status: str  # pending | passing | failing
    output: str


class GitHubForge(HostedBase):
    """The `Forge` port on GitHub's REST API (githubkit), one client per repo."""

    name = KIND

    def __init__(self, db: Database, *, secrets: SecretsProvider | None = None,
                 redact: Callable[[str, int, int | None], str] | None = None,
                 outbound_allowlist: Sequence[str] = (), public_url: str | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(db, secrets=secrets, redact=redact, **({"clock": clock} if clock else {}))
        self.public_url = public_url
        self.allowlist = Allowlist.parse(outbound_allowlist)
        self.app_tokens = AppTokens(allowlist=self.allowlist)
        self._clients: dict[int, GitHubClient] = {}
        self._protection_misses: dict[int, float] = {}
        self._polled: dict[int, object] = {}
        self._lock = threading.Lock()

    # --- credentials and clients ------------------------------------------------------------------------

    def token_for(self, repo: HostedRepo) -> str:
        """The token for git and the API: the App's installation token, else the repo's token secret."""
        opts = repo.options
        if opts.get("app_id"):
            key = self.secret(repo, str(opts.get("private_key_secret") or ""))
            if key is None:
                raise GitHubError(f"the GitHub App's private key secret {opts.get('private_key_secret')!r} "
                                  "does not exist")
            return self.app_tokens.token(repo.api_url, int(opts["app_id"]), int(opts["installation_id"]), key)
        token = self.secret(repo, repo.token_secret)
        if token is None:
            raise GitHubError(f"the repo's token secret {repo.token_secret!r} does not exist")
        return token

    def git_credential(self, repo_id: int) -> str | None:
        """What git presents for the repo's remote (the Worktrees port asks at each fetch and push)."""
        return self.token_for(self.hosted_repo(repo_id))

    def client(self, repo: HostedRepo) -> GitHubClient:
        with self._lock:
            found = self._clients.get(repo.id)
            if found is None or found.api_url != repo.api_url:
                repo_id = repo.id
                found = GitHubClient(repo.api_url, token=lambda: self.token_for(self.hosted_repo(repo_id)),
                                     allowlist=self.allowlist,
                                     on_busy=lambda busy: self.mark_busy(repo_id, busy))
                self._clients[repo.id] = found
            return found

    def _open(self, repo_id: int) -> tuple[HostedRepo, GitHubClient, str, str]:
        self.check_busy(repo_id)
        repo = self.hosted_repo(repo_id)
        owner, _, name = repo.path.partition("/")
        return repo, self.client(repo), owner, name

    # --- reading a PR ------------------------------------------------------------------------------------

    def _find_pr(self, repo_id: int, task_id: int) -> dict[str, Any] | None:
        """The task's PR (its open one, else its latest), found by its head branch."""
        _repo, client, owner, name = self._open(repo_id)
        branch = f"{BRANCH_PREFIX}{task_id}"
        found: list[dict[str, Any]] = client.cached(
            ("pulls", owner, name, branch), "listing pull requests",
            lambda gh, h: gh.rest.pulls.list(owner, name, state="all", head=f"{owner}:{branch}", headers=h),
            lambda r: list(r.json()))
        if not found:
            return None
        found = sorted(found, key=lambda p: (p["state"] == "open", p["number"]))
        return self._pull(client, owner, name, found[-1]["number"])

    @staticmethod
    def _pull(client: GitHubClient, owner: str, name: str, number: int) -> dict[str, Any]:
        pull: dict[str, Any] = client.cached(
            ("pull", owner, name, number), f"reading pull request #{number}",
            lambda gh, h: gh.rest.pulls.get(owner, name, number, headers=h),
            lambda r: dict(r.json()))
        return pull

    @staticmethod
    def _info(pull: dict[str, Any]) -> PullRequestInfo:
        state = "merged" if pull.get("merged_at") or pull.get("merged") else pull["state"]
        mergeable = pull.get("mergeable")
        if pull.get("mergeable_state") == "dirty":
            mergeable = False
        return PullRequestInfo(
            number=pull["number"], state=state, title=pull["title"], head_branch=pull["head"]["ref"],
            head_sha=pull["head"]["sha"], base_branch=pull["base"]["ref"], mergeable=mergeable,
            conflicting_files=(), merged_sha=pull.get("merge_commit_sha") if state == "merged" else None,
            id=None, base_sha=pull["base"].get("sha"))

    def get_pr(self, repo_id: int, number: int) -> PullRequestInfo:
        _repo, client, owner, name = self._open(repo_id)
        try:
            return self._info(self._pull(client, owner, name, number))
        except GitHubError as exc:
            if exc.status_code == 404:
                raise NotFound(f"pull request #{number} not found") from None
            raise

    def pr_for_task(self, repo_id: int, task_id: int) -> PullRequestState | None:
        pull = self._find_pr(repo_id, task_id)
        if pull is None:
            return None
        info = self._info(pull)
        repo, client, owner, name = self._open(repo_id)
        ci_required = bool(repo.options.get("ci_required", True))
        ci = self._ci(repo, client, owner, name, info) if ci_required and info.state == "open" else None
        review = self._latest_review(repo, client, owner, name, info.number)
        return PullRequestState(info=info, ci_required=ci_required, ci=ci, review=review)

    def diff_summary(self, repo_id: int, number: int) -> DiffSummary:
        """The PR's files (``GET .../pulls/{n}/files``, a page of 100 at a time, each page a conditional GET),
        up to ``DIFF_FILES_MAX``. A file GitHub shows no patch and no line changes for is binary, unless it is
        a pure rename."""
        _repo, client, owner, name = self._open(repo_id)
        files: list[DiffFile] = []
        pages = DIFF_FILES_MAX // FILES_PER_PAGE
        batch: list[dict[str, Any]] = []
        for page in range(1, pages + 1):
            def request(gh: Any, h: Mapping[str, str], page: int = page) -> Any:
                return gh.rest.pulls.list_files(owner, name, number, per_page=FILES_PER_PAGE, page=page, headers=h)
            try:
                batch = client.cached(("files", owner, name, number, page), f"listing the files of #{number}",
                                      request, lambda r: list(r.json()))
            except GitHubError as exc:
                if exc.status_code == 404:
                    raise NotFound(f"pull request #{number} not found") from None
                raise
            files += [self._diff_file(f) for f in batch]
            if len(batch) < FILES_PER_PAGE:
                break
        return DiffSummary(files=tuple(files), truncated=len(batch) == FILES_PER_PAGE and len(files) >= pages *
                           FILES_PER_PAGE)

    @staticmethod
    def _diff_file(f: Mapping[str, Any]) -> DiffFile:
        status = FILE_STATUSES.get(str(f.get("status")), "modified")
        binary = "patch" not in f and not f.get("changes") and status != "renamed"
        return DiffFile(path=f["filename"], status=status, additions=int(f.get("additions") or 0),
                        deletions=int(f.get("deletions") or 0), binary=binary,
                        old_path=f.get("previous_filename") if status == "renamed" else None)

    # --- CI ----------------------------------------------------------------------------------------------

    def _required_checks(self, repo: HostedRepo, client: GitHubClient, owner: str, name: str,
                         base: str) -> set[str] | None:
        """The base branch protection's required check names; None when not readable (then every check counts)."""
        missed = self._protection_misses.get(repo.id)
        if missed is not None and self.clock() - missed < PROTECTION_RECHECK_S:
            return None
        try:
            contexts: set[str] = client.cached(
                ("protection", owner, name, base), "reading branch protection",
                lambda gh, h: gh.rest.repos.get_status_checks_protection(owner, name, base, headers=h),
                lambda r: {c for c in (r.json().get("contexts") or [])}
                | {c.get("context") for c in (r.json().get("checks") or []) if c.get("context")})
        except GitHubError as exc:
            if exc.status_code in (403, 404):
                self._protection_misses[repo.id] = self.clock()
                return None
            raise
        return contexts or None

    def _checks(self, repo: HostedRepo, client: GitHubClient, owner: str, name: str, sha: str) -> list[_Check]:
        runs: list[dict[str, Any]] = client.cached(
            ("check-runs", owner, name, sha), "reading check runs",
            lambda gh, h: gh.rest.checks.list_for_ref(owner, name, sha, filter_="latest", per_page=100, headers=h),
            lambda r: list(r.json()["check_runs"]))
        statuses: list[dict[str, Any]] = client.cached(
            ("status", owner, name, sha), "reading commit statuses",
            lambda gh, h: gh.rest.repos.get_combined_status_for_ref(owner, name, sha, per_page=100, headers=h),
            lambda r: list(r.json()["statuses"]))
        checks: list[_Check] = []
        for run in runs:
            if run["status"] != "completed":
                checks.append(_Check(run["name"], "pending", ""))
            elif run.get("conclusion") in PASSED:
                checks.append(_Check(run["name"], "passing", ""))
            else:
                checks.append(_Check(run["name"], "failing", self._run_output(repo, client, owner, name, run)))
        for status in statuses:
            state = {"success": "passing", "pending": "pending"}.get(status["state"], "failing")
            text = f"## {status['context']}: {status['state']}\n{status.get('description') or ''}\n" \
                   f"{status.get('target_url') or ''}".rstrip() if state == "failing" else ""
            checks.append(_Check(status["context"], state, text))
        return checks

    def _run_output(self, repo: HostedRepo, client: GitHubClient, owner: str, name: str,
                    run: dict[str, Any]) -> str:
        """A failed check run as an agent reads it: its name, output, annotations and the job log's tail."""
        out = run.get("output") or {}
        parts = [f"## {run['name']}: {run.get('conclusion')}"]
        parts += [str(out[k]) for k in ("title", "summary", "text") if out.get(k)]
        if out.get("annotations_count"):
            notes: list[dict[str, Any]] = client.cached(
                ("annotations", owner, name, run["id"]), "reading check annotations",
                lambda gh, h: gh.rest.checks.list_annotations(owner, name, run["id"], headers=h),
                lambda r: list(r.json()))
            parts += [f"{a['path']}:{a['start_line']}: {a.get('annotation_level')}: {a['message']}" for a in notes]
        if (run.get("app") or {}).get("slug") == "github-actions":
            try:
                text = client.cached(
                    ("job-log", owner, name, run["id"]), "reading the job log",
                    lambda gh, h: gh.rest.actions.download_job_logs_for_workflow_run(owner, name, run["id"],
                                                                                     headers=h),
                    lambda r: r.text)
                parts.append("--- job log (tail) ---\n" + text[-LOG_TAIL_CHARS:])
            except GitHubError as exc:
                parts.append(f"(the job log is not readable: {exc.status_code})")
        return self.redact("\n".join(parts), repo.workspace_id, repo.id)

    def _ci(self, repo: HostedRepo, client: GitHubClient, owner: str, name: str,
            info: PullRequestInfo) -> CiInfo | None:
        checks = self._checks(repo, client, owner, name, info.head_sha)
        required = self._required_checks(repo, client, owner, name, info.base_branch)
        if required is not None:
            counted = [c for c in checks if c.name in required]
            missing = required - {c.name for c in checks}
            counted += [_Check(m, "pending", "") for m in sorted(missing)]
        else:
            counted = checks
        if not counted:
            return None
        failing = [c for c in counted if c.status == "failing"]
        if failing:
            return CiInfo(head_sha=info.head_sha, status="failing",
                          output="\n\n".join(c.output for c in failing)[-OUTPUT_MAX:], base_sha=None)
        if any(c.status == "pending" for c in counted):
            return CiInfo(head_sha=info.head_sha, status="pending", output="")
        return CiInfo(head_sha=info.head_sha, status="passing", output="")

    def ci_for_head(self, repo_id: int, number: int) -> CiInfo | None:
        repo, client, owner, name = self._open(repo_id)
        return self._ci(repo, client, owner, name, self._info(self._pull(client, owner, name, number)))

    # --- reviews -----------------------------------------------------------------------------------------

    def _latest_review(self, repo: HostedRepo, client: GitHubClient, owner: str, name: str,
                       number: int) -> ReviewInfo | None:
        reviews: list[dict[str, Any]] = client.cached(
            ("reviews", owner, name, number), "reading reviews",
            lambda gh, h: gh.rest.pulls.list_reviews(owner, name, number, per_page=100, headers=h),
            lambda r: list(r.json()))
        decided = [r for r in reviews if r["state"] in ("APPROVED", "CHANGES_REQUESTED")]
        if not decided:
            return None
        latest = decided[-1]
        body = latest.get("body") or ""
        verdict = "approve" if latest["state"] == "APPROVED" else "request_changes"
        login = (latest.get("user") or {}).get("login", "?")
        author = REVIEW_AGENT_AUTHOR if REVIEW_AGENT_MARKER in body else f"github:{login}"
        text = body.replace(REVIEW_AGENT_MARKER, "").strip()
        if verdict == "request_changes":
            comments: list[dict[str, Any]] = client.cached(
                ("review-comments", owner, name, number, latest["id"]), "reading review comments",
                lambda gh, h: gh.rest.pulls.list_comments_for_review(owner, name, number, latest["id"],
                                                                     per_page=100, headers=h),
                lambda r: list(r.json()))
            lines = [LineComment(c["path"], int(c.get("line") or c.get("original_line") or 0), c["body"]).as_text()
                     for c in comments]
            text = "\n".join([text, *lines]).strip()
        return ReviewInfo(id=latest["id"], head_sha=latest.get("commit_id") or "", verdict=verdict,
                          comments=self.redact(text, repo.workspace_id, repo.id), author=author)

    def latest_review(self, repo_id: int, number: int) -> ReviewInfo | None:
        repo, client, owner, name = self._open(repo_id)
        return self._latest_review(repo, client, owner, name, number)

    def submit_review(self, repo_id: int, number: int, *, verdict: str, comments: str, author: str,
                      line_comments: tuple[LineComment, ...] = ()) -> ReviewInfo:
        if verdict not in ("approve", "request_changes"):
            raise Conflict(f"unknown verdict {verdict!r}", field="verdict")
        _repo, client, owner, name = self._open(repo_id)
        pull = self._pull(client, owner, name, number)
        if pull["state"] != "open":
            raise Conflict(f"pull request #{number} is {pull['state']}", field="state")
        body = comments or ("Approved." if verdict == "approve" else "Changes requested.")
        if author.startswith("review-agent"):
            body = f"{body}\n\n{REVIEW_AGENT_MARKER}"
        event: Literal["APPROVE", "REQUEST_CHANGES"] = "APPROVE" if verdict == "approve" else "REQUEST_CHANGES"
        lines: list[Any] = [{"path": c.path, "line": c.line, "side": "RIGHT", "body": c.body} for c in line_comments]
        from githubkit.utils import UNSET  # githubkit loads with the first request (see client.py)

        created = client.call(
            f"reviewing #{number}",
            lambda gh: gh.rest.pulls.create_review(owner, name, number, commit_id=pull["head"]["sha"], body=body,
                                                   event=event, comments=lines or UNSET)).parsed_data
        return ReviewInfo(id=created.id, head_sha=created.commit_id or pull["head"]["sha"], verdict=verdict,
                          comments=comments, author=author)

    # --- writing -----------------------------------------------------------------------------------------

    def open_or_update_pr(self, repo_id: int, task_id: int, *, head_branch: str, head_sha: str, title: str,
                          body: str) -> PullRequestInfo:
        """The task's open PR (GitHub moves it to the pushed head by itself), or a new one."""
        repo, client, owner, name = self._open(repo_id)
        existing = self._find_pr(repo_id, task_id)
        if existing is not None and existing["state"] == "open":
            info = self._info(existing)
            # GitHub moves an open PR to its branch's new head by itself; it may not have caught up yet.
            return info if info.head_sha == head_sha else replace(info, head_sha=head_sha, mergeable=None)
        full_body = self._body(body, task_id)
        draft = bool(repo.options.get("draft"))
        created = client.call(
            f"opening a pull request for {head_branch}",
            lambda gh: gh.rest.pulls.create(owner, name, title=title, head=head_branch, base=repo.default_branch,
                                            body=full_body, draft=draft)).parsed_data
        return self._info(created.model_dump(mode="json"))

    def _body(self, body: str, task_id: int) -> str:
        """The PR body: what was asked, the task's link, and ``Closes #N`` when the task came from an issue."""
        with self.db.read() as session:
            ticket = forge_hooks.ticket_ref_of(session, task_id)
        lines = [body]
        if self.public_url:
            lines.append(f"Task: {self.public_url.rstrip('/')}/api/repo-tasks/{task_id}")
        number = issue_number(ticket)
        if number is not None:
            lines.append(f"Closes #{number}")
        return "\n\n".join(lines)

    def merge(self, repo_id: int, number: int, *, head_sha: str, message: str, force: bool = False) -> str:
        """Squash (or the repo's allowed method) through the API; a refusal a person must fix is MergeRefused."""
        _repo, client, owner, name = self._open(repo_id)
        pull = self._pull(client, owner, name, number)
        if pull.get("merged_at") or pull.get("merged"):
            return str(pull.get("merge_commit_sha") or "")
        if pull["state"] != "open":
            raise Conflict(f"pull request #{number} is {pull['state']}", field="state")
        settings = client.cached(("repo", owner, name), "reading the repository",
                                 lambda gh, h: gh.rest.repos.get(owner, name, headers=h),
                                 lambda r: dict(r.json()))
        methods: list[tuple[Literal["squash", "rebase", "merge"], Any]] = [
            ("squash", settings.get("allow_squash_merge", True)), ("rebase", settings.get("allow_rebase_merge")),
            ("merge", settings.get("allow_merge_commit"))]
        method = next((m for m, allowed in methods if allowed), None)
        if method is None:
            raise MergeRefused("the repository allows no merge method to the API")
        if pull.get("draft"):
            # Opened as a draft while the agent worked (forge_options.draft): ready now that Optio merges it.
            self._mark_ready(client, str(pull["node_id"]), number)
        title, _, rest = message.partition("\n")
        try:
            merged = client.call(
                f"merging #{number}",
                lambda gh: gh.rest.pulls.merge(owner, name, number, sha=head_sha, merge_method=method,
                                               commit_title=title, commit_message=rest.strip())).parsed_data
        except GitHubError as exc:
            if exc.status_code == 409:
                raise Conflict(f"pull request #{number} moved on from {head_sha[:10]}: {exc.detail}") from None
            if exc.status_code in (403, 405, 422):
                raise MergeRefused(exc.detail or f"GitHub refused the merge ({exc.status_code})") from None
            raise
        if not settings.get("delete_branch_on_merge"):
            self._delete_branch(client, owner, name, pull["head"]["ref"])
        return str(merged.sha)

    @staticmethod
    def _mark_ready(client: GitHubClient, node_id: str, number: int) -> None:
        """GitHub's REST API cannot take a PR out of draft; its GraphQL API can."""
        mutation = ("mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) "
                    "{ pullRequest { isDraft } } }")
        client.graphql(f"marking #{number} ready for review", mutation, {"id": node_id})

    @staticmethod
    def _delete_branch(client: GitHubClient, owner: str, name: str, branch: str) -> None:
        try:
            client.call(f"deleting {branch}", lambda gh: gh.rest.git.delete_ref(owner, name, f"heads/{branch}"))
        except (GitHubError, ForgeBusy) as exc:
            log.warning("delete_branch_failed", branch=branch, error=str(exc))

    def close(self, repo_id: int, number: int) -> None:
        _repo, client, owner, name = self._open(repo_id)
        client.call(f"closing #{number}", lambda gh: gh.rest.pulls.update(owner, name, number, state="closed"))

    def rerun_ci(self, repo_id: int, number: int) -> None:
        """Ask GitHub to run the head's check suites again."""
        _repo, client, owner, name = self._open(repo_id)
        pull = self._pull(client, owner, name, number)
        suites = client.call("listing check suites",
                             lambda gh: gh.rest.checks.list_suites_for_ref(owner, name, pull["head"]["sha"])
                             ).parsed_data.check_suites
        if not suites:
            raise Conflict(f"no check suite ran on {pull['head']['sha'][:10]} to run again")
        for suite_id in [suite.id for suite in suites]:
            def rerequest(gh: Any, suite_id: int = suite_id) -> Any:
                return gh.rest.checks.rerequest_suite(owner, name, suite_id)

            client.call("re-running checks", rerequest)

    # --- events and polling ------------------------------------------------------------------------------

    def parse_event(self, repo_id: int, headers: Mapping[str, str], body: bytes) -> list[ForgeEvent]:
        repo = self.hosted_repo(repo_id)
        secret = self.secret(repo, repo.webhook_secret)
        lowered = {k.lower(): v for k, v in headers.items()}
        signature = lowered.get("x-hub-signature-256", "")
        from githubkit.webhooks import verify

        if not secret or not signature or not verify(secret, body, signature):
            raise BadSignature("X-Hub-Signature-256 does not verify")
        return parse_delivery(repo_id, lowered.get("x-github-event", ""), body, default_branch=repo.default_branch)

    def poll_open_prs(self) -> int:
        """The safety net behind webhooks: look at every task's PR with conditional requests (an unchanged PR
        costs only 304s, no rate limit) and wake the task when what it would see changed."""
        with self.db.read() as session:
            tasks = forge_hooks.open_tasks_by_forge(session, KIND, ("pr_opened",))
        looked = 0
        for repo_id, task_id, workspace_id in tasks:
            try:
                state = self.pr_for_task(repo_id, task_id)
            except ForgeBusy:
                continue
            except Exception:
                log.exception("github_poll_failed", repo=repo_id, task=task_id)
                continue
            looked += 1
            before = self._polled.get(task_id)
            self._polled[task_id] = state
            if before is not None and before != state:
                with self.db.write() as session:
                    queue.enqueue(session, "repo_task", task_id, workspace_id, reason="github poll: PR changed")
        return looked

    def recover(self) -> None:
        return None

    def shutdown(self) -> None:
        return None

    # --- registering a repo ------------------------------------------------------------------------------

    def check_access(self, *, api_url: str, remote_url: str, token: str | None, options: Mapping[str, Any],
                     secret: Callable[[str], str | None]) -> list[str]:
        """Can Optio read the repo and push to it? What is missing, in words a person can act on."""
        path = project_path(remote_url)
        owner, _, name = path.partition("/")
        if options.get("app_id"):
            key = secret(str(options.get("private_key_secret") or ""))
            if key is None:
                return [f"the App's private key secret {options.get('private_key_secret')!r} does not exist"]
            try:
                token = self.app_tokens.token(api_url, int(options["app_id"]), int(options["installation_id"]), key)
            except (GitHubError, ForgeBusy) as exc:
                return [str(exc)]
        if not token:
            return ["a token: name the secret holding it (--token-secret NAME)"]
        client = GitHubClient(api_url, token=lambda: str(token), allowlist=self.allowlist)
        try:
            data = client.call(f"reading {path}", lambda gh: gh.rest.repos.get(owner, name)).json()
        except GitHubError as exc:
            if exc.status_code in (401,):
                return ["a valid token: GitHub does not accept the one given (401)"]
            if exc.status_code in (403, 404):
                return [f"read access to {path}: GitHub answers {exc.status_code} to this token (is the name "
                        "right, and is the repo shared with the token or the App?)"]
            return [str(exc)]
        except ForgeBusy as exc:
            return [f"an answer from GitHub: {exc.reason}"]
        missing = []
        perms = data.get("permissions")
        if isinstance(perms, dict) and not perms.get("push"):
            missing.append(f"push access to {path}: the token can read it but not write (it needs Contents and "
                           "Pull requests: write)")
        return missing

    def git_token(self, api_url: str, options: Mapping[str, Any], secret: Callable[[str], str | None]) -> str | None:
        """At registration: the App's installation token for git to read the remote's branches."""
        key = secret(str(options.get("private_key_secret") or ""))
        if not options.get("app_id") or key is None:
            return None
        return self.app_tokens.token(api_url, int(options["app_id"]), int(options["installation_id"]), key)


__all__ = ["GitHubForge", "default_api_url"]
