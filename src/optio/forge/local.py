"""The local forge: pull requests in Optio's database, branches on the repo's own git remote.

CI is the repo's CI command run in a clean checkout of the PR head (never an agent's worktree); reviews
come from people (API/CLI) or review agents; merging is a squash onto the base branch pushed to the
remote. Every change of forge state enqueues a reconcile of the owning task in the same transaction, so
"CI green → merged" never waits for a poll.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from optio.control.ports import SecretsProvider
from optio.errors import Conflict, NotFound
from optio.forge.base import CiInfo, ForgeEvent, PullRequestInfo, PullRequestState, ReviewInfo
from optio.forge.git import CiResult, GitError, MergeConflictError
from optio.forge.merge_gates import require_merge_gates
from optio.forge.worktrees import RepoCaches, RepoWorktrees
from optio.runtime.sandbox import Sandbox
from optio.store import pull_requests as prs
from optio.store import queue
from optio.store.db import Database
from optio.store.models import PullRequest, Repo
from optio.store.session import Session
from optio.store.types import utcnow

log = structlog.get_logger("optio.forge.local")

CI_OUTPUT_MAX = 1024 * 1024


def merge_trailers(task_id: int | None, number: int, head_sha: str) -> dict[str, str]:
    """The trailers a squash commit carries: which task and PR it lands, and exactly which head."""
    trailers = {"Optio-Task": str(task_id)} if task_id is not None else {}
    return {**trailers, "Optio-PR": str(number), "Optio-Head": head_sha}


def _info(pr: PullRequest) -> PullRequestInfo:
    return PullRequestInfo(
        number=pr.number, state=pr.state, title=pr.title, head_branch=pr.head_branch, head_sha=pr.head_sha,
        base_branch=pr.base_branch, mergeable=pr.mergeable, conflicting_files=tuple(pr.conflicting_files or ()),
        merged_sha=pr.merged_sha, id=pr.id, base_sha=pr.base_sha,
    )


def _enqueue_task(session: Session, pr: PullRequest, reason: str) -> None:
    if pr.task_id is not None:
        queue.enqueue(session, "repo_task", pr.task_id, pr.workspace_id, reason=reason)


class LocalForge:
    name = "local"
    # Set by the server: the sandbox CI commands run in (None = unconfined, OPTIO_SANDBOX=off).
    sandbox: Sandbox | None = None

    def __init__(self, db: Database, data_dir: Path, *, ci_workers: int = 2,
                 redact: Callable[[str, int, int | None], str] | None = None,
                 secrets: SecretsProvider | None = None, outbound_allowlist: Sequence[str] = ()) -> None:
        self.db = db
        self.data_dir = data_dir
        # (text, workspace id, repo id) -> text masked with that workspace's and repo's secrets
        self.redact: Callable[[str, int, int | None], str] = redact or (lambda text, _ws, _repo: text)
        self.secrets = secrets
        self.outbound_allowlist = list(outbound_allowlist)
        # The repo caches: this forge's own (CI, merges) and the server's `Worktrees` port for task clones.
        self.worktrees = RepoCaches(data_dir, credential=self.credential, outbound_allowlist=outbound_allowlist)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=ci_workers, thread_name_prefix="optio-ci")
        self._bg = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optio-forge")
        self._ci_inflight: set[tuple[int, str]] = set()

    # --- git plumbing ---------------------------------------------------------------------------------

    def cache(self, repo: Repo) -> RepoWorktrees:
        return self.worktrees.for_repo(repo)

    def credential(self, repo_id: int) -> str | None:
        """The repo's own git credential, read at each remote operation so a changed secret applies at once."""
        with self.db.read() as session:
            repo = self._repo(session, repo_id)
            name, workspace_id = repo.credential_secret, repo.workspace_id
        if not name:
            return None
        value = None if self.secrets is None else self.secrets.env_for(workspace_id, [name], repo_id=repo_id).get(name)
        if value is None:
            raise GitError([], None, "", message=f"the repo's credential secret {name!r} does not exist")
        return str(value)

    def _repo(self, session: Session, repo_id: int) -> Repo:
        repo = prs.get_repo(session, repo_id)
        if repo is None:
            raise NotFound(f"repo {repo_id} not found")
        return repo

    def _pr(self, session: Session, repo_id: int, number: int) -> PullRequest:
        pr = prs.by_number(session, repo_id, number)
        if pr is None:
            raise NotFound(f"pull request #{number} not found")
        return pr

    # --- the Forge interface -------------------------------------------------------------------------

    def open_or_update_pr(self, repo_id: int, task_id: int, *, head_branch: str, head_sha: str, title: str,
                          body: str) -> PullRequestInfo:
        """Create the task's PR or move it to the new head; a new head gets a pending CI run."""
        with self.db.write() as session:
            repo = self._repo(session, repo_id)
            pr = prs.open_for_task(session, task_id)
            if pr is None:
                pr = prs.create(session, repo, task_id, title=title, body=body, head_branch=head_branch,
                                head_sha=head_sha)
            elif pr.head_sha != head_sha:
                pr.head_sha = head_sha
                pr.mergeable = None
                pr.conflicting_files = []
            if repo.ci_command:
                prs.add_pending_ci(session, pr, head_sha)
            prs.point_task_at(session, task_id, pr.id)
            info = _info(pr)
            pr_id = pr.id
        self.schedule_ci(pr_id, head_sha)
        self.schedule_mergeability(pr_id)
        return info

    def get_pr(self, repo_id: int, number: int) -> PullRequestInfo:
        with self.db.read() as session:
            return _info(self._pr(session, repo_id, number))

    def pr_for_task(self, repo_id: int, task_id: int) -> PullRequestState | None:
        with self.db.read() as session:
            row = prs.of_task(session, repo_id, task_id)
            if row is None:
                return None
            pr, ci_command = row
            ci_info = None
            if ci_command:
                ci = prs.ci_run(session, pr.id, pr.head_sha)
                ci_info = None if ci is None else CiInfo(head_sha=ci.head_sha, status=ci.status, output=ci.output)
            rev = prs.latest_review(session, pr.id)
            review = None if rev is None else ReviewInfo(rev.id, rev.head_sha, rev.verdict, rev.comments, rev.author)
            return PullRequestState(info=_info(pr), ci_required=bool(ci_command), ci=ci_info, review=review)

    def parse_event(self, headers: Mapping[str, str], body: bytes) -> ForgeEvent | None:
        """The local forge sends no webhooks: its changes enqueue their task in the same transaction."""
        return None

    def ci_for_head(self, repo_id: int, number: int) -> CiInfo | None:
        with self.db.read() as session:
            pr = self._pr(session, repo_id, number)
            ci = prs.ci_run(session, pr.id, pr.head_sha)
            return None if ci is None else CiInfo(head_sha=ci.head_sha, status=ci.status, output=ci.output)

    def latest_review(self, repo_id: int, number: int) -> ReviewInfo | None:
        with self.db.read() as session:
            pr = self._pr(session, repo_id, number)
            rev = prs.latest_review(session, pr.id)
            return None if rev is None else ReviewInfo(rev.id, rev.head_sha, rev.verdict, rev.comments, rev.author)

    def submit_review(self, repo_id: int, number: int, *, verdict: str, comments: str, author: str) -> ReviewInfo:
        if verdict not in ("approve", "request_changes"):
            raise Conflict(f"unknown verdict {verdict!r}", field="verdict")
        with self.db.write() as session:
            pr = self._pr(session, repo_id, number)
            if pr.state != "open":
                raise Conflict(f"pull request #{number} is {pr.state}", field="state")
            rev = prs.add_review_row(session, workspace_id=pr.workspace_id, pr_id=pr.id, head_sha=pr.head_sha,
                                     verdict=verdict, comments=self.redact(comments, pr.workspace_id, pr.repo_id),
                                     author=author)
            _enqueue_task(session, pr, f"review {verdict}")
            return ReviewInfo(rev.id, rev.head_sha, rev.verdict, rev.comments, rev.author)

    def merge(self, repo_id: int, number: int, *, head_sha: str, message: str, force: bool = False) -> str:
        """Squash-merge `head_sha`; a conflict marks the PR unmergeable (and enqueues its task) then raises.

        The merge gates (green CI and the approval rule on this head) are checked first; `force` skips
        them and is only ever passed for an admin's audited override.
        """
        with self.db.read() as session:
            repo = self._repo(session, repo_id)
            pr = self._pr(session, repo_id, number)
            if pr.state == "merged":
                return pr.merged_sha or ""
            if pr.state != "open":
                raise Conflict(f"pull request #{number} is {pr.state}", field="state")
            if pr.head_sha != head_sha:
                raise Conflict(f"pull request #{number} moved to {pr.head_sha[:10]}; not merging {head_sha[:10]}")
            if not force:
                require_merge_gates(session, repo, pr)
            cache = self.cache(repo)
            base_branch = pr.base_branch
            trailers = merge_trailers(pr.task_id, number, head_sha)
        try:
            # The trailers make the merge idempotent: after a crash between the push and the write below,
            # the retry finds this PR's own commit on the base instead of recording whatever is on top.
            merged_sha = cache.squash_merge(base_branch, head_sha, message, work_root=self.data_dir / "merges",
                                            trailers=trailers)
        except MergeConflictError as exc:
            with self.db.write() as session:
                pr = self._pr(session, repo_id, number)
                pr.mergeable = False
                pr.conflicting_files = list(exc.conflicting_files)
                _enqueue_task(session, pr, "merge conflict")
            raise Conflict(f"pull request #{number} conflicts with {base_branch}: "
                           f"{', '.join(exc.conflicting_files)}") from None
        with self.db.write() as session:
            pr = self._pr(session, repo_id, number)
            pr.state = "merged"
            pr.merged_sha = merged_sha
            pr.merged_at = utcnow()
            _enqueue_task(session, pr, "pull request merged")
            head_branch = pr.head_branch
        self._bg.submit(self._after_merge, repo_id, head_branch)
        return merged_sha

    def close(self, repo_id: int, number: int) -> None:
        with self.db.write() as session:
            pr = self._pr(session, repo_id, number)
            if pr.state == "open":
                pr.state = "closed"
                pr.closed_at = utcnow()
                _enqueue_task(session, pr, "pull request closed")

    def rerun_ci(self, repo_id: int, number: int) -> None:
        """CI of the current head becomes pending again and is scheduled; the task waits for the new result."""
        with self.db.write() as session:
            pr = self._pr(session, repo_id, number)
            repo = self._repo(session, repo_id)
            if pr.state != "open":
                raise Conflict(f"pull request #{number} is {pr.state}; CI runs only on open pull requests")
            if not repo.ci_command:
                raise Conflict(f"repo {repo.name} has no CI command (set one with `optio repo set --ci-command`)")
            current = prs.ci_run(session, pr.id, pr.head_sha)
            if current is not None and current.status == "pending":
                raise Conflict(f"CI is already pending on {pr.head_sha[:10]}")
            prs.reset_ci(session, pr, pr.head_sha)
            _enqueue_task(session, pr, "CI re-run requested")
            pr_id, head_sha = pr.id, pr.head_sha
        self.schedule_ci(pr_id, head_sha)

    # --- background work ------------------------------------------------------------------------------

    def _after_merge(self, repo_id: int, head_branch: str) -> None:
        """The base moved: drop the merged branch and recheck every other open PR of the repo for conflicts."""
        try:
            with self.db.read() as session:
                repo = self._repo(session, repo_id)
                open_ids = prs.open_ids(session, repo_id)
            cache = self.cache(repo)
            try:
                cache.delete_remote_branch(head_branch)
            except Exception:
                log.warning("delete_branch_failed", repo=repo_id, branch=head_branch)
            for pr_id in open_ids:
                self.refresh_mergeability(pr_id)
        except Exception:
            log.exception("after_merge_failed", repo=repo_id)

    def schedule_mergeability(self, pr_id: int) -> None:
        self._bg.submit(self._safe_refresh, pr_id)

    def _safe_refresh(self, pr_id: int) -> None:
        try:
            self.refresh_mergeability(pr_id)
        except Exception:
            log.exception("mergeability_failed", pr=pr_id)

    def refresh_mergeability(self, pr_id: int) -> bool | None:
        """Recompute whether the PR head merges cleanly into the current base; enqueue its task on change."""
        with self.db.read() as session:
            pr = prs.get(session, pr_id)
            if pr is None or pr.state != "open":
                return None
            repo = self._repo(session, pr.repo_id)
            head_sha, base_branch = pr.head_sha, pr.base_branch
        cache = self.cache(repo)
        cache.ensure()
        result = cache.mergeability(base_branch, head_sha)
        base_sha = cache.resolve(f"origin/{base_branch}")
        with self.db.write() as session:
            pr = prs.get(session, pr_id)
            if pr is None or pr.state != "open" or pr.head_sha != head_sha:
                return None
            changed = pr.mergeable != result.clean or pr.base_sha != base_sha
            pr.mergeable = result.clean
            pr.conflicting_files = list(result.conflicting_files)
            pr.base_sha = base_sha
            if changed:
                _enqueue_task(session, pr, "mergeability changed")
        return result.clean

    def _ci_env(self) -> dict[str, str]:
        """The whole environment of a CI command: enough to run tools, nothing of the server's.

        No ``HOME``: each CI run gets a fresh one in its scratch dir, so one PR's CI cannot plant
        configuration (a pip index, a git alias) that another repo's CI then uses.
        """
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")}
        env.update({"CI": "true", "OPTIO_CI": "1"})
        return env

    def schedule_ci(self, pr_id: int, head_sha: str) -> None:
        with self._lock:
            if (pr_id, head_sha) in self._ci_inflight:
                return
            self._ci_inflight.add((pr_id, head_sha))
        self._pool.submit(self._run_ci, pr_id, head_sha)

    def _run_ci(self, pr_id: int, head_sha: str) -> None:
        try:
            with self.db.read() as session:
                pr = prs.get(session, pr_id)
                ci = prs.ci_run(session, pr_id, head_sha)
                if pr is None or ci is None or ci.status != "pending":
                    return
                repo = self._repo(session, pr.repo_id)
                command = repo.ci_command
            if not command:
                return
            cache = self.cache(repo)
            cache.ensure()
            cache.fetch()
            try:
                result = cache.run_ci(head_sha, command, work_root=self.data_dir / "ci", env=self._ci_env(),
                                      inherit_env=False, sandbox=self.sandbox)
            except Exception as exc:  # CI infrastructure failure is a failing CI with the reason as output
                result = CiResult(status="failing", exit_code=None, output=f"optio: CI could not run: {exc}",
                                  duration_s=0.0)
            with self.db.write() as session:
                ci = prs.ci_run(session, pr_id, head_sha)
                pr = prs.get(session, pr_id)
                if ci is None or pr is None:
                    return
                ci.status = result.status
                ci.exit_code = result.exit_code
                ci.output = self.redact(result.output[-CI_OUTPUT_MAX:], pr.workspace_id, pr.repo_id)
                ci.duration_s = result.duration_s
                ci.finished_at = utcnow()
                _enqueue_task(session, pr, f"CI {result.status}")
            log.info("ci_finished", pr=pr_id, head=head_sha[:10], status=result.status)
        except Exception:
            log.exception("ci_failed_to_run", pr=pr_id, head=head_sha[:10])
        finally:
            with self._lock:
                self._ci_inflight.discard((pr_id, head_sha))

    def sweep_scratch(self) -> int:
        """Remove CI and merge checkouts a killed server left behind (none can be in use at start-up)."""
        removed = 0
        scratch_roots = [self.data_dir / "ci", self.data_dir / "merges"]
        with self.db.read() as session:
            repos = prs.all_repos(session)
        for repo in repos:
            cache = self.cache(repo)
            if not cache.cache_dir.exists():
                continue
            try:
                for path in cache.list_worktrees():
                    if any(path.is_relative_to(root) for root in scratch_roots):
                        cache.remove_worktree(path)
                        removed += 1
            except Exception:
                log.exception("scratch_sweep_failed", repo=repo.id)
        for root in scratch_roots:
            if root.exists():
                for leftover in root.iterdir():
                    shutil.rmtree(leftover, ignore_errors=True)
        return removed

    def recover(self) -> None:
        """After a restart: sweep scratch checkouts, rerun CI left pending, recompute unknown mergeability."""
        self.sweep_scratch()
        with self.db.read() as session:
            pending = prs.pending_ci_of_open_prs(session)
            unknown = prs.open_ids_unknown_mergeability(session)
        for pr_id, head_sha in pending:
            self.schedule_ci(pr_id, head_sha)
        for pr_id in unknown:
            self.schedule_mergeability(pr_id)

    def poll_open_prs(self) -> int:
        """The PR watcher's safety net: refresh every open PR (catches bases moved outside Optio)."""
        with self.db.read() as session:
            ids = prs.open_ids(session)
        for pr_id in ids:
            self._safe_refresh(pr_id)
        return len(ids)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._bg.shutdown(wait=False, cancel_futures=True)
