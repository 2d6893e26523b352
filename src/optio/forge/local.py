"""The local forge: pull requests in Optio's database, branches on the repo's own git remote.

CI is the repo's CI command run in a clean checkout of the PR head merged onto the base tip (a test merge
commit, like a forge's ``refs/pull/N/merge``; never an agent's worktree), and a result holds for that pair
(head, base) only. Reviews come from people (API/CLI) or review agents; merging is a squash onto the base
branch pushed to the remote, allowed only when CI passed on the merge onto the current base tip, so what
lands is exactly a tree CI passed on.

Merges are serialised per (repo, base branch). A PR ready to merge whose CI result is for an older base
joins that base's merge queue. Several waiting PRs are tested together (a batch: their heads merged in order
onto the base tip, one CI run) and land as one commit of exactly the tested tree; a red batch is bisected down
to the PR whose merge fails, which goes back to its agent with the CI output. A queue of one is re-tested
alone and merges with its own squash. Nothing lands on a base that moved since CI tested it: the push is a
compare-and-swap on the tested tip. Every change of forge state enqueues a reconcile of the owning task in
the same transaction, so "CI green → merged" never waits for a poll.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from optio.control.ports import SecretsProvider
from optio.errors import Conflict, NotFound
from optio.forge import diffstat
from optio.forge.base import (
    CiInfo,
    DiffSummary,
    ForgeEvent,
    LineComment,
    PullRequestInfo,
    PullRequestState,
    ReviewInfo,
)
from optio.forge.ci_setup import ClassifiedCi, classify
from optio.forge.git import (
    CI_TERM_GRACE_S,
    BaseMovedError,
    BatchConflictError,
    CiResult,
    CommandInterrupted,
    GitError,
    Mergeability,
    MergeConflictError,
    end_running_commands,
)
from optio.forge.merge_gates import MergeGateRefused, check_merge_gates
from optio.forge.process_lock import ProcessLock, forget_lock, lock_for
from optio.forge.worktrees import RepoCaches, RepoWorktrees
from optio.observability import metrics
from optio.runtime import process_group
from optio.runtime.sandbox import Sandbox
from optio.store import merge_batches as batches
from optio.store import pull_requests as prs
from optio.store import queue, runs
from optio.store.db import Database
from optio.store.models import CiRun, MergeBatch, PullRequest, Repo
from optio.store.repo_tasks import review_policy_for_pr
from optio.store.session import Session
from optio.store.types import utcnow

log = structlog.get_logger("optio.forge.local")

CI_OUTPUT_MAX = 1024 * 1024
# A queue front green on the current base that nobody merges within this time (auto-merge off, a person who
# asked to merge and went away) leaves the queue so it does not hold up the PRs behind it; asking again re-queues it.
QUEUE_FRONT_GRACE_S = 120.0
# A fetch of the repo cache this recent serves the mergeability check scheduled when a PR opens or moves (the
# task's push fetched just before) and the refresh after a merge (the merge's own push moved the cache's
# `origin/<base>`); the PR watcher's refresh fetches afresh, to see pushes made outside Optio.
MERGEABILITY_FETCH_AGE_S = 5.0
# A fetch of the repo cache this recent serves the merge gates and the merge queue. A base someone moved
# outside Optio in that moment is still never merged onto untested: every landing is a push leased on the
# tip the gates saw, refused when the base moved, and the PR then goes back to the queue to be re-tested.
# Optio's own landings move the cache's `origin/<base>` with their push. Without it, each merge attempt and
# each queue step fetched: about two fetches (each a handful of git processes) per PR.
GATE_FETCH_MAX_AGE_S = 2.0
# A PR that joins the merge queue has its task looked at again after this long at the latest. Sooner is for
# nothing: until the queue's run on the new base ends (which wakes the task at once), its task can only wait.
QUEUED_LOOK_S = 60.0
# How many (head, base tip) mergeability results the forge remembers: a few per open PR is plenty.
MERGEABILITY_MEMO = 2048


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


def _members(queue: list[PullRequest], pr_ids: list[int], head_shas: list[str]) -> list[PullRequest]:
    """The batch's PRs still waiting in the queue at the heads the batch was made of, in the batch's order."""
    queued = {pr.id: pr for pr in queue}
    return [queued[pr_id] for pr_id, head in zip(pr_ids, head_shas, strict=False)
            if pr_id in queued and queued[pr_id].head_sha == head]


def _approved(session: Session, pr_id: int, head_sha: str) -> bool:
    """Whether the last review of `head_sha` approves it."""
    on_head = prs.reviews(session, pr_id, head_sha=head_sha)
    return bool(on_head) and on_head[-1].verdict == "approve"


def _ci_info(ci: CiRun) -> CiInfo:
    return CiInfo(head_sha=ci.head_sha, status=ci.status, output=ci.output, failure_kind=ci.failure_kind,
                  duration_s=ci.duration_s, base_sha=ci.base_sha)


def _enqueue_task(session: Session, pr: PullRequest, reason: str, *, event: str | None = None,
                  detail: str = "", delay_s: float = 0.0) -> None:
    """Enqueue the PR's task; `event` also records the fact on the task's timeline, in the same transaction."""
    if pr.task_id is not None:
        queue.enqueue(session, "repo_task", pr.task_id, pr.workspace_id, reason=reason, delay_s=delay_s)
        if event is not None:
            runs.record_event(session, workspace_id=pr.workspace_id, kind="repo_task", run_id=pr.task_id,
                              event=event, from_state=None, to_state=None, reason=detail or reason)


def _current_ci(session: Session, pr: PullRequest) -> CiInfo | None:
    """The CI result that decides the PR now: the run on its head merged onto the base tip last seen.

    A PR waiting in the merge queue without that run reads as pending (it will be re-tested); otherwise,
    before the new base's run exists, the latest run of the head stands (the merge gate still asks for
    the current base, which is what puts a green PR into the queue).
    """
    ci = prs.ci_run_on(session, pr.id, pr.head_sha, pr.base_sha) if pr.base_sha else None
    if ci is None:
        if pr.merge_queued_at is not None:
            return CiInfo(head_sha=pr.head_sha, status="pending", output="", base_sha=pr.base_sha)
        ci = prs.ci_run(session, pr.id, pr.head_sha)
    return None if ci is None else _ci_info(ci)


class MergeQueued(Conflict):
    """The PR is green on an older base: it waits in the merge queue to be re-tested on the current one."""

    code = "merge_queued"


class LocalForge:
    name = "local"
    # Set by the server: the sandbox CI commands run in (None = unconfined, OPTIO_SANDBOX=off).
    sandbox: Sandbox | None = None
    # Set by the server (OPTIO_CI_TIMEOUT_S): a CI run killed by it is a CI setup failure (status "error").
    ci_timeout_s: float = 1800.0
    # Set by the server (OPTIO_MERGE_BATCH_MAX): how many queued PRs one CI run may test together (1: serial).
    merge_batch_max: int = 8

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
        self._stopping = threading.Event()  # set at shutdown: CI commands end, none starts
        self._ci_inflight: set[tuple[int, str, str | None]] = set()
        self._batch_inflight: set[int] = set()
        self._refresh_pending: set[int] = set()  # repos whose open PRs' mergeability refresh is scheduled
        # (repo, head, base tip) -> mergeability, for the most recent pairs (merge-tree is pure in them).
        self._mergeability_seen: OrderedDict[tuple[int, str, str], Mergeability] = OrderedDict()
        # Every CI process carries a tag naming its data dir and its run (see `_ci_tag`).
        self._ci_tags = f"ci-{process_group.tag_for(data_dir.resolve())}-"

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

    def _base_lock(self, repo_id: int, base_branch: str) -> ProcessLock:
        """One merge at a time per (repo, base branch): the merge queue's lock, held across replicas too."""
        digest = hashlib.sha256(base_branch.encode()).hexdigest()[:16]
        return lock_for(self.data_dir / "locks" / f"base-{repo_id}-{digest}.lock")

    def _ci_lock(self, name: str) -> ProcessLock:
        """Taken (without waiting) around a CI run: another replica sharing the data dir runs the same CI once."""
        return lock_for(self.data_dir / "locks" / f"{name}.lock")

    def _ci_tag(self, lock_name: str) -> str:
        """The process tag of the CI run behind lock `lock_name`: one run of it at a time in this data dir, so
        whoever holds the lock knows any other process with the tag was left by a server that died."""
        return self._ci_tags + lock_name

    def _end_orphaned_ci(self, tag: str, *, prefix: bool = False) -> None:
        """End CI processes a killed server left running: they would go on beside the run that replaces them
        (in a checkout being swept), and no timeout applies to them any more."""
        ended = process_group.end_tagged(tag, CI_TERM_GRACE_S, prefix=prefix)
        if ended:
            log.warning("orphaned_ci_ended", tag=tag, pids=ended)

    def _base_tip(self, repo: Repo, base_branch: str) -> str | None:
        """The cache's idea of the base tip (callers fetch first when it must be current)."""
        try:
            cache = self.cache(repo)
            cache.ensure()
            return cache.resolve(f"origin/{base_branch}")
        except Exception:
            log.warning("base_tip_unknown", repo=repo.id, base=base_branch)
            return None

    def _pr(self, session: Session, repo_id: int, number: int) -> PullRequest:
        pr = prs.by_number(session, repo_id, number)
        if pr is None:
            raise NotFound(f"pull request #{number} not found")
        return pr

    # --- the Forge interface -------------------------------------------------------------------------

    def open_or_update_pr(self, repo_id: int, task_id: int, *, head_branch: str, head_sha: str, title: str,
                          body: str) -> PullRequestInfo:
        """Create the task's PR or move it to the new head; a new head gets a pending CI run on the base tip."""
        with self.db.read() as session:
            repo = self._repo(session, repo_id)
            existing = prs.open_for_task(session, task_id)
            base_branch = existing.base_branch if existing is not None else repo.default_branch
        # The task's push fetched just before: the cache's base is the one the agent's work meets now.
        base_sha = self._base_tip(repo, base_branch)
        written = None
        if existing is None:
            # A new PR is in no merge queue or batch yet: it is created without the base's lock, which the
            # merges of the repo's other PRs hold. None: one was opened meanwhile, and is moved below.
            with self.db.write() as session:
                written = self._write_pr(session, repo_id, task_id, head_branch=head_branch, head_sha=head_sha,
                                         title=title, body=body, base_sha=base_sha, create_only=True)
        if written is None:
            # Under the base's lock: a batch being landed sees the PR either before this push or after it.
            with self._base_lock(repo_id, base_branch), self.db.write() as session:
                written = self._write_pr(session, repo_id, task_id, head_branch=head_branch, head_sha=head_sha,
                                         title=title, body=body, base_sha=base_sha, create_only=False)
        assert written is not None
        info, pr_id, ci_command, left_queue = written
        if ci_command:
            self.schedule_ci(pr_id, head_sha, base_sha)
        self.schedule_mergeability(pr_id)
        if left_queue:
            self._bg.submit(self._safe_advance, repo_id, info.base_branch)
        return info

    def _write_pr(self, session: Session, repo_id: int, task_id: int, *, head_branch: str, head_sha: str,
                  title: str, body: str, base_sha: str | None,
                  create_only: bool) -> tuple[PullRequestInfo, int, bool, bool] | None:
        """Create the task's PR or move it to `head_sha` (None if `create_only` and it has one).

        Returns the PR, its id, whether its repo runs CI, and whether the move took it out of the merge queue.
        """
        repo = self._repo(session, repo_id)
        pr = prs.open_for_task(session, task_id)
        left_queue = False
        if pr is None:
            pr = prs.create(session, repo, task_id, title=title, body=body, head_branch=head_branch,
                            head_sha=head_sha)
        elif create_only:
            return None
        elif pr.head_sha != head_sha:
            pr.head_sha = head_sha
            pr.mergeable = None
            pr.conflicting_files = []
            left_queue = pr.merge_queued_at is not None
            pr.merge_queued_at = None  # a new head is tested afresh before it queues again
        if base_sha is not None:
            pr.base_sha = base_sha
        if repo.ci_command:
            prs.add_pending_ci(session, pr, head_sha, base_sha)
        prs.point_task_at(session, task_id, pr.id)
        return _info(pr), pr.id, bool(repo.ci_command), left_queue

    def get_pr(self, repo_id: int, number: int) -> PullRequestInfo:
        with self.db.read() as session:
            return _info(self._pr(session, repo_id, number))

    def pr_for_task(self, repo_id: int, task_id: int) -> PullRequestState | None:
        with self.db.read() as session:
            row = prs.of_task(session, repo_id, task_id)
            if row is None:
                return None
            pr, ci_command = row
            ci_info = _current_ci(session, pr) if ci_command else None
            rev = prs.latest_review(session, pr.id)
            review = None if rev is None else ReviewInfo(rev.id, rev.head_sha, rev.verdict, rev.comments, rev.author)
            return PullRequestState(info=_info(pr), ci_required=bool(ci_command), ci=ci_info, review=review)

    def parse_event(self, repo_id: int, headers: Mapping[str, str], body: bytes) -> list[ForgeEvent]:
        """The local forge sends no webhooks: its changes enqueue their task in the same transaction."""
        return []

    def ci_for_head(self, repo_id: int, number: int) -> CiInfo | None:
        with self.db.read() as session:
            return _current_ci(session, self._pr(session, repo_id, number))

    def latest_review(self, repo_id: int, number: int) -> ReviewInfo | None:
        with self.db.read() as session:
            pr = self._pr(session, repo_id, number)
            rev = prs.latest_review(session, pr.id)
            return None if rev is None else ReviewInfo(rev.id, rev.head_sha, rev.verdict, rev.comments, rev.author)

    def diff_summary(self, repo_id: int, number: int) -> DiffSummary:
        """base...head in the forge's own cache: the base as it is now (the PR's recorded base when the branch
        is gone), so a merged PR still shows what it brought."""
        with self.db.read() as session:
            repo = self._repo(session, repo_id)
            pr = self._pr(session, repo_id, number)
            head_sha, base_branch, base_sha = pr.head_sha, pr.base_branch, pr.base_sha
        cache = self.cache(repo)
        cache.ensure()
        base = self._base_tip(repo, base_branch) or base_sha
        if base is None:
            raise NotFound(f"the base branch {base_branch!r} of pull request #{number} is not in the repo")
        return diffstat.summarize(cache.cache_dir, base, head_sha)

    def submit_review(self, repo_id: int, number: int, *, verdict: str, comments: str, author: str,
                      line_comments: tuple[LineComment, ...] = ()) -> ReviewInfo:
        if verdict not in ("approve", "request_changes"):
            raise Conflict(f"unknown verdict {verdict!r}", field="verdict")
        with self.db.write() as session:
            pr = self._pr(session, repo_id, number)
            if pr.state != "open":
                raise Conflict(f"pull request #{number} is {pr.state}", field="state")
            # The local forge keeps a review as one text: line comments follow the body as `path:line: text`.
            comments = "\n".join([comments, *(c.as_text() for c in line_comments)]).strip() if line_comments \
                else comments
            rev = prs.add_review_row(session, workspace_id=pr.workspace_id, pr_id=pr.id, head_sha=pr.head_sha,
                                     verdict=verdict, comments=self.redact(comments, pr.workspace_id, pr.repo_id),
                                     author=author)
            # Requested changes reach the timeline with the resume they cause (or the reason there is none).
            _enqueue_task(session, pr, f"review {verdict}", event="approved" if verdict == "approve" else None,
                          detail=f"{author} approved #{number} at {pr.head_sha[:10]}")
            return ReviewInfo(rev.id, rev.head_sha, rev.verdict, rev.comments, rev.author)

    def merge(self, repo_id: int, number: int, *, head_sha: str, message: str, force: bool = False) -> str:
        """Squash-merge `head_sha`; a conflict marks the PR unmergeable (and enqueues its task) then raises.

        One merge at a time per base branch. The merge gates (CI passed on the merge of this head onto the
        current base tip, the approval rule on this head) are checked under that lock against a freshly
        fetched base; a PR that meets every gate but CI on the current base joins the merge queue and
        `MergeQueued` is raised. `force` skips the gates and is only ever passed for an admin's audited override.
        """
        with self.db.read() as session:
            repo = self._repo(session, repo_id)
            pr = self._pr(session, repo_id, number)
            if pr.state == "merged":
                return pr.merged_sha or ""
            base_branch = pr.base_branch
        cache = self.cache(repo)
        with self._base_lock(repo_id, base_branch):
            cache.ensure()
            cache.fetch(max_age_s=GATE_FETCH_MAX_AGE_S)
            tip = cache.resolve(f"origin/{base_branch}")
            queued = False
            with self.db.write() as session:
                repo = self._repo(session, repo_id)
                pr = self._pr(session, repo_id, number)
                if pr.state == "merged":
                    return pr.merged_sha or ""
                if pr.state != "open":
                    raise Conflict(f"pull request #{number} is {pr.state}", field="state")
                if pr.head_sha != head_sha:
                    raise Conflict(f"pull request #{number} moved to {pr.head_sha[:10]}; not merging {head_sha[:10]}")
                if pr.base_sha != tip:
                    pr.base_sha = tip
                if not force:
                    report = check_merge_gates(session, repo, pr, tip)
                    if report.only_stale_ci:
                        if pr.merge_queued_at is None:
                            pr.merge_queued_at = utcnow()
                        pr.merge_message = message
                        _enqueue_task(session, pr, "merge queued: re-testing on the current base",
                                      delay_s=QUEUED_LOOK_S)
                        queued = True
                    elif not report.ok:
                        raise MergeGateRefused(pr.number, pr.head_sha, report.unmet)
                trailers = merge_trailers(pr.task_id, number, head_sha)
            if queued:
                self._advance_queue(repo_id, base_branch)
                with self.db.read() as session:
                    pr = self._pr(session, repo_id, number)
                    if pr.state == "merged":  # landed with its batch just now
                        return pr.merged_sha or ""
                raise MergeQueued(f"pull request #{number} is queued to be tested on {base_branch} at {tip[:10]} "
                                  "before it merges")
            try:
                # The trailers make the merge idempotent: after a crash between the push and the write below,
                # the retry finds this PR's own commit on the base instead of recording whatever is on top.
                # Without force it lands only on the tip CI passed on (a compare-and-swap of the base ref).
                merged_sha = cache.squash_merge(base_branch, head_sha, message,
                                                trailers=trailers, onto=None if force else tip, fetched=True)
            except BaseMovedError as exc:
                # Someone pushed to the base since the fetch above: back to the queue, to be tested on it.
                with self.db.write() as session:
                    pr = self._pr(session, repo_id, number)
                    if pr.merge_queued_at is None:
                        pr.merge_queued_at = utcnow()
                    pr.merge_message = message
                    if exc.found:
                        pr.base_sha = exc.found
                    _enqueue_task(session, pr, f"merge queued: {base_branch} moved outside the queue",
                                  delay_s=QUEUED_LOOK_S)
                self._advance_queue(repo_id, base_branch)
                raise MergeQueued(f"pull request #{number} is queued: {exc}") from None
            except MergeConflictError as exc:
                with self.db.write() as session:
                    pr = self._pr(session, repo_id, number)
                    pr.mergeable = False
                    pr.conflicting_files = list(exc.conflicting_files)
                    pr.merge_queued_at = None
                    _enqueue_task(session, pr, "merge conflict")
                raise Conflict(f"pull request #{number} conflicts with {base_branch}: "
                               f"{', '.join(exc.conflicting_files)}") from None
            with self.db.write() as session:
                pr = self._pr(session, repo_id, number)
                pr.state = "merged"
                pr.merged_sha = merged_sha
                pr.merged_at = utcnow()
                pr.merge_queued_at = None
                _enqueue_task(session, pr, "pull request merged")
                head_branch = pr.head_branch
        self._bg.submit(self._after_merge, repo_id, head_branch, base_branch)
        return merged_sha

    def close(self, repo_id: int, number: int) -> None:
        with self.db.read() as session:
            lock = self._base_lock(repo_id, self._pr(session, repo_id, number).base_branch)
        # Under the base's lock: a batch being landed sees the PR either open or closed, never both.
        with lock, self.db.write() as session:
            pr = self._pr(session, repo_id, number)
            if pr.state == "open":
                pr.state = "closed"
                pr.closed_at = utcnow()
                _enqueue_task(session, pr, "pull request closed")
                queued, base_branch = pr.merge_queued_at is not None, pr.base_branch
                pr.merge_queued_at = None
            else:
                queued = False
        if queued:
            self._bg.submit(self._safe_advance, repo_id, base_branch)

    def rerun_ci(self, repo_id: int, number: int) -> None:
        """CI of the current head becomes pending again and is scheduled; the task waits for the new result."""
        with self.db.write() as session:
            pr = self._pr(session, repo_id, number)
            repo = self._repo(session, repo_id)
            if pr.state != "open":
                raise Conflict(f"pull request #{number} is {pr.state}; CI runs only on open pull requests")
            if not repo.ci_command:
                raise Conflict(f"repo {repo.name} has no CI command (set one with `optio repo set --ci-command`)")
            # The run that decides the PR: its head merged onto the base tip last seen (see _current_ci).
            current = prs.ci_run_on(session, pr.id, pr.head_sha, pr.base_sha)
            if current is not None and current.status == "pending":
                raise Conflict(f"CI is already pending on {pr.head_sha[:10]}")
            prs.reset_ci(session, pr, pr.head_sha, pr.base_sha)
            _enqueue_task(session, pr, "CI re-run requested")
            pr_id, head_sha, base_sha = pr.id, pr.head_sha, pr.base_sha
        self.schedule_ci(pr_id, head_sha, base_sha)

    # --- background work ------------------------------------------------------------------------------

    def _after_merge(self, repo_id: int, head_branch: str, base_branch: str) -> None:
        """The base moved: re-test the queue's next PR, drop the merged branch, recheck the other open PRs."""
        self._safe_advance(repo_id, base_branch)  # first: the queue waits on it, the rest is bookkeeping
        self._after_merge_cleanup(repo_id, [head_branch])

    def _after_merge_cleanup(self, repo_id: int, head_branches: list[str]) -> None:
        try:
            with self.db.read() as session:
                repo = self._repo(session, repo_id)
                open_ids = prs.open_ids(session, repo_id)
            cache = self.cache(repo)
            try:
                cache.delete_remote_branches(head_branches)
            except Exception:
                log.warning("delete_branch_failed", repo=repo_id, branches=head_branches)
            if open_ids:
                self.schedule_repo_mergeability(repo_id)
        except Exception:
            log.exception("after_merge_failed", repo=repo_id)

    # --- the merge queue ------------------------------------------------------------------------------

    def _safe_advance(self, repo_id: int, base_branch: str) -> None:
        try:
            with self._base_lock(repo_id, base_branch):
                self._advance_queue(repo_id, base_branch)
        except Exception:
            log.exception("merge_queue_failed", repo=repo_id, base=base_branch)

    def _advance_queue(self, repo_id: int, base_branch: str) -> None:
        """Give the queue what it needs next (the caller holds the base's lock).

        The next segment of the queue is tested on the current base tip: the halves of a red batch first
        (in queue order), otherwise up to `merge_batch_max` PRs from the front. A segment of one PR is the
        serial queue: its head is re-tested on the tip, and green its task is woken to merge; red, it leaves
        the queue and its task is woken (its agent gets the CI output). A segment of several is a batch,
        tested once as their heads merged in order onto the tip; green, the forge lands it as one commit
        (exactly the tested tree) and every PR in it is merged; red, it is split in halves, down to the PR
        whose merge fails. A batch whose member left the queue, or whose base moved, is dropped and the
        queue forms anew.
        """
        with self.db.read() as session:
            repo = self._repo(session, repo_id)
            if not prs.merge_queue(session, repo_id, base_branch) and \
                    batches.active(session, repo_id, base_branch) is None:
                return
        cache = self.cache(repo)
        cache.ensure()
        cache.fetch(max_age_s=GATE_FETCH_MAX_AGE_S)
        tip = cache.resolve(f"origin/{base_branch}")
        for _ in range(64):  # each round lands a batch or drops one: bounded by the queue's length
            step = self._queue_step(repo_id, base_branch, tip)
            if step is None:
                return
            kind, ident = step
            if kind == "test_pr":
                pr_id, head_sha = ident.split(":", 1)
                log.info("merge_queue_retest", pr=int(pr_id), head=head_sha[:10], base=tip[:10])
                self.schedule_ci(int(pr_id), head_sha, tip)
                return
            if kind == "test_batch":
                self.schedule_batch_ci(int(ident))
                return
            # land
            self._land_batch(int(ident))
            cache.fetch(max_age_s=GATE_FETCH_MAX_AGE_S)
            tip = cache.resolve(f"origin/{base_branch}")

    def _queue_step(self, repo_id: int, base_branch: str, tip: str) -> tuple[str, str] | None:
        """One decision about the queue on `tip`, written in one transaction: what to test or land next."""
        with self.db.write() as session:
            while True:
                session.flush()
                queue = prs.merge_queue(session, repo_id, base_branch)
                for pr in queue:
                    pr.base_sha = tip
                batch = batches.active(session, repo_id, base_branch)
                if batch is not None:
                    members = _members(queue, batch.pr_ids, batch.head_shas)
                    whole = len(members) == len(batch.pr_ids)
                    if batch.status == "passing" and whole:
                        return "land", str(batch.id)
                    if batch.status == "pending" and whole and batch.base_sha == tip:
                        with self._lock:
                            running = batch.id in self._batch_inflight
                        return None if running else ("test_batch", str(batch.id))
                    if batch.status in ("failing", "error") and whole:
                        batch.status = "bisected"
                        self._plan_halves(session, members)
                        log.info("merge_queue_bisect", batch=batch.id, prs=[p.number for p in members])
                    else:
                        log.info("merge_queue_batch_dropped", batch=batch.id, status=batch.status,
                                 left=len(batch.pr_ids) - len(members), base_moved=batch.base_sha != tip)
                        batch.status = "dropped"
                    continue
                if not queue:
                    for left in batches.planned(session, repo_id, base_branch):
                        left.status = "dropped"
                    return None
                segment, plan = self._next_segment(session, queue, repo_id, base_branch)
                if plan is not None and len(segment) == 1:
                    plan.status = "single"  # a half of one PR: the serial queue tests it alone
                if len(segment) > 1:
                    new: MergeBatch
                    if plan is not None:  # the planned half becomes the batch under test
                        new = plan
                        new.status, new.base_sha, new.started_at = "pending", tip, utcnow()
                        new.pr_ids, new.head_shas = [p.id for p in segment], [p.head_sha for p in segment]
                    else:
                        new = batches.add(session, segment, status="pending", base_sha=tip, now=utcnow())
                    log.info("merge_queue_batch", batch=new.id, prs=[p.number for p in segment], base=tip[:10])
                    return "test_batch", str(new.id)
                pr = segment[0]
                ci = prs.ci_run_on(session, pr.id, pr.head_sha, tip)
                if ci is None:
                    prs.add_pending_ci(session, pr, pr.head_sha, tip)
                    return "test_pr", f"{pr.id}:{pr.head_sha}"
                if ci.status == "pending":  # running, or left pending by a restart: run it again
                    with self._lock:
                        running = (pr.id, pr.head_sha, tip) in self._ci_inflight
                    return None if running else ("test_pr", f"{pr.id}:{pr.head_sha}")
                if ci.status == "passing":
                    waited = (utcnow() - ci.finished_at).total_seconds() if ci.finished_at else 0.0
                    if waited > QUEUE_FRONT_GRACE_S:
                        pr.merge_queued_at = None
                        continue
                    _enqueue_task(session, pr, "merge queue: CI passed on the current base")
                    return None
                pr.merge_queued_at = None
                _enqueue_task(session, pr, f"merge queue: CI {ci.status} on the current base")

    def _next_segment(self, session: Session, queue: list[PullRequest], repo_id: int,
                      base_branch: str) -> tuple[list[PullRequest], MergeBatch | None]:
        """The PRs to test next (and the planned half they come from): the first half of a red batch still
        queued, else the queue's front alone if it was tested alone on this tip, else a batch from the front."""
        front = queue[0]
        if prs.ci_run_on(session, front.id, front.head_sha, front.base_sha) is not None:
            return [front], None  # tested alone on this tip (or being tested): it merges or leaves on its own
        order = {pr.id: i for i, pr in enumerate(queue)}
        best: tuple[int, list[PullRequest], MergeBatch] | None = None
        for plan in batches.planned(session, repo_id, base_branch):
            members = _members(queue, plan.pr_ids, plan.head_shas)
            if not members:
                plan.status = "dropped"
                continue
            if best is None or order[members[0].id] < best[0]:
                best = (order[members[0].id], members, plan)
        if best is not None:
            return best[1], best[2]
        return queue[:max(1, self.merge_batch_max)], None

    @staticmethod
    def _plan_halves(session: Session, members: list[PullRequest]) -> None:
        """Bisect: the first half is tested next on the tip, the second once the first has landed or left."""
        if len(members) <= 1:
            if members:
                batches.add(session, members, status="planned")
            return
        mid = (len(members) + 1) // 2
        batches.add(session, members[:mid], status="planned")
        batches.add(session, members[mid:], status="planned")

    def schedule_batch_ci(self, batch_id: int) -> None:
        with self._lock:
            if batch_id in self._batch_inflight:
                return
            self._batch_inflight.add(batch_id)
        self._pool.submit(self._run_batch_ci, batch_id)

    def _run_batch_ci(self, batch_id: int) -> None:
        """CI once on the batch's heads merged in order onto its base; the queue then lands or bisects it."""
        advance: tuple[int, str] | None = None
        try:
            lock = self._ci_lock(f"batch-{batch_id}")
            if not lock.acquire(blocking=False):
                return  # another replica runs it, and advances the queue when done
            try:
                self._end_orphaned_ci(self._ci_tag(f"batch-{batch_id}"))
                with self.db.read() as session:
                    batch = batches.get(session, batch_id)
                    if batch is None or batch.status != "pending" or batch.base_sha is None:
                        return
                    repo = self._repo(session, batch.repo_id)
                    command = repo.ci_command
                    base_sha, heads = batch.base_sha, list(batch.head_shas)
                    advance = (batch.repo_id, batch.base_branch)
                    workspace_id = batch.workspace_id
                self._run_batch_ci_locked(batch_id, repo, command, base_sha, heads, workspace_id)
                # Recorded: a later try sees the batch is no longer pending, so its lock file can go.
                lock.path.unlink(missing_ok=True)
            finally:
                lock.release()
                forget_lock(lock.path)
        except CommandInterrupted:
            log.info("batch_ci_interrupted", batch=batch_id, reason="the server is stopping")
            advance = None
        except Exception:
            log.exception("batch_ci_failed_to_run", batch=batch_id)
        finally:
            with self._lock:
                self._batch_inflight.discard(batch_id)
        if advance is not None:
            self._safe_advance(*advance)

    def _run_batch_ci_locked(self, batch_id: int, repo: Repo, command: str | None, base_sha: str, heads: list[str],
                             workspace_id: int) -> None:
        cache = self.cache(repo)
        cache.ensure()  # the heads and base are named by sha: the test merge fetches only if one is missing
        tested = ""
        could_not_run = conflict = False
        try:
            tested = cache.test_merge_many(base_sha, heads)
            result = cache.run_ci(tested, command or "true", work_root=self.data_dir / "ci",
                                  env=self._ci_env(), inherit_env=False, sandbox=self.sandbox,
                                  timeout_s=self.ci_timeout_s, tag=self._ci_tag(f"batch-{batch_id}"),
                                  stop=self._stopping)
        except CommandInterrupted:
            raise  # the server is stopping: no result to record, a restart runs this batch's CI again
        except BatchConflictError as exc:
            conflict = True
            result = CiResult(status="failing", exit_code=None, duration_s=0.0,
                              output=f"optio: {exc.head_sha[:12]} does not merge onto {base_sha[:12]} with the "
                                     f"heads before it; conflicts in: {', '.join(exc.conflicting_files)}\n")
        except Exception as exc:
            result = CiResult(status="failing", exit_code=None, output=f"optio: CI could not run: {exc}",
                              duration_s=0.0)
            could_not_run = True
        outcome = ClassifiedCi("failing", None) if conflict else classify(result, could_not_run=could_not_run)
        with self.db.write() as session:
            recorded = batches.finish(
                session, batch_id, status=outcome.status, exit_code=result.exit_code,
                output=self.redact(result.output[-CI_OUTPUT_MAX:], workspace_id, repo.id),
                duration_s=result.duration_s, failure_kind=outcome.failure_kind, tested_sha=tested or None,
                now=utcnow())
        log.info("batch_ci_finished", batch=batch_id, base=base_sha[:10], status=outcome.status,
                 recorded=recorded, heads=len(heads))

    def _land_batch(self, batch_id: int) -> None:
        """Land a green batch as one commit whose tree is the one CI passed on, if the base is still where CI ran.

        Every PR must still meet its other gates (approval, review agent); one that no longer does leaves
        the queue and the batch is dropped. The base moved since the test (a push outside Optio): nothing
        lands, the batch is dropped and its PRs stay queued to be tested on the new base.
        """
        with self.db.read() as session:
            batch = batches.get(session, batch_id)
            if batch is None or batch.status != "passing" or not batch.tested_sha or not batch.base_sha:
                return
            repo = self._repo(session, batch.repo_id)
            members = [prs.get(session, pr_id) for pr_id in batch.pr_ids]
            unmet = {pr.id: report.unmet for pr in members if pr is not None
                     and not (report := check_merge_gates(session, repo, pr, batch.base_sha, ci=False)).ok}
            lines, trailers = [], [("Optio-Batch", str(batch.id))]
            for pr in members:
                assert pr is not None
                text = (pr.merge_message or f"{pr.title} (#{pr.number})").strip().splitlines()
                lines.append("- " + "\n  ".join(line for line in text if line.strip()))
                trailers.extend(merge_trailers(pr.task_id, pr.number, pr.head_sha).items())
            base_branch, base_sha, tested_sha = batch.base_branch, batch.base_sha, batch.tested_sha
            first_head = batch.head_shas[0]
        if unmet:
            with self.db.write() as session:
                batch = batches.get(session, batch_id)
                if batch is not None and batch.status == "passing":
                    batch.status = "dropped"
                for pr_id, why in unmet.items():
                    pr = prs.get(session, pr_id)
                    if pr is not None and pr.merge_queued_at is not None:
                        pr.merge_queued_at = None
                        _enqueue_task(session, pr, f"merge queue: left the batch: {'; '.join(why)}")
            return
        message = f"Merge {len(lines)} pull requests into {base_branch}\n\n" + "\n".join(lines)
        try:
            merged_sha = self.cache(repo).land_tree(base_branch, base_sha, tested_sha, message, trailers=trailers,
                                                    landed_if={"Optio-Batch": str(batch_id),
                                                               "Optio-Head": first_head})
        except BaseMovedError as exc:
            log.info("merge_queue_base_moved", batch=batch_id, expected=exc.expected[:10],
                     found=(exc.found or "")[:10])
            with self.db.write() as session:
                batch = batches.get(session, batch_id)
                if batch is not None and batch.status == "passing":
                    batch.status = "dropped"
            return
        branches: list[str] = []
        with self.db.write() as session:
            batch = batches.get(session, batch_id)
            assert batch is not None
            batch.status = "landed"
            batch.merged_sha = merged_sha
            now = utcnow()
            for pr_id in batch.pr_ids:
                pr = prs.get(session, pr_id)
                if pr is None or pr.state != "open":
                    continue
                pr.state, pr.merged_sha, pr.merged_at, pr.merge_queued_at = "merged", merged_sha, now, None
                branches.append(pr.head_branch)
                _enqueue_task(session, pr, f"pull request merged in batch {batch_id} as {merged_sha[:10]}")
        log.info("merge_queue_batch_landed", batch=batch_id, sha=merged_sha[:10], prs=len(branches))
        self._bg.submit(self._after_merge_cleanup, batch.repo_id, branches)

    def schedule_mergeability(self, pr_id: int) -> None:
        self._bg.submit(self._safe_refresh, pr_id)

    def _safe_refresh(self, pr_id: int) -> None:
        try:
            # Scheduled right after the task's push fetched: a fetch that recent serves this advisory check.
            self.refresh_mergeability(pr_id, max_age_s=MERGEABILITY_FETCH_AGE_S)
        except Exception:
            log.exception("mergeability_failed", pr=pr_id)

    def refresh_mergeability(self, pr_id: int, *, max_age_s: float = 0.0) -> bool | None:
        """Recompute whether the PR head merges cleanly into the current base; enqueue its task on change."""
        with self.db.read() as session:
            pr = prs.get(session, pr_id)
            if pr is None or pr.state != "open":
                return None
            repo = self._repo(session, pr.repo_id)
        self.cache(repo).fetch(max_age_s=max_age_s)
        return self._refresh_prs(repo, [pr_id]).get(pr_id)

    def schedule_repo_mergeability(self, repo_id: int) -> None:
        """Refresh every open PR of the repo soon; merges landing meanwhile share the one refresh."""
        with self._lock:
            if repo_id in self._refresh_pending:
                return
            self._refresh_pending.add(repo_id)
        self._bg.submit(self._safe_refresh_repo, repo_id)

    def _safe_refresh_repo(self, repo_id: int) -> None:
        with self._lock:
            self._refresh_pending.discard(repo_id)  # a merge from now on needs a refresh after this one
        try:
            self.refresh_repo_mergeability(repo_id, max_age_s=MERGEABILITY_FETCH_AGE_S)
        except Exception:
            log.exception("mergeability_failed", repo=repo_id)

    def refresh_repo_mergeability(self, repo_id: int, *, max_age_s: float = 0.0) -> int:
        """Every open PR of the repo against its base as it is now: one fetch for them all, and `git merge-tree`
        only for a (head, base tip) pair not already computed. Returns how many PRs are open."""
        with self.db.read() as session:
            repo = self._repo(session, repo_id)
            ids = prs.open_ids(session, repo_id)
        if ids:
            self.cache(repo).fetch(max_age_s=max_age_s)
            self._refresh_prs(repo, ids)
        return len(ids)

    def _refresh_prs(self, repo: Repo, pr_ids: Sequence[int]) -> dict[int, bool]:
        """Mergeability of these open PRs on the cache's base tips as fetched; one transaction records it all
        and enqueues the task of each PR whose mergeability changed (not one whose base merely moved)."""
        with self.db.read() as session:
            loaded = prs.get_many(session, pr_ids)
            rows = [(pr.id, pr.head_sha, pr.base_branch) for pr in (loaded.get(i) for i in pr_ids)
                    if pr is not None and pr.state == "open"]
        cache = self.cache(repo)
        tips: dict[str, str] = {}
        found: dict[int, tuple[str, str, Mergeability]] = {}
        for pr_id, head_sha, base_branch in rows:
            if base_branch not in tips:
                tips[base_branch] = cache.resolve(f"origin/{base_branch}")
            tip = tips[base_branch]
            key = (repo.id, head_sha, tip)
            with self._lock:
                result = self._mergeability_seen.get(key)
            if result is None:
                result = cache.mergeability(tip, head_sha, fetch=False)
                with self._lock:
                    self._mergeability_seen[key] = result
                    while len(self._mergeability_seen) > MERGEABILITY_MEMO:
                        self._mergeability_seen.popitem(last=False)
            found[pr_id] = (head_sha, tip, result)
        if not found:
            return {}
        with self.db.write() as session:
            current = prs.get_many(session, list(found))
            for pr_id, (head_sha, tip, result) in found.items():
                pr = current.get(pr_id)
                if pr is None or pr.state != "open" or pr.head_sha != head_sha:
                    continue
                changed = pr.mergeable != result.clean or list(pr.conflicting_files or ()) != result.conflicting_files
                if changed:
                    pr.mergeable = result.clean
                    pr.conflicting_files = list(result.conflicting_files)
                    _enqueue_task(session, pr, "mergeability changed")
                if pr.base_sha != tip:
                    pr.base_sha = tip
        return {pr_id: result.clean for pr_id, (_, _, result) in found.items()}

    def _ci_env(self) -> dict[str, str]:
        """The whole environment of a CI command: enough to run tools, nothing of the server's.

        No ``HOME``: each CI run gets a fresh one in its scratch dir, so one PR's CI cannot plant
        configuration (a pip index, a git alias) that another repo's CI then uses.
        """
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")}
        env.update({"CI": "true", "OPTIO_CI": "1"})
        return env

    def schedule_ci(self, pr_id: int, head_sha: str, base_sha: str | None = None) -> None:
        key = (pr_id, head_sha, base_sha)
        with self._lock:
            if key in self._ci_inflight:
                return
            self._ci_inflight.add(key)
        self._pool.submit(self._run_ci, pr_id, head_sha, base_sha)

    def _test_merge(self, cache: RepoWorktrees, head_sha: str, base_sha: str | None) -> tuple[str, list[str]]:
        """The commit CI runs on (the head merged onto the base) and the files that conflict, if any."""
        if base_sha is None:
            return head_sha, []
        try:
            return cache.test_merge(base_sha, head_sha), []
        except MergeConflictError as exc:
            return "", list(exc.conflicting_files)

    def _run_ci(self, pr_id: int, head_sha: str, base_sha: str | None = None) -> None:
        lock = self._ci_lock(f"ci-pr-{pr_id}")
        if not lock.acquire(blocking=False):
            # Another replica runs this PR's CI. A run of another head it does not cover stays pending and the
            # PR watcher schedules it again.
            with self._lock:
                self._ci_inflight.discard((pr_id, head_sha, base_sha))
            return
        try:
            self._run_ci_locked(pr_id, head_sha, base_sha)
        finally:
            lock.release()
            forget_lock(lock.path)

    def _run_ci_locked(self, pr_id: int, head_sha: str, base_sha: str | None = None) -> None:
        try:
            self._end_orphaned_ci(self._ci_tag(f"ci-pr-{pr_id}"))
            with self.db.read() as session:
                pr = prs.get(session, pr_id)
                ci = prs.ci_run_on(session, pr_id, head_sha, base_sha)
                if pr is None or ci is None or ci.status != "pending":
                    return
                repo = self._repo(session, pr.repo_id)
                command = repo.ci_command
                # Green CI is where a person's approval becomes the only thing missing.
                policy = review_policy_for_pr(session, repo, pr.task_id)
                needs_person = policy.require_approval and not policy.review_agent_type
            if not command:
                return
            cache = self.cache(repo)
            cache.ensure()  # head and base are named by sha: the test merge fetches only if one is missing
            conflicts: list[str] = []
            could_not_run = False
            try:
                tested, conflicts = self._test_merge(cache, head_sha, base_sha)
                if conflicts:
                    result = CiResult(status="failing", exit_code=None, duration_s=0.0,
                                      output=f"optio: {head_sha[:12]} does not merge cleanly onto "
                                             f"{(base_sha or '')[:12]}; conflicts in: {', '.join(conflicts)}\n")
                else:
                    result = cache.run_ci(tested, command, work_root=self.data_dir / "ci", env=self._ci_env(),
                                          inherit_env=False, sandbox=self.sandbox, timeout_s=self.ci_timeout_s,
                                          tag=self._ci_tag(f"ci-pr-{pr_id}"), stop=self._stopping)
            except CommandInterrupted:
                raise  # the server is stopping: no result to record, a restart runs this CI again
            except Exception as exc:  # CI infrastructure failure is a failing CI with the reason as output
                tested = ""
                result = CiResult(status="failing", exit_code=None, output=f"optio: CI could not run: {exc}",
                                  duration_s=0.0)
                could_not_run = True
            # A merge conflict is the agent's to fix (a failing CI); anything else that did not test the code
            # (not found, not executable, timed out, could not run) is a person's.
            outcome = ClassifiedCi("failing", None) if conflicts else classify(result, could_not_run=could_not_run)
            advance: tuple[int, str] | None = None
            with self.db.write() as session:
                ci = prs.ci_run_on(session, pr_id, head_sha, base_sha)
                pr = prs.get(session, pr_id)
                if ci is None or pr is None:
                    return
                ci.status = outcome.status
                ci.failure_kind = outcome.failure_kind
                ci.exit_code = result.exit_code
                ci.output = self.redact(result.output[-CI_OUTPUT_MAX:], pr.workspace_id, pr.repo_id)
                ci.duration_s = result.duration_s
                ci.finished_at = utcnow()
                ci.tested_sha = tested or None
                self._after_ci(pr, head_sha, conflicts)
                if pr.merge_queued_at is not None and pr.head_sha == head_sha:
                    advance = (pr.repo_id, pr.base_branch)  # the queue's front finished: merge it or move on
                # A red CI reaches the timeline with the resume it causes (or the reason there is none).
                took = f" in {result.duration_s:.1f}s" if result.duration_s is not None else ""
                _enqueue_task(session, pr, f"CI {outcome.status}",
                              event="ci_passed" if outcome.status == "passing" else None,
                              detail=f"CI passed on {head_sha[:10]}{took}")
                if outcome.status == "passing" and needs_person and not _approved(session, pr.id, head_sha):
                    _enqueue_task(session, pr, "approval needed", event="review_requested",
                                  detail=f"CI passed on {head_sha[:10]}: waiting for a person's approval of "
                                         f"#{pr.number}")
            log.info("ci_finished", pr=pr_id, head=head_sha[:10], base=(base_sha or "")[:10], status=outcome.status,
                     failure_kind=outcome.failure_kind)
            metrics.CI_SECONDS.labels(outcome.status).observe(result.duration_s or 0.0)
            if advance is not None:
                self._safe_advance(*advance)
        except CommandInterrupted:
            log.info("ci_interrupted", pr=pr_id, head=head_sha[:10], reason="the server is stopping")
        except Exception:
            log.exception("ci_failed_to_run", pr=pr_id, head=head_sha[:10])
        finally:
            with self._lock:
                self._ci_inflight.discard((pr_id, head_sha, base_sha))

    @staticmethod
    def _after_ci(pr: PullRequest, head_sha: str, conflicts: list[str]) -> None:
        """A test merge that conflicts is a conflict of the PR (its agent rebases), not only a red CI."""
        if conflicts and pr.head_sha == head_sha:
            pr.mergeable = False
            pr.conflicting_files = conflicts

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
        """After a restart: end CI a killed server left running, sweep scratch checkouts, rerun CI left pending,
        recompute unknown mergeability.

        Run only by a replica that starts alone, so every CI process of this data dir is a dead server's: those
        of runs that are rerun, and those of runs that are not (a batch the queue plans again).
        """
        self._end_orphaned_ci(self._ci_tags, prefix=True)
        self.sweep_scratch()
        self.record_landed()
        self.resume_pending()

    def record_landed(self) -> int:
        """Open PRs whose squash reached the base before a crash stopped its record: recorded merged now.

        Left open (and queued), such a PR would be tested and landed a second time in a merge-queue batch. Its
        commit is found by its trailers, as a retried merge finds it.
        """
        with self.db.read() as session:
            found = [(pr.id, pr.repo_id, pr.task_id, pr.number, pr.head_sha, pr.base_branch)
                     for pr_id in prs.open_ids(session) if (pr := prs.get(session, pr_id)) is not None]
            repos = {repo_id: self._repo(session, repo_id) for repo_id in {row[1] for row in found}}
            # A batch's members are recorded by the batch itself (it finds its own landed commit).
            in_batch = {pr_id for repo_id, base in {(row[1], row[5]) for row in found}
                        if (batch := batches.active(session, repo_id, base)) is not None for pr_id in batch.pr_ids}
            found = [row for row in found if row[0] not in in_batch]
        fetched: set[int] = set()
        recorded = 0
        for pr_id, repo_id, task_id, number, head_sha, base_branch in found:
            try:
                cache = self.cache(repos[repo_id])
                if repo_id not in fetched:
                    cache.ensure()
                    cache.fetch()
                    fetched.add(repo_id)
                landed = cache.find_squash(base_branch, merge_trailers(task_id, number, head_sha))
            except Exception:
                log.exception("record_landed_failed", pr=pr_id)
                continue
            if landed is None:
                continue
            with self.db.write() as session:
                pr = prs.get(session, pr_id)
                if pr is None or pr.state != "open" or pr.head_sha != head_sha:
                    continue
                pr.state, pr.merged_sha, pr.merged_at, pr.merge_queued_at = "merged", landed, utcnow(), None
                _enqueue_task(session, pr, f"pull request merged as {landed[:10]} before a restart")
            log.info("pull_request_found_landed", pr=pr_id, sha=landed[:10])
            recorded += 1
        return recorded

    def resume_pending(self) -> None:
        """Rerun CI left pending (by a restart, or by a replica that died), recompute unknown mergeability.

        A CI another replica is running is not run twice: `_run_ci` takes its lock without waiting.
        """
        with self.db.read() as session:
            pending = prs.pending_ci_of_open_prs(session)
            unknown = prs.open_ids_unknown_mergeability(session)
            queues = prs.queued_bases(session)
        for pr_id, head_sha, base_sha in pending:
            self.schedule_ci(pr_id, head_sha, base_sha)
        for pr_id in unknown:
            self.schedule_mergeability(pr_id)
        for repo_id, base_branch in queues:
            self._bg.submit(self._safe_advance, repo_id, base_branch)

    def poll_open_prs(self) -> int:
        """The PR watcher's safety net: refresh every open PR (catches bases moved outside Optio), and run CI
        left pending (by a replica that died mid-run)."""
        with self.db.read() as session:
            ids = prs.open_ids(session)
            queues = prs.queued_bases(session)
            pending = prs.pending_ci_of_open_prs(session)
        for pr_id, head_sha, base_sha in pending:
            self.schedule_ci(pr_id, head_sha, base_sha)
        with self.db.read() as session:
            repo_ids = sorted({pr.repo_id for pr in (prs.get(session, i) for i in ids) if pr is not None})
        for repo_id in repo_ids:  # one fetch per repo, whatever its number of open PRs
            try:
                self.refresh_repo_mergeability(repo_id)
            except Exception:
                log.exception("mergeability_failed", repo=repo_id)
        for repo_id, base_branch in queues:
            self._safe_advance(repo_id, base_branch)
        return len(ids)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._bg.shutdown(wait=False, cancel_futures=True)
        # CI commands run in sessions of their own: they would outlive the server. Their runs stay pending and a
        # restarted server runs them again.
        ended = end_running_commands(self._stopping)
        if ended:
            log.info("ci_ended_for_shutdown", commands=ended)
