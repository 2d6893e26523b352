"""Git work behind a repo task: cache clone, per-task clones, CI and squash-merge.

One ``RepoCache`` stands for one remote repository on this machine. Its layout
is a *bare* repository with a single ``origin`` remote using the standard
``+refs/heads/*:refs/remotes/origin/*`` refspec (``git init --bare`` plus
``git remote add``, not ``git clone --bare``). Only Optio ever writes to it.

Each task (and each review and CI run) gets a standalone clone of the cache
whose ``objects/info/alternates`` points into the cache's object store, so a
task costs a checkout, not a copy of the history, yet nothing the agent
writes into its ``.git`` (hooks, ``core.fsmonitor``, filters, config) is ever
read by another task or by Optio's git commands against the cache:

* the clone's ``origin`` is the clone itself (``.``), so ``git fetch origin``
  succeeds inside a sandbox that cannot see the cache, and Optio copies the
  cache's ``refs/remotes/origin/*`` into the clone before every agent launch
  (:meth:`RepoCache.sync_clone`): ``git fetch origin && git rebase
  origin/<base>`` sees the current base. It has no push URL and no
  credential: only Optio pushes, and only the task's branch;
* Optio never runs porcelain in the clone with the clone's config: status,
  add and commit run against the cache's repository with the clone as work
  tree and a throwaway index; the agent's commits are copied into the cache
  by reading the clone's object directory, and pushes go from the cache.

Thread safety: several tasks of one repo run at once in threads. Operations
that change state shared by all tasks (fetch, clone add/remove) hold a
per-cache lock; the lock is keyed by the cache path so separate ``RepoCache``
objects for one cache still exclude each other. Squash-merges are serialised
among themselves on a second lock, since they race for the same base branch
anyway. Work inside a single clone (commit, push, CI) runs unlocked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import structlog

from optio.forge import name_reader
from optio.forge.base import ForgeBusy
from optio.forge.gitcmd import (
    GitError,
    MergeConflictError,
    is_local_remote,
    remote_access,
    run_git,
    scrubbed_env,
)
from optio.forge.process_lock import ProcessLock, lock_for
from optio.runtime import process_group
from optio.runtime.base import Mounts
from optio.runtime.sandbox import Sandbox
from optio.security.ssrf import Allowlist, Resolver, UnsafeURLError

__all__ = [
    "BaseMovedError",
    "BatchConflictError",
    "CiResult",
    "CommandInterrupted",
    "GitError",
    "MergeConflictError",
    "Mergeability",
    "RepoCache",
    "branch_for_task",
    "end_running_commands",
    "run_git",
]

log = structlog.get_logger(__name__)

CI_OUTPUT_CAP_BYTES = 1024 * 1024
CI_TERM_GRACE_S = 5.0
_MERGE_PUSH_RETRIES = 3
_FETCH_ATTEMPTS = 3
# The first fetch of a large repository can take far longer than a routine git call.
_FETCH_TIMEOUT_S = 1800.0
_READY_KEY = "optio.cacheready"
# Where task clones are recorded, one file per clone naming its path (the cache stays a plain bare repo).
_CLONES_DIR = "optio-clones"
# Attributes files for `git merge-tree` (see RepoCache._attributes_file), named for their content.
_ATTRIBUTES_DIR = "optio-attributes"
# The last sha Optio pushed to a task branch: a force-push may replace that, never a commit someone else pushed.
_PUSHED_PREFIX = "refs/optio/pushed/"
# A clone's origin has no push URL that works: only Optio publishes the agent's work.
_NO_PUSH_URL = "/nonexistent/optio-pushes-the-task-branch-itself"
_TASK_BRANCH = re.compile(r"optio/[0-9]+")
_FULL_SHA = name_reader.FULL_SHA
# How many base commits' attributes files a cache keeps (see `RepoCache._attributes_of`).
_ATTRIBUTES_KEPT = 8
_K = TypeVar("_K")
_V = TypeVar("_V")
# How many merges of two commits a cache remembers the outcome of (see `RepoCache._merge_tree`).
_MERGES_KEPT = 256
# CI checkouts kept for reuse per repo cache (`RepoCache._ci_checkout`); more CI runs at once use fresh clones.
_CI_SLOTS = 16
# How `git push --delete` names a branch the remote no longer has.
_GONE_BRANCH = re.compile(r"unable to delete '([^']+)': remote ref does not exist")
# Fetches between two runs of git's housekeeping in a cache (`git maintenance run --auto`: packs loose objects
# and small packs once there are enough of them; a no-op otherwise).
_MAINTAIN_EVERY = 20

_CACHE_SETTINGS = (
    # Reflogs are off by default in bare repos; keep them for tracing what Optio did to the refs.
    ("core.logAllRefUpdates", "true"),
    # Tasks fetch, import and push concurrently; wait for ref locks.
    ("core.filesRefLockTimeout", "5000"),
    ("core.packedRefsTimeout", "5000"),
)

# Reasons a push can be refused only because someone else moved the ref first.
_RACE_MARKERS = (
    "non-fast-forward",
    "fetch first",
    "stale info",
    "failed to update ref",
    "failed to lock",
    "cannot lock ref",
    "incorrect old value",
)
_LOCK_MARKERS = ("cannot lock ref", "unable to create", "some local refs could not be updated")


@dataclass(frozen=True)
class Mergeability:
    clean: bool
    conflicting_files: list[str]


@dataclass(frozen=True)
class CiResult:
    status: str  # "passing" | "failing"
    exit_code: int | None
    output: str
    duration_s: float


@dataclass(frozen=True)
class _Worktree:
    path: Path
    head: str | None
    branch: str | None  # full ref name, None when detached
    prunable: bool


# What git says when it cannot reach a remote: a path moved away, a refused, dropped or timed-out connection,
# a name that does not resolve, an HTTP error from a proxy. Lower case, matched against git's stderr.
_UNREACHABLE = ("does not appear to be a git repository", "could not read from remote repository",
                "connection refused", "connection timed out", "connection reset", "could not resolve host",
                "failed to connect", "operation timed out", "the remote end hung up unexpectedly", "early eof",
                "returned error: 502", "returned error: 503", "returned error: 504")
# ...unless git also says the remote refused us: a credential to fix, not an outage to wait out.
_REFUSED = ("permission denied", "authentication failed", "returned error: 401", "returned error: 403")
# How soon work waiting for an unreachable remote looks again.
REMOTE_UNREACHABLE_RETRY_S = 5.0


def branch_for_task(task_id: int) -> str:
    """The branch a task works on; one name per task keeps PRs and worktrees one-to-one."""
    return f"optio/{task_id}"


def _locks_for(cache_dir: Path) -> tuple[ProcessLock, ProcessLock]:
    """The cache's lock and its merge lock; they hold across processes too (replicas share a data dir)."""
    base = Path(os.path.realpath(cache_dir))
    return lock_for(base.with_name(base.name + ".lock")), lock_for(base.with_name(base.name + ".merge.lock"))


def _remove_tree(path: Path) -> None:
    """Remove ``path`` whatever it is, never following a link (a run may leave one where a directory was).

    A directory a CI run made unreadable or unwritable (same owner) is given its owner's rights back first."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return

    def retry(func: Callable[..., object], failed: str, _exc: object) -> None:
        for where in (os.path.dirname(failed), failed):
            if not os.path.islink(where):
                with contextlib.suppress(OSError):
                    os.chmod(where, 0o700)
        func(failed)

    shutil.rmtree(path, onerror=retry)


def _normalise_remote(url: str) -> str:
    """Local paths become absolute so worktrees anywhere resolve ``origin`` the same way."""
    if "://" in url:
        return url
    head = url.split("/", 1)[0]
    if ":" in head and not os.path.exists(url):
        return url  # scp-like user@host:path
    return str(Path(url).expanduser().resolve())


def _clone_branch(path: Path) -> str | None:
    """The branch a clone has checked out, read from ``.git/HEAD`` as data (None when detached)."""
    try:
        head = (path / ".git" / "HEAD").read_text(errors="replace").strip()
    except OSError:
        return None
    return head.removeprefix("ref:").strip() if head.startswith("ref:") else None


def _unborn_head(path: Path) -> bool:
    """Whether a clone's HEAD names a branch with no commit yet (read as data: no git runs in the clone)."""
    branch = _clone_branch(path)
    if branch is None:
        return False
    dotgit = path / ".git"
    try:
        packed = (dotgit / "packed-refs").read_text(errors="replace")
    except OSError:
        packed = ""
    return not (dotgit / branch).is_file() and not any(line.endswith(" " + branch) for line in packed.splitlines())


def _same_path(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


class UnsafeRemoteError(GitError):
    """The remote's address is one Optio must not contact (checked before every fetch and push)."""


class RepoCache:
    """A local cache of one remote repository that hands out standalone clones to tasks.

    ``credential`` returns the repo's credential (a password or token) when a
    remote operation needs it, read fresh each time so a rotated secret applies
    at once; ``allowlist`` and ``resolver`` feed the SSRF guard run before each
    fetch and push.
    """

    def __init__(
        self,
        remote_url: str,
        cache_dir: Path,
        *,
        credential: Callable[[], str | None] | None = None,
        username: Callable[[], str | None] | None = None,
        allowlist: Sequence[str] | Allowlist = (),
        resolver: Resolver = socket.getaddrinfo,
    ) -> None:
        self.remote_url = _normalise_remote(remote_url)
        self.cache_dir = Path(cache_dir).absolute()
        self._credential = credential
        self._username = username
        self._allowlist = Allowlist.parse(allowlist)
        self._resolver = resolver
        self._lock, self._merge_lock = _locks_for(self.cache_dir)
        self._ready = False
        # When the last successful fetch by this object started (monotonic): see `fetch`.
        self._fetch_started: float | None = None
        self.fetch_count = 0  # fetches made, for tests and benchmarks
        # The attributes file of a base commit (see `_attributes_of`), for the last few bases asked about.
        self._attributes: dict[str, str] = {}
        self._memo_lock = threading.Lock()  # guards both memos (see `_keep`)
        # (base, head) -> (merge-tree's exit code, its output), for the last few merges (see `_merge_tree`).
        self._merged: dict[tuple[str, str], tuple[int, str]] = {}

    # -- cache lifecycle -------------------------------------------------

    def ensure(self) -> None:
        """Create the cache on first use; later calls only check the remote URL.

        A readiness flag is written to the cache's config after the first fetch,
        so a cache left half-made by a crash is recognised and rebuilt.
        """
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            if self._is_ready_cache():
                self._restore_config()
                self._ready = True
                return
            self._discard_half_made_cache()
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            run_git(["init", "--bare", "--quiet", str(self.cache_dir)], cwd=self.cache_dir)
            for key, value in _CACHE_SETTINGS:
                self._git(["config", key, value])
            self._git(["remote", "add", "origin", self.remote_url])
            self._fetch_unlocked()
            self._git(["config", "--bool", _READY_KEY, "true"])
            self._ready = True

    def _restore_config(self) -> None:
        """Rewrite the cache's config to exactly what Optio puts there and drop hooks and attributes.

        A cache made before task clones shared its config, hooks, ``info/``
        and object store with every agent's worktree, so anything could have
        been planted there (filters, ``url.*.insteadOf``, ``include.path``,
        alternates borrowing another repository's objects).
        Only the object format is kept from the old file, read as data.
        """
        old = self.cache_dir / "config"
        fmt = run_git(["config", "--file", str(old), "--get", "extensions.objectformat"], cwd=self.cache_dir,
                      check=False).stdout.strip()
        fresh = self.cache_dir / "config.optio-new"
        fresh.unlink(missing_ok=True)
        settings = [
            ("core.repositoryformatversion", "1" if fmt else "0"),
            ("core.filemode", "true"),
            ("core.bare", "true"),
            *_CACHE_SETTINGS,
            ("remote.origin.url", self.remote_url),
            ("remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"),
            (_READY_KEY, "true"),
        ]
        if fmt:
            settings.append(("extensions.objectformat", fmt))
        for key, value in settings:
            run_git(["config", "--file", str(fresh), key, value], cwd=self.cache_dir)
        os.replace(fresh, old)
        shutil.rmtree(self.cache_dir / "hooks", ignore_errors=True)
        for planted in ("info/attributes", "info/exclude", "objects/info/alternates", "objects/info/http-alternates"):
            (self.cache_dir / planted).unlink(missing_ok=True)

    def _is_ready_cache(self) -> bool:
        if not (self.cache_dir / "HEAD").is_file():
            return False
        proc = self._git(["config", "--bool", _READY_KEY], check=False)
        return proc.returncode == 0 and proc.stdout.strip() == "true"

    def _discard_half_made_cache(self) -> None:
        name_reader.forget(self.cache_dir)
        if not self.cache_dir.exists():
            return
        looks_like_git = (self.cache_dir / "HEAD").is_file() and (self.cache_dir / "objects").is_dir()
        if looks_like_git or not any(self.cache_dir.iterdir()):
            shutil.rmtree(self.cache_dir)
            return
        raise GitError(
            [],
            None,
            "",
            message=f"{self.cache_dir} exists and is not an Optio repo cache; refusing to use it",
        )

    def fetch(self, *, max_age_s: float = 0.0) -> None:
        """Bring every ``origin/<branch>`` up to date, dropping branches deleted on the remote.

        Whatever was pushed to the remote before this call is seen after it. A fetch of this cache that
        *started* after the call was made already guarantees that, so callers arriving while one fetch runs
        wait for it and share the next one instead of each fetching in turn (one fetch serves a burst of
        tasks). ``max_age_s`` accepts a fetch started at most that long ago too: for advisory reads (the
        mergeability of open PRs) where a push only seconds old may be seen on the next refresh.
        """
        asked = time.monotonic()
        self.ensure()
        if self._fetched_since(asked - max_age_s):
            return
        with self._lock:
            if self._fetched_since(asked - max_age_s):
                return
            self._fetch_unlocked()

    def _fetched_since(self, moment: float) -> bool:
        """Did a fetch of this cache that started at or after ``moment`` (monotonic) succeed?"""
        started = self._fetch_started
        return started is not None and started >= moment

    def _fetch_unlocked(self) -> None:
        # Another RepoCache object for the same cache directory in another process may fetch at the same
        # moment; both update the same refs, so a lost ref-lock race is retried.
        started = time.monotonic()
        for attempt in range(_FETCH_ATTEMPTS):
            # Git's own after-fetch housekeeping (`git maintenance run --auto`, one process more per fetch) is
            # left to every _MAINTAIN_EVERY-th fetch: a cache fetches for nearly every step of every task.
            proc = self._remote_git(["fetch", "--prune", "--quiet", "origin"], timeout=_FETCH_TIMEOUT_S, check=False,
                                    config=("-c", "maintenance.auto=false"))
            if proc.returncode == 0:
                self._fetch_started = max(started, self._fetch_started or started)
                self.fetch_count += 1
                if self.fetch_count % _MAINTAIN_EVERY == 0:
                    self._git(["maintenance", "run", "--auto", "--quiet"], check=False)
                return
            lost_race = any(m in proc.stderr.lower() for m in _LOCK_MARKERS)
            if not lost_race or attempt == _FETCH_ATTEMPTS - 1:
                raise GitError(["fetch", "--prune", "--quiet", "origin"], proc.returncode, proc.stderr)
            time.sleep(0.2 * (attempt + 1))

    def resolve(self, ref: str) -> str:
        self.ensure()
        return self._resolve(self._qualify(ref))

    # -- worktrees ---------------------------------------------------------

    def add_worktree(self, path: Path, branch: str, base_ref: str) -> str:
        """Give a task its own clone on ``branch``; returns the sha the work is based on.

        The clone shares the cache's objects read-only (``objects/info/alternates``)
        and nothing else. A branch that already exists on the remote (a task
        resumed after a restart) is checked out at the remote tip, and its base is
        the merge-base with ``base_ref``. An existing clone of the same branch at
        ``path`` is reused as it is, uncommitted edits included.
        """
        self.ensure()
        path = Path(path).absolute()
        asked = time.monotonic()
        with self._lock:
            if not self._fetched_since(asked):  # one fetch serves the tasks that waited for it together
                self._fetch_unlocked()
            base_sha = self._resolve(self._qualify(base_ref))
            remote_tip = self._try_resolve(f"refs/remotes/origin/{branch}")
            if self._is_our_clone(path) and _unborn_head(path) and _clone_branch(path) != f"refs/heads/{branch}":
                # A clone a killed server left half-made (its `git init` done, its checkout not): never worked in.
                shutil.rmtree(path)
            if self._is_our_clone(path):
                current = _clone_branch(path)
                if current != f"refs/heads/{branch}":
                    raise GitError(
                        [], None, "", message=f"{path} is already a worktree of {current or 'a detached HEAD'}"
                    )
                self._remember_clone(path)
                return self._merge_base(base_sha, self.head_sha(path), clone=path)
            if self._adopt_legacy_worktree(path):
                return self.add_worktree(path, branch, base_ref)
            if path.is_dir() and not path.is_symlink() and self._clone_record(path).exists():
                # A clone of ours whose removal a killed server cut short (the record goes last): finish it.
                shutil.rmtree(path, ignore_errors=True)
            if path.exists():
                if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
                    path.rmdir()
                else:
                    raise GitError([], None, "", message=f"{path} exists and is not a worktree of {branch}")
            start = remote_tip or base_sha
        # The clone is made after the cache's lock is let go: it only reads the cache (objects through
        # alternates, refs by `for-each-ref`), which git lets readers do while a fetch writes, and the lock
        # is every other task's provisioning and every fetch of the repo. Under it, the clone took about
        # half of the lock's time in a loop of many tasks. Only this task's reconcile makes its clone.
        self._clone(path, start, branch)
        return self._merge_base(base_sha, start) if remote_tip else base_sha

    def _clone(self, path: Path, start: str, branch: str | None) -> None:
        """A standalone repository at ``path`` on ``start``, borrowing the cache's objects.

        Made with ``git init`` (no templates, so no sample hooks) plus an
        alternates file in git's standard format and the cache's
        remote-tracking refs; no object is copied.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        # Made beside its place and moved in by one rename: a server killed half-way leaves a staging directory
        # (removed by the next try), never a half-made clone at `path` that no later try would recognise.
        for stale in path.parent.glob(f".{path.name}.optio-new-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = path.parent / f".{path.name}.optio-new-{uuid.uuid4().hex[:12]}"
        try:
            self._init_clone(staging)
            if branch is None:
                run_git(["checkout", "--quiet", "--detach", start], cwd=staging)
            else:
                run_git(["checkout", "--quiet", "-B", branch, start], cwd=staging)
            os.rename(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if branch is not None:
            self._remember_clone(path)

    def _init_clone(self, path: Path) -> None:
        run_git(["init", "--quiet", str(path)], cwd=path.parent)
        alternates = path / ".git" / "objects" / "info" / "alternates"
        alternates.parent.mkdir(parents=True, exist_ok=True)
        alternates.write_text(f"{self.cache_dir / 'objects'}\n")
        # Appended as text (one process less per key): the file is the one `git init` just wrote.
        with (path / ".git" / "config").open("a") as config:
            config.write(
                '[remote "origin"]\n\turl = .\n\tfetch = +refs/remotes/origin/*:refs/remotes/origin/*\n'
                f"\tpushurl = {_NO_PUSH_URL}\n"
            )
        self._copy_tracking_refs(path, fresh=True)

    def _adopt_legacy_worktree(self, path: Path) -> bool:
        """Turn a ``git worktree`` of the cache (made before task clones) into a task clone, edits kept.

        Such a worktree shares the cache's config and hooks; a task that was
        running across the upgrade keeps its branch, HEAD and working files.
        """
        dotgit = Path(path).absolute() / ".git"
        if dotgit.is_symlink() or not dotgit.is_file():
            return False
        with self._lock:
            entry = self._worktree_at(path)
            if entry is None or entry.prunable or entry.head is None:
                return False
            admin = Path(dotgit.read_text(errors="replace").strip().removeprefix("gitdir:").strip())
            dotgit.unlink()
            self._init_clone(Path(path).absolute())
            dotgit_dir = Path(path).absolute() / ".git"
            if entry.branch:
                run_git(["--git-dir", str(dotgit_dir), "update-ref", entry.branch, entry.head], cwd=path)
                run_git(["--git-dir", str(dotgit_dir), "symbolic-ref", "HEAD", entry.branch], cwd=path)
            else:
                run_git(["--git-dir", str(dotgit_dir), "update-ref", "--no-deref", "HEAD", entry.head], cwd=path)
            run_git(["--git-dir", str(dotgit_dir), "read-tree", entry.head], cwd=path)
            if os.path.realpath(admin).startswith(os.path.realpath(self.cache_dir / "worktrees") + os.sep):
                shutil.rmtree(admin, ignore_errors=True)
            self._git(["worktree", "prune"], check=False)
            if entry.branch:
                self._git(["branch", "-D", entry.branch.removeprefix("refs/heads/")], check=False)
                self._remember_clone(Path(path).absolute())
            log.info("worktree.adopted_as_clone", path=str(path))
            return True

    def sync_clone(self, clone: Path) -> None:
        """Give the clone the cache's current ``origin/*`` refs (before an agent starts or resumes in it).

        Written with ``update-ref``, never a fetch: a fetch in the clone would
        read remote settings (``uploadpack``, ``url``) from a config the agent
        may have rewritten. The objects are already there, through alternates.
        """
        clone = Path(clone).absolute()
        self._adopt_legacy_worktree(clone)
        if not self._is_our_clone(clone):
            return
        self._copy_tracking_refs(clone)

    def _copy_tracking_refs(self, clone: Path, *, fresh: bool = False) -> None:
        """``fresh``: the clone is one ``git init`` just made, with no refs of its own yet, so the refs are
        written as its packed-refs file (what ``git pack-refs`` would write, with no traits) instead of by a
        ``git update-ref`` process."""
        listed = self._git(["for-each-ref", "--format=%(objectname) %(refname)", "refs/remotes/origin/"]).stdout
        refs = [(sha, ref) for sha, _, ref in (line.partition(" ") for line in listed.splitlines()) if ref]
        if not refs:
            return
        dotgit = self._objects_of(clone).parent
        if fresh:
            (dotgit / "packed-refs").write_text("".join(f"{sha} {ref}\n" for sha, ref in refs))
            return
        updates = "".join(f"update {ref} {sha}\n" for sha, ref in refs)
        run_git(["--git-dir", str(dotgit), "update-ref", "--stdin"], cwd=clone, input=updates)

    def remove_worktree(self, path: Path) -> None:
        """Throw a task's clone away; missing paths are fine.

        The caller pushes anything worth keeping first: the branch on the
        remote is what survives a task, not the local checkout.
        """
        self.ensure()
        path = Path(path).absolute()
        with self._lock:
            clone = self._is_our_clone(path)
            if clone or (self._clone_record(path).exists() and not path.is_symlink()):
                shutil.rmtree(path, ignore_errors=True)
            self._forget_clone(path)
            if clone:
                return  # a task clone is no worktree of the cache: nothing of it is left in the cache to prune
            entry = self._worktree_at(path)
            if entry is not None and not entry.prunable:
                proc = self._git(["worktree", "remove", "--force", "--force", str(entry.path)], check=False)
                if proc.returncode != 0:
                    # e.g. worktrees holding submodules cannot be removed by git itself
                    shutil.rmtree(entry.path, ignore_errors=True)
            elif entry is None and self._is_our_stray_worktree(path):
                shutil.rmtree(path, ignore_errors=True)
            self._git(["worktree", "prune"])
            if entry is not None and entry.branch:
                still_used = any(w.branch == entry.branch for w in self._worktrees())
                if not still_used:
                    self._git(["branch", "-D", entry.branch.removeprefix("refs/heads/")], check=False)

    # -- task clones -----------------------------------------------------------

    def _is_our_clone(self, path: Path) -> bool:
        """A real directory whose ``.git`` is a real directory borrowing this cache's objects."""
        dotgit = path / ".git"
        if path.is_symlink() or dotgit.is_symlink() or not dotgit.is_dir():
            return False
        try:
            lines = (dotgit / "objects" / "info" / "alternates").read_text(errors="replace").splitlines()
        except OSError:
            return False
        ours = os.path.realpath(self.cache_dir / "objects")
        return any(os.path.realpath(line.strip()) == ours for line in lines if line.strip())

    def _clone_record(self, path: Path) -> Path:
        digest = hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:32]
        return self.cache_dir / _CLONES_DIR / digest

    def _remember_clone(self, path: Path) -> None:
        record = self._clone_record(path)
        record.parent.mkdir(exist_ok=True)
        record.write_text(str(Path(path).absolute()))

    def _forget_clone(self, path: Path) -> None:
        self._clone_record(path).unlink(missing_ok=True)

    def _clones(self) -> list[Path]:
        folder = self.cache_dir / _CLONES_DIR
        if not folder.is_dir():
            return []
        found = []
        for record in sorted(folder.iterdir()):
            path = Path(record.read_text())
            if self._is_our_clone(path):
                found.append(path)
        return found

    def _objects_of(self, clone: Path) -> Path:
        """The clone's own object directory, after checking the agent did not rewire its ``.git``.

        Refused: a ``.git`` swapped for a link or file, a ``commondir`` (which
        would make Optio's ref writes land in another repository), and
        alternates naming anything but this cache (git follows alternates of
        alternates, so Optio would read, and could push, objects of any
        repository on the host).
        """
        dotgit = Path(clone) / ".git"
        if dotgit.is_symlink() or not dotgit.is_dir() or (dotgit / "commondir").exists():
            raise GitError([], None, "", message=f"{clone} is not a task clone (its .git was rewired)")
        objects = dotgit / "objects"
        ours = os.path.realpath(self.cache_dir / "objects")
        try:
            lines = (objects / "info" / "alternates").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            entry = line.strip()
            if entry and not entry.startswith("#") and os.path.realpath(objects / entry) != ours:
                raise GitError([], None, "", message=f"{clone} borrows objects from outside its repo cache")
        return objects

    def _with_clone(self, clone: Path) -> dict[str, str]:
        """Environment for a command in the cache that must also see the clone's objects (read-only)."""
        return {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(self._objects_of(clone))}

    @contextlib.contextmanager
    def _scratch_index(self, clone: Path, head: str) -> Iterator[dict[str, str]]:
        """A throwaway index of ``head`` for looking at the clone's files through the cache's repository.

        The cache's config (Optio's own) applies, not the clone's: no filter,
        fsmonitor or hook the agent configured can run. The clone's own index
        lends only its stat data (``read-tree -m`` keeps it for entries that
        match ``head``), so a large tree is not re-hashed on every commit.
        """
        with tempfile.TemporaryDirectory(prefix="optio-index-") as tmp:
            index = Path(tmp) / "index"
            env = {**self._with_clone(clone), "GIT_INDEX_FILE": str(index)}
            own = self._objects_of(clone).parent / "index"
            seeded = False
            if own.is_file() and not own.is_symlink():
                shutil.copyfile(own, index)
                seeded = self._cache_git(["read-tree", "-m", head], clone=clone, env=env, check=False).returncode == 0
                # The lent stat data is only as fresh as the index it came from: keep that index's mtime, so
                # git's racy-entry check still re-reads a file rewritten (same size) in that index's second.
                if seeded:
                    stat = own.stat()
                    os.utime(index, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            if not seeded:
                index.unlink(missing_ok=True)
                self._cache_git(["read-tree", head], clone=clone, env=env)
            yield env

    def _cache_git(
        self, args: list[str], *, clone: Path, env: dict[str, str], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = ["--git-dir", str(self.cache_dir), "--work-tree", str(Path(clone).absolute()), *args]
        return run_git(argv, cwd=clone, env=env, check=check)

    def _import(self, clone: Path, sha: str) -> None:
        """Copy the objects of ``sha`` the cache lacks from the clone's object directory into the cache.

        Reads the clone's objects as data (git's own ``pack-objects``); runs
        nothing inside the clone, so its config and hooks never matter.
        """
        if self._git(["rev-list", "--quiet", "--objects", sha, "--not", "--all"], check=False).returncode == 0:
            return
        tips = self._git(["for-each-ref", "--format=%(objectname)"]).stdout.split()
        revs = "".join([f"{sha}\n", *(f"^{t}\n" for t in dict.fromkeys(tips))])
        run_git(
            ["pack-objects", "--revs", "--quiet", str(self.cache_dir / "objects" / "pack" / "pack")],
            cwd=self.cache_dir,
            env=self._with_clone(clone),
            input=revs,
        )

    def _is_our_stray_worktree(self, path: Path) -> bool:
        """A directory whose ``.git`` file points into this cache but that git no longer lists."""
        dotgit = path / ".git"
        if not dotgit.is_file():
            return False
        text = dotgit.read_text(errors="replace").strip()
        gitdir = text.removeprefix("gitdir:").strip()
        worktrees_dir = os.path.realpath(self.cache_dir / "worktrees")
        return os.path.realpath(gitdir).startswith(worktrees_dir + os.sep)

    def list_worktrees(self) -> list[Path]:
        """Task and review clones (and any ``git worktree`` left from before clones) of this cache."""
        self.ensure()
        with self._lock:
            return self._clones() + [w.path for w in self._worktrees() if not w.prunable]

    def _worktrees(self) -> list[_Worktree]:
        out = self._git(["worktree", "list", "--porcelain", "-z"]).stdout
        result: list[_Worktree] = []
        for block in out.split("\0\0"):
            fields = [f for f in block.split("\0") if f]
            if not fields or not fields[0].startswith("worktree "):
                continue
            attrs: dict[str, str] = {}
            for field in fields:
                key, _, value = field.partition(" ")
                attrs[key] = value
            if "bare" in attrs:
                continue
            result.append(
                _Worktree(
                    path=Path(attrs["worktree"]),
                    head=attrs.get("HEAD"),
                    branch=attrs.get("branch"),
                    prunable="prunable" in attrs,
                )
            )
        return result

    def _worktree_at(self, path: Path) -> _Worktree | None:
        for w in self._worktrees():
            if _same_path(w.path, path):
                return w
        return None

    # -- inside a task's clone ---------------------------------------------------

    def has_changes(self, worktree: Path) -> bool:
        # Plumbing, not `status`: the repository's HEAD here is the cache's, and the clone's HEAD is what counts.
        with self._scratch_index(worktree, self.head_sha(worktree)) as env:
            self._cache_git(["update-index", "-q", "--refresh"], clone=worktree, env=env, check=False)
            if self._cache_git(["diff-files", "--quiet"], clone=worktree, env=env, check=False).returncode != 0:
                return True
            untracked = self._cache_git(["ls-files", "--others", "--exclude-standard", "-z"], clone=worktree, env=env)
        return bool(untracked.stdout.strip("\0"))

    def commit_all(self, worktree: Path, message: str) -> str | None:
        """Commit whatever the agent left behind; None when there is nothing.

        The commit is built against the cache's repository (the clone's files
        as work tree, a throwaway index), so nothing the agent configured in
        its ``.git`` runs; the clone's HEAD and index are then moved to it, as
        if the agent had committed itself. No hooks: this commit only preserves
        the agent's work, and the repo's CI is the gate that judges it.
        """
        head = self.head_sha(worktree)
        with self._scratch_index(worktree, head) as env:
            self._cache_git(["add", "-A"], clone=worktree, env=env)
            tree = self._cache_git(["write-tree"], clone=worktree, env=env).stdout.strip()
            head_tree = self._cache_git(["rev-parse", f"{head}^{{tree}}"], clone=worktree, env=env).stdout.strip()
            if tree == head_tree:
                return None
            sha = self._cache_git(["commit-tree", tree, "-p", head, "-m", message], clone=worktree, env=env)
            sha_text = sha.stdout.strip()
            dotgit = self._objects_of(worktree).parent
            # The new commit lives in the cache, which the clone borrows from: its HEAD can point at it.
            run_git(["--git-dir", str(dotgit), "update-ref", "-m", "optio: commit the agent's work", "HEAD",
                     sha_text, head], cwd=worktree)
            staged = Path(env["GIT_INDEX_FILE"])
            target = dotgit / "index"
            shutil.copyfile(staged, target.with_name("index.optio"))
            os.replace(target.with_name("index.optio"), target)
        return sha_text

    def head_sha(self, worktree: Path) -> str:
        self._adopt_legacy_worktree(worktree)
        dotgit = self._objects_of(worktree).parent
        return run_git(["--git-dir", str(dotgit), "rev-parse", "--verify", "HEAD^{commit}"],
                       cwd=worktree).stdout.strip()

    def commits_ahead(self, worktree: Path, base_ref: str, *, head: str | None = None) -> int:
        """Commits of the clone's HEAD (or of ``head``, when the caller just read it) not on ``base_ref``."""
        head = head or self.head_sha(worktree)
        out = self._cache_git(["rev-list", "--count", f"{self._qualify(base_ref)}..{head}"], clone=worktree,
                              env=self._with_clone(worktree)).stdout
        return int(out.strip())

    def push_branch(self, worktree: Path, branch: str, *, head: str | None = None) -> str:
        """Publish the clone's HEAD as ``branch`` on the remote; returns the pushed sha.

        Pushed from the cache (the clone has neither the remote's URL nor its
        credential), and only to a task branch. Forced, because the agent may
        have rebased, but only over a commit Optio itself pushed there or one
        the new head includes, and leased against the tip Optio saw, so a
        commit someone else pushed to the branch is never silently thrown away.
        """
        if not _TASK_BRANCH.fullmatch(branch):
            raise GitError([], None, "", message=f"Optio pushes only task branches (optio/<id>), not {branch!r}")
        sha = head or self.head_sha(worktree)
        self._import(worktree, sha)
        tip = self._try_resolve(f"refs/remotes/origin/{branch}")
        ours = self._try_resolve(f"{_PUSHED_PREFIX}{branch}")
        if tip is not None and tip not in (sha, ours) and not self._is_ancestor(tip, sha):
            raise GitError(
                ["push", "origin", f"{sha}:refs/heads/{branch}"],
                1,
                "",
                message=f"refusing to push {branch}: the remote has {tip[:10]}, which Optio did not push and "
                f"{sha[:10]} does not include",
            )
        self._remote_git(
            [
                "push",
                "--quiet",
                "--no-verify",
                f"--force-with-lease=refs/heads/{branch}:{tip or ''}",
                "origin",
                f"{sha}:refs/heads/{branch}",
            ]
        )
        self._git(["update-ref", f"{_PUSHED_PREFIX}{branch}", sha])
        return sha

    # -- review-time operations on the cache ---------------------------------

    def mergeability(self, base_ref: str, head_sha: str, *, fetch: bool = True) -> Mergeability:
        """Would ``head_sha`` merge cleanly onto the current remote base, as the agent's rebase would see it?

        ``git merge-tree`` in a bare repository reads no ``.gitattributes`` from any tree, so a file marked
        ``merge=union`` (or ``binary``, ``-merge``) would be merged as plain text and show a conflict that a
        rebase in a checkout never meets. The base tree's ``.gitattributes`` files are therefore handed to
        git as the attributes file of this one command (:func:`_attributes_of`), and git's built-in drivers
        (``text``, ``union``, ``binary``) apply as in a checkout of the base. A custom driver name
        (``merge=foo``) runs nothing: Optio's git never runs a command a repository defines, and git merges
        a file whose driver is not configured with the default text merge, which is what Optio reports.
        Touches no worktree. ``fetch=False`` uses the cache as it is (the caller fetched for several PRs at once).
        """
        if fetch:
            self.fetch()
        # A full sha the cache has needs no lookup first; one it lacks makes merge-tree fail, and is fetched.
        head = head_sha if _FULL_SHA.fullmatch(head_sha) else self._ensure_commit(head_sha)
        base = self._qualify(base_ref)
        proc = self._merge_tree(base, head)
        if proc.returncode not in (0, 1) and head == head_sha:
            head = self._ensure_commit(head_sha)
            proc = self._merge_tree(base, head)
        args = proc.args
        if proc.returncode == 0:
            return Mergeability(clean=True, conflicting_files=[])
        if proc.returncode != 1:
            raise GitError(args, proc.returncode, proc.stderr)
        names = [n for n in proc.stdout.split("\0")[1:] if n]
        return Mergeability(clean=False, conflicting_files=list(dict.fromkeys(names)))

    def _merge_tree(self, base: str, head: str) -> subprocess.CompletedProcess[str]:
        """``git merge-tree`` of ``head`` onto ``base``. The merge of two commits never changes, and the loop
        asks for the same one several times (the PR's mergeability, CI's test merge, the squash), so the
        outcome (a tree, or the conflicting files) of the last few merges of two full shas is kept."""
        args = ["merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", base, head]
        pair = (base, head) if _FULL_SHA.fullmatch(base) and _FULL_SHA.fullmatch(head) else None
        if pair is not None and (known := self._merged.get(pair)) is not None:
            return subprocess.CompletedProcess(args, known[0], known[1], "")
        attributes = self._attributes_file(self._attributes_of(base))
        proc = run_git(args, cwd=self.cache_dir, config=("-c", f"core.attributesFile={attributes}"), check=False)
        proc.args = args
        if pair is not None and proc.returncode in (0, 1):  # clean or conflicting; anything else is no answer
            self._keep(self._merged, pair, (proc.returncode, proc.stdout), _MERGES_KEPT)
        return proc

    def _keep(self, memo: dict[_K, _V], key: _K, value: _V, kept: int) -> None:
        """Remember `value` in one of the cache's memos, forgetting its oldest entries beyond `kept`."""
        with self._memo_lock:
            while len(memo) >= kept:
                del memo[next(iter(memo))]
            memo[key] = value

    def _attributes_file(self, text: str) -> str:
        """A file holding ``text``, for ``core.attributesFile``: named for its content, so it is written once and
        never changes under a running merge; most repositories have none, and read the empty device."""
        if not text:
            return os.devnull
        folder = self.cache_dir / _ATTRIBUTES_DIR
        path = folder / hashlib.sha256(text.encode()).hexdigest()[:32]
        if not path.is_file():
            folder.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.replace(tmp, path)
        return str(path)

    def _attributes_of(self, tree_ish: str) -> str:
        """Every ``.gitattributes`` of ``tree_ish`` as one attributes file whose patterns are relative to the root.

        Files come shallowest first, so a deeper file's lines win over its parents', as git's own precedence
        has it (later lines win; a deeper directory overrides its parents). Kept for the last few base commits:
        after a merge every open PR is checked against the same new base.
        """
        commit = _FULL_SHA.fullmatch(tree_ish) is not None  # a commit's files never change; a ref's do
        if commit and (known := self._attributes.get(tree_ish)) is not None:
            return known
        text = self._read_attributes(tree_ish)
        if commit:
            self._keep(self._attributes, tree_ish, text, _ATTRIBUTES_KEPT)
        return text

    def _read_attributes(self, tree_ish: str) -> str:
        listing = self._git(["ls-tree", "-r", "-z", "--full-tree", tree_ish], check=False)
        if listing.returncode != 0:
            return ""
        found: list[tuple[str, str]] = []
        for entry in listing.stdout.split("\0"):
            meta, _, path = entry.partition("\t")
            parts = meta.split()
            # Regular files only: git does not follow a .gitattributes that is a symbolic link.
            if len(parts) == 3 and parts[0] in ("100644", "100755") and (path == ".gitattributes"
                                                                          or path.endswith("/.gitattributes")):
                found.append((path, parts[2]))
        found.sort(key=lambda item: (item[0].count("/"), item[0]))
        chunks = []
        for path, blob in found:
            text = self._git(["cat-file", "blob", blob], check=False).stdout
            chunks.append(_rebase_attributes(text, path.rpartition("/")[0]))
        return "".join(chunks)

    def run_ci(
        self,
        head_sha: str,
        command: str,
        *,
        work_root: Path,
        timeout_s: float = 1800,
        env: dict[str, str] | None = None,
        inherit_env: bool = True,
        sandbox: Sandbox | None = None,
        tag: str | None = None,
        stop: threading.Event | None = None,
    ) -> CiResult:
        """Run the repo's CI command on a clean checkout of ``head_sha``.

        Never the agent's worktree: untracked or ignored leftovers there must not
        make CI pass. The command runs in its own process group so a timeout can
        take down everything it started. With ``inherit_env=False`` the command sees
        exactly ``env``: CI is the repo's code and must not read the server's secrets.
        With a ``sandbox`` it sees only its checkout and a fresh ``HOME`` of the host's
        files besides the system; without ``HOME`` in ``env`` it gets that fresh one too.
        Everything it starts carries ``tag`` (a fresh one if None) as ``OPTIO_PROCESS_TAG``:
        what left the group is ended with it, and a restarted server finds what a killed
        one left running by that tag. Once ``stop`` is set (`end_running_commands`) the command is
        ended and `CommandInterrupted` raised: its exit is no CI result.
        """
        self.ensure()
        sha = self._ensure_commit(head_sha)
        work_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="ci-", dir=work_root))
        log_path = scratch / "output.log"
        home = scratch / "home"
        tag = tag or f"ci-{uuid.uuid4().hex}"
        try:
            with self._ci_checkout(sha, scratch, tag) as checkout:
                home.mkdir(mode=0o700)
                run_env = scrubbed_env(env) if inherit_env else dict(env or {})
                run_env.setdefault("HOME", str(home))
                started = time.monotonic()
                exit_code = _run_in_group(
                    ["sh", "-c", command],
                    cwd=checkout,
                    log_path=log_path,
                    timeout_s=timeout_s,
                    env=run_env,
                    sandbox=sandbox,
                    mounts=Mounts(writable=(checkout, home)),
                    tag=tag,
                    stop=stop,
                )
                duration = time.monotonic() - started
            suffix = ""
            if exit_code is None:
                suffix = f"\noptio: CI command timed out after {timeout_s:g}s; its process group was killed\n"
            output = _read_tail(log_path, CI_OUTPUT_CAP_BYTES - len(suffix.encode())) + suffix
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        status = "passing" if exit_code == 0 else "failing"
        return CiResult(status=status, exit_code=exit_code, output=output, duration_s=duration)

    @contextlib.contextmanager
    def _ci_checkout(self, sha: str, scratch: Path, tag: str) -> Iterator[Path]:
        """A checkout of exactly ``sha`` for one CI run: a kept one brought to ``sha``, else a fresh clone.

        Brought up to date in place, a checkout rewrites only the files that differ; a fresh clone writes
        every file of the tree, and every one is deleted again after the run. The run before may have changed
        anything in a kept checkout, so Optio's own git brings it back (the cache's repository and config,
        and an index kept outside the checkout, where no run can reach it): every file the index does not
        track is removed, ignored ones included; every tracked file whose stat data changed (its ctime, which
        no process can set back, included) is written again, as the tree moves to ``sha``; the checkout's
        ``.git``, which the run could rewrite, is thrown away and made anew. A kept checkout that cannot be
        brought back so (a directory the run made unwritable, say) is replaced by a fresh clone; when every
        slot is busy or none can be had, the run gets a fresh clone in ``scratch``, removed after it.

        A slot's lock file names the run in it (``tag``, which all its processes carry): a server killed
        mid-run leaves the slot unlocked but its command running, and that slot is passed over until what
        carries the tag has ended.
        """
        taken = self._ci_slot(sha, tag)
        if taken is None:
            checkout = scratch / "checkout"
            try:
                self._clone(checkout, sha, None)
                yield checkout
            finally:
                self._discard_worktree(checkout)
            return
        checkout, lock = taken
        try:
            yield checkout
        finally:
            with contextlib.suppress(OSError):
                lock.path.write_text("")  # the run is over (the same file: no new inode)
            lock.release()

    def _ci_slot(self, sha: str, tag: str) -> tuple[Path, ProcessLock] | None:
        """A free kept CI checkout, at ``sha`` and held for the caller; None when none is free or usable."""
        root = Path(f"{self.cache_dir}.ci")
        for n in range(_CI_SLOTS):
            lock = lock_for(root / f"{n}.lock")
            if not lock.acquire(blocking=False):
                continue
            slot = root / str(n)
            checkout, index = slot / "checkout", slot / "index"
            try:
                previous = lock.path.read_text().strip()
                if previous and process_group.tagged(previous):
                    lock.release()  # the command of a killed server's run still works in it
                    continue
                lock.path.write_text(tag)
                if not self._reset_ci_checkout(checkout, index, sha):
                    _remove_tree(slot)
                    slot.mkdir(parents=True)
                    self._clone(checkout, sha, None)
                    shutil.copyfile(checkout / ".git" / "index", index)
            except (OSError, GitError) as exc:
                lock.release()
                log.warning("ci_checkout.unusable", slot=str(slot), error=str(exc)[-300:])
                continue
            return checkout, lock
        return None

    def _reset_ci_checkout(self, checkout: Path, index: Path, sha: str) -> bool:
        """Bring a kept CI checkout to exactly ``sha`` (see `_ci_checkout`); False: it must be made afresh."""
        if checkout.is_symlink() or not checkout.is_dir() or index.is_symlink() or not index.is_file():
            return False
        try:
            _remove_tree(checkout / ".git")
            env = {"GIT_INDEX_FILE": str(index)}
            for step in (["clean", "-ffdxq"], ["read-tree", "-u", "--reset", sha]):
                proc = self._cache_git(step, clone=checkout, env=env, check=False)
                if proc.returncode != 0 or proc.stderr.strip():  # e.g. "warning: failed to remove ..."
                    log.info("ci_checkout.renewed", checkout=str(checkout), step=step[0],
                             detail=(proc.stderr or "").strip()[-300:])
                    return False
            staging = checkout.parent / "dotgit-new"
            _remove_tree(staging)
            self._init_clone(staging)
            os.rename(staging / ".git", checkout / ".git")
            staging.rmdir()
            (checkout / ".git" / "HEAD").write_text(f"{sha}\n")  # detached, as a fresh clone's
            shutil.copyfile(index, checkout / ".git" / "index")
        except (OSError, GitError) as exc:
            log.info("ci_checkout.renewed", checkout=str(checkout), detail=str(exc)[-300:])
            return False
        return True

    def test_merge(self, base_sha: str, head_sha: str) -> str:
        """The commit CI runs on: ``head_sha`` merged onto ``base_sha``, like a forge's ``refs/pull/N/merge``.

        Made the way the squash-merge lands a PR (``git merge-tree`` with the base's own ``.gitattributes``
        applying, see :meth:`mergeability`), so its tree is exactly what a squash onto ``base_sha`` would put
        on the base. Nothing is pushed and nothing is checked out; the commit lives only in the cache's
        object store. Raises ``MergeConflictError`` when the head does not merge cleanly onto that base.
        """
        return self.test_merge_many(base_sha, [head_sha])

    def test_merge_many(self, base_sha: str, head_shas: Sequence[str]) -> str:
        """Each head merged in order onto ``base_sha``: what a merge-queue batch lands.

        The same merge as the single test merge, one head after another (each a merge commit of the result so
        far and the head), so the last commit's tree is what landing the whole batch onto ``base_sha`` puts on
        the base. Raises ``BatchConflictError`` (a ``MergeConflictError``) naming the head that does not merge
        onto the ones before it.
        """
        self.ensure()
        base = self._ensure_commit(base_sha)
        current = base
        for head_sha in head_shas:
            try:
                tree, head = self._merged_tree(current, head_sha)
            except MergeConflictError as exc:
                if len(head_shas) == 1:
                    raise
                raise BatchConflictError(exc.git_args, exc.returncode, exc.stderr_tail, exc.conflicting_files,
                                         head_sha=self._try_resolve(head_sha) or head_sha) from None
            current = self._git(["commit-tree", tree, "-p", current, "-p", head, "-m",
                                 f"optio test merge of {head[:12]} onto {base[:12]}"]).stdout.strip()
        return current

    def _merged_tree(self, ours: str, theirs: str) -> tuple[str, str]:
        """(the tree of ``theirs`` merged onto the commit ``ours``, the full sha of ``theirs``), with ``ours``'s
        attributes applying as in a checkout of it; raises ``MergeConflictError`` naming the conflicted files."""
        theirs_sha = theirs if _FULL_SHA.fullmatch(theirs) else self._ensure_commit(theirs)
        proc = self._merge_tree(ours, theirs_sha)
        if proc.returncode not in (0, 1) and theirs_sha == theirs:  # a head the cache lacks yet: fetch it
            theirs_sha = self._ensure_commit(theirs)
            proc = self._merge_tree(ours, theirs_sha)
        fields = proc.stdout.split("\0")
        if proc.returncode == 0:
            return fields[0].strip(), theirs_sha
        args = ["merge-tree", "--write-tree", ours, theirs_sha]
        if proc.returncode == 1:
            names = list(dict.fromkeys(n for n in fields[1:] if n))
            raise MergeConflictError(args, 1, proc.stderr, names)
        raise GitError(args, proc.returncode, proc.stderr)

    def land_tree(self, base_branch: str, base_sha: str, tested_sha: str, message: str, *,
                  trailers: Sequence[tuple[str, str]], landed_if: Mapping[str, str]) -> str:
        """Land exactly the tree of ``tested_sha`` as one commit on ``base_branch``, if it is still at ``base_sha``.

        The commit's parent is ``base_sha`` and its tree the tested one, so what lands is what CI passed on.
        The push is leased against ``base_sha``: if anyone moved the base since CI tested it, nothing lands
        and ``BaseMovedError`` is raised. Idempotent: a commit on the base whose trailers include
        ``landed_if`` (a push that landed before a crash) is returned instead of landing again.
        """
        self.ensure()
        base_branch = base_branch.removeprefix("origin/").removeprefix("refs/heads/")
        with self._merge_lock:
            self.fetch()
            landed = self.find_squash(base_branch, landed_if)
            if landed is not None:
                log.info("land_tree.already_landed", base=base_branch, sha=landed)
                return landed
            tip = self._try_resolve(f"refs/remotes/origin/{base_branch}")
            if tip != base_sha:
                raise BaseMovedError(base_branch, base_sha, tip)
            tree = self._peel(self._ensure_commit(tested_sha), "tree")
            text = message.rstrip() + "\n\n" + "".join(f"{key}: {value}\n" for key, value in trailers)
            new_sha = self._git(["commit-tree", tree, "-p", base_sha, "-F", "-"], input=text).stdout.strip()
            self._push_leased(base_branch, base_sha, new_sha)
            return new_sha

    def _push_leased(self, base_branch: str, base_sha: str, new_sha: str, *, cwd: Path | None = None) -> None:
        """Move the remote ``base_branch`` from ``base_sha`` to ``new_sha``, or raise BaseMovedError if it moved."""
        push = self._remote_git(
            ["push", "--porcelain", "--no-verify", f"--force-with-lease=refs/heads/{base_branch}:{base_sha}",
             "origin", f"{new_sha}:refs/heads/{base_branch}"],
            cwd=cwd, check=False,
        )
        if push.returncode == 0:
            return
        detail = f"{push.stdout}\n{push.stderr}"
        if any(m in detail.lower() for m in _RACE_MARKERS):
            self.fetch()
            raise BaseMovedError(base_branch, base_sha, self._try_resolve(f"refs/remotes/origin/{base_branch}"))
        raise GitError(["push", "origin", f"{new_sha}:refs/heads/{base_branch}"], push.returncode, detail,
                       message=f"pushing the merge to {base_branch} was rejected")

    def squash_merge(
        self,
        base_branch: str,
        head_sha: str,
        message: str,
        *,
        trailers: Mapping[str, str] | None = None,
        onto: str | None = None,
        fetched: bool = False,
    ) -> str:
        """Land ``head_sha`` on the remote ``base_branch`` as one commit; returns the new base sha.

        The push is never forced: if the base moved between our fetch and our
        push, the squash is redone on the fresh base (a bounded number of times).
        With ``onto`` (the base tip CI tested the merge on) it lands only on exactly that tip, leased
        (compare-and-swap on the ref): if the base is elsewhere, or moves before the push, nothing lands
        and ``BaseMovedError`` is raised, because a squash onto another base would be an untested tree.

        With ``trailers`` (e.g. ``Optio-PR: 7``) the squash commit carries them
        and the merge is idempotent: when the base already holds a commit with
        exactly these trailers (a push that landed before a crash), that commit
        is returned instead of squashing again, and a head with nothing new
        still gets its own (empty) commit, so the sha returned is always this
        merge's own, never another merge's. Without trailers, a head with
        nothing new makes no commit and the current base sha is returned.
        ``fetched``: the caller has just fetched (the first attempt uses the cache as it is; with ``onto``
        the leased push still refuses a base that moved since).
        """
        self.ensure()
        base_branch = base_branch.removeprefix("origin/").removeprefix("refs/heads/")
        trailers = dict(trailers or {})
        with self._merge_lock:
            for attempt in range(_MERGE_PUSH_RETRIES + 1):
                if attempt or not fetched:
                    self.fetch()
                if trailers:
                    landed = self.find_squash(base_branch, trailers)
                    if landed is not None:
                        log.info("squash_merge.already_landed", base=base_branch, sha=landed)
                        return landed
                head = self._ensure_commit(head_sha)
                base_sha = self._resolve(f"refs/remotes/origin/{base_branch}")
                if onto is not None and base_sha != onto:
                    raise BaseMovedError(base_branch, onto, base_sha)
                pushed, sha, detail = self._squash_once(base_branch, base_sha, head, message, trailers,
                                                        leased=onto is not None)
                if pushed:
                    return sha
                lost_race = any(m in detail.lower() for m in _RACE_MARKERS)
                if not lost_race or attempt == _MERGE_PUSH_RETRIES:
                    raise GitError(
                        ["push", "origin", f"HEAD:refs/heads/{base_branch}"],
                        1,
                        detail,
                        message=f"pushing the squash-merge to {base_branch} was rejected",
                    )
                log.info("squash_merge.retry", base=base_branch, attempt=attempt + 1)
        raise AssertionError("unreachable")

    def find_squash(self, base_branch: str, trailers: Mapping[str, str]) -> str | None:
        """The commit on the fetched ``base_branch`` whose trailers include all of ``trailers``, if any.

        Git's own trailer parser reads them (``%(trailers)``), so a mention of the same words elsewhere
        in a message never matches; ``--grep`` only narrows the walk to candidates.
        """
        base_branch = base_branch.removeprefix("origin/").removeprefix("refs/heads/")
        ref = f"refs/remotes/origin/{base_branch}"
        if self._try_resolve(ref) is None:
            return None
        key, value = max(trailers.items(), key=lambda kv: len(kv[1]))  # the most telling one narrows best
        proc = self._git(
            ["log", "--fixed-strings", f"--grep={key}: {value}", "--format=%H%x00%(trailers:only,unfold)%x1e", ref],
            check=False,
        )
        if proc.returncode != 0:
            return None
        wanted = {(k.lower(), v) for k, v in trailers.items()}
        for record in proc.stdout.split("\x1e"):
            sha, _, block = record.strip().partition("\0")
            found = set()
            for line in block.splitlines():
                name, sep, val = line.partition(":")
                if sep:
                    found.add((name.strip().lower(), val.strip()))
            if sha and wanted <= found:
                return sha
        return None

    def _squash_once(
        self, base_branch: str, base_sha: str, head: str, message: str,
        trailers: Mapping[str, str] | None = None,
        leased: bool = False,
    ) -> tuple[bool, str, str]:
        """One squash of ``head`` onto ``base_sha`` pushed to the base: the merged tree as a single-parent commit.

        No checkout: the tree is ``git merge-tree``'s, the same merge the test merge CI ran on makes.
        """
        tree, _ = self._merged_tree(base_sha, head)
        if tree == self._peel(base_sha, "tree") and not trailers:
            return True, base_sha, ""
        # As `git commit -m <message> --trailer <k: v>...` writes it (an empty squash still gets its commit).
        text = _stripspace(message)
        if trailers:
            text = _stripspace(self._git(["interpret-trailers", *(f"--trailer={k}: {v}" for k, v in trailers.items())],
                                         input=text).stdout)
        new_sha = self._git(["commit-tree", tree, "-p", base_sha, "-F", "-"], input=text).stdout.strip()
        if leased:
            self._push_leased(base_branch, base_sha, new_sha)
            return True, new_sha, ""
        push = self._remote_git(
            ["push", "--porcelain", "--no-verify", "origin", f"{new_sha}:refs/heads/{base_branch}"], check=False,
        )
        if push.returncode == 0:
            return True, new_sha, ""
        return False, new_sha, f"{push.stdout}\n{push.stderr}"

    def delete_remote_branch(self, branch: str) -> None:
        """Best-effort cleanup of a finished task's branch; failure is only logged."""
        self.delete_remote_branches([branch])

    def delete_remote_branches(self, branches: Sequence[str]) -> None:
        """Best-effort cleanup of finished tasks' branches in one push (a merge-queue batch lands several at
        once); a branch already gone is fine, any other failure is only logged."""
        wanted = []
        for branch in dict.fromkeys(branches):
            if _TASK_BRANCH.fullmatch(branch):
                wanted.append(branch)
            else:
                log.warning("delete_remote_branch.refused", branch=branch)
        if not wanted:
            return
        try:
            self.ensure()
            rest = wanted
            for _ in range(2):
                proc = self._remote_git(["push", "--quiet", "--no-verify", "origin", "--delete", *rest], check=False)
                if proc.returncode == 0:
                    break
                # git sends nothing when one of the branches is gone already: the others are pushed again.
                gone = set(_GONE_BRANCH.findall(proc.stderr))
                rest = [branch for branch in rest if branch not in gone]
                if not gone or not rest:
                    break
            if proc.returncode != 0 and rest:
                log.warning("delete_remote_branch.failed", branches=rest, stderr=proc.stderr.strip()[-500:])
            self._git(["update-ref", "--stdin"], check=False, input="".join(
                f"delete refs/remotes/origin/{branch}\ndelete {_PUSHED_PREFIX}{branch}\n" for branch in wanted))
        except GitError as exc:
            log.warning("delete_remote_branch.failed", branches=wanted, error=str(exc))

    # -- helpers ---------------------------------------------------------------

    def _git(self, args: list[str], *, check: bool = True, input: str | None = None
             ) -> subprocess.CompletedProcess[str]:
        return run_git(args, cwd=self.cache_dir, check=check, input=input)

    def _remote_git(
        self, args: list[str], *, cwd: Path | None = None, check: bool = True, timeout: float = 300,
        config: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """A git command that talks to the remote: the SSRF check, pinned address and credential, every time."""
        # A local remote takes no credential (only the file transport), so none is looked up for it.
        local = is_local_remote(self.remote_url)
        credential = self._credential() if self._credential is not None and not local else None
        try:
            access = remote_access(
                self.remote_url, credential=credential, allowlist=self._allowlist, resolver=self._resolver,
                username=self._username() if self._username is not None and credential else None,
            )
        except UnsafeURLError as exc:
            raise UnsafeRemoteError(args, None, "", message=f"refusing to contact the remote: {exc}") from None
        try:
            proc = run_git(
                args, cwd=cwd or self.cache_dir, config=(*access.config, *config), env=access.env, check=check,
                timeout=timeout,
            )
        except GitError as exc:
            self._busy_if_unreachable(args, exc.returncode, exc.stderr_tail)
            raise
        if proc.returncode != 0:
            self._busy_if_unreachable(args, proc.returncode, proc.stderr)
        return proc

    def _busy_if_unreachable(self, args: list[str], returncode: int | None, stderr: str) -> None:
        """A remote this cache already cloned from that cannot be reached now is a passing outage: ForgeBusy.

        The work waits for the remote (spending none of the run's attempts) instead of failing for the network.
        """
        if not self._is_ready_cache():
            return  # never reached yet: a wrong URL or path is the registration's error, not an outage
        lowered = stderr.lower()
        if any(m in lowered for m in _REFUSED):
            return
        found = "timed out" if returncode is None else next((m for m in _UNREACHABLE if m in lowered), None)
        if found is not None:
            raise ForgeBusy(f"git remote unreachable ({args[0]}: {found})", REMOTE_UNREACHABLE_RETRY_S)

    def _is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return self._git(["merge-base", "--is-ancestor", ancestor, descendant], check=False).returncode == 0

    def _qualify(self, ref: str) -> str:
        """Map a base name like ``main`` or ``origin/main`` to the remote-tracking ref.

        Spelled out in full so a local branch that happens to be called
        ``origin/main`` can never shadow the remote's.
        """
        if ref.startswith("refs/") or _FULL_SHA.fullmatch(ref):
            return ref
        if ref.startswith("origin/"):
            return f"refs/remotes/{ref}"
        if self._try_resolve(f"refs/remotes/origin/{ref}") is not None:
            return f"refs/remotes/origin/{ref}"
        return ref

    def _try_resolve(self, ref: str, kind: str = "commit") -> str | None:
        """The full sha ``ref`` names in the cache, peeled to ``kind``; None when it names nothing.

        Full ref names and shas are answered by the cache's long-lived ``cat-file`` (no process per
        question, see :mod:`optio.forge.name_reader`); anything else by ``git rev-parse``.
        """
        try:
            return name_reader.reader_for(self.cache_dir).peel(ref, kind)
        except name_reader.Unanswerable:
            pass
        proc = self._git(["rev-parse", "--verify", "--quiet", f"{ref}^{{{kind}}}"], check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def _resolve(self, ref: str) -> str:
        return self._peel(ref, "commit")

    def _peel(self, ref: str, kind: str) -> str:
        """As :meth:`_try_resolve`, raising ``GitError`` as ``git rev-parse --verify`` fails when there is none."""
        found = self._try_resolve(ref, kind)
        if found is None:
            raise GitError(["rev-parse", "--verify", f"{ref}^{{{kind}}}"], 128, "fatal: Needed a single revision")
        return found

    def _merge_base(self, a: str, b: str, *, clone: Path | None = None) -> str:
        env = self._with_clone(clone) if clone is not None else None
        proc = run_git(["merge-base", a, b], cwd=self.cache_dir, env=env, check=False)
        return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else a

    def _ensure_commit(self, sha: str) -> str:
        """The full sha of a commit, fetching once if the cache does not have it yet."""
        found = self._try_resolve(sha)
        if found is None:
            self.fetch()
            found = self._try_resolve(sha)
        if found is None:
            raise GitError([], None, "", message=f"commit {sha} is not in {self.remote_url}")
        return found

    def _discard_worktree(self, path: Path) -> None:
        if self._is_our_clone(path):
            shutil.rmtree(path, ignore_errors=True)
            return
        with self._lock:
            if self._worktree_at(path) is not None:
                proc = self._git(["worktree", "remove", "--force", "--force", str(path)], check=False)
                if proc.returncode != 0:
                    shutil.rmtree(path, ignore_errors=True)
            self._git(["worktree", "prune"], check=False)


class BatchConflictError(MergeConflictError):
    """One head of a batch does not merge onto the base with the heads before it merged."""

    def __init__(self, args: Sequence[str], returncode: int | None, stderr: str, conflicting_files: list[str], *,
                 head_sha: str) -> None:
        self.head_sha = head_sha
        super().__init__(args, returncode, stderr, conflicting_files)


class BaseMovedError(GitError):
    """The base branch is no longer at the tip CI tested: landing now would put an untested tree on it."""

    def __init__(self, base_branch: str, expected: str, found: str | None) -> None:
        self.base_branch, self.expected, self.found = base_branch, expected, found
        super().__init__(["push", "origin", f"refs/heads/{base_branch}"], 1, "",
                         message=f"{base_branch} moved from {expected[:10]} to {(found or 'nothing')[:10]} "
                                 "since CI tested the merge; nothing landed")


def _stripspace(text: str) -> str:
    """A commit message cleaned up as ``git commit -m`` does (git's ``stripspace`` without comment stripping):
    trailing whitespace and surrounding blank lines removed, runs of blank lines made one, one final newline."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "".join(f"{line}\n" for line in out)


def _run_in_group(
    argv: list[str],
    *,
    cwd: Path,
    log_path: Path,
    timeout_s: float,
    env: dict[str, str],
    sandbox: Sandbox | None = None,
    mounts: Mounts | None = None,
    tag: str,
    stop: threading.Event | None = None,
) -> int | None:
    """Run argv with output to ``log_path``; returns its exit code, None on timeout; raises `CommandInterrupted`
    once ``stop`` is set (`end_running_commands`).

    Whatever the command left running in its process group, or that carries its
    ``tag`` having left the group (``setsid``), is killed once it ends, so background
    daemons started by a test suite do not outlive CI. In a ``sandbox`` the command
    sees ``mounts`` (default: ``cwd`` read-write); the log stays outside it.
    """
    env = {**env, process_group.TAG_ENV: tag}
    if sandbox is not None:
        argv, env = sandbox.wrap(argv, cwd=cwd, env=env, mounts=mounts)
    if stop is not None and stop.is_set():
        raise CommandInterrupted("the server is stopping")
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with _running_lock:
            _running[proc.pid] = (tag, stop)
        if stop is not None and stop.is_set():  # the stop looked before this command was listed
            _signal_group(proc.pid, signal.SIGKILL)
        try:
            code: int | None = _wait(proc, timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=CI_TERM_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
            code = None
        finally:
            _end_group(proc.pid, tag)
            with _running_lock:
                _running.pop(proc.pid, None)
    if stop is not None and stop.is_set():
        raise CommandInterrupted("the server stopped the command: it is stopping")
    return code


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """``proc.wait(timeout_s)``, woken by the exit itself (a pidfd) where `Popen.wait` polls with sleeps of up
    to 50 ms: a CI run's result, and the merge queue waiting on it, are not held up for nothing."""
    try:
        pidfd = os.pidfd_open(proc.pid)  # not reaped yet: the pid is still this child's
    except (OSError, AttributeError):  # as the runtime's watcher (`_exit_fds`): no pidfd, then polling
        return proc.wait(timeout=timeout_s)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout_s)
            poller.poll(left * 1000)
    finally:
        os.close(pidfd)
    assert proc.returncode is not None
    return proc.returncode


class CommandInterrupted(Exception):
    """The server is stopping and ended the command: its exit is no result (a restarted server runs it again)."""


# The commands `_run_in_group` runs now: process group id -> (tag, the stop that ends it).
_running: dict[int, tuple[str, threading.Event | None]] = {}
_running_lock = threading.Lock()


def end_running_commands(stop: threading.Event, grace_s: float = CI_TERM_GRACE_S) -> int:
    """Set ``stop`` and end every command running under it (`run_ci`'s ``stop``): its owner is stopping.

    Each gets SIGTERM, and what is left after ``grace_s`` SIGKILL, with whatever carries its tag; each caller
    then gets `CommandInterrupted` instead of an exit code, so no CI is recorded as failed for it, and no
    command starts under ``stop`` any more. Without this a stopped server's CI commands ran on in their own
    sessions until a restart found them. Returns how many were running.
    """
    stop.set()
    with _running_lock:
        groups = {pgid: tag for pgid, (tag, owner) in _running.items() if owner is stop}
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        with _running_lock:
            if not _running.keys() & groups.keys():
                break
        time.sleep(0.05)
    with _running_lock:
        left = {pgid: tag for pgid, (tag, _) in _running.items() if pgid in groups}
    for pgid, tag in left.items():
        _end_group(pgid, tag)
    return len(groups)


def _end_group(pgid: int, tag: str) -> None:
    _signal_group(pgid, signal.SIGKILL)
    for pid in process_group.tagged(tag):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _read_tail(path: Path, cap: int) -> str:
    """At most ``cap`` bytes of the file's end: the failure is at the bottom of a log."""
    size = path.stat().st_size
    with path.open("rb") as f:
        if size <= cap:
            return f.read().decode("utf-8", "replace")
        marker = f"[optio: output truncated, showing the last {cap // 1024} KiB]\n"
        keep = max(cap - len(marker.encode()), 0)
        f.seek(size - keep)
        data = f.read()
    newline = data.find(b"\n", 0, 4096)
    if newline != -1:
        data = data[newline + 1 :]
    return marker + data.decode("utf-8", "replace")


def _rebase_attributes(text: str, directory: str) -> str:
    """The lines of ``directory``'s ``.gitattributes`` with patterns rewritten to match from the repository root.

    A pattern without a slash matches a name at any depth below its directory; one with a slash is anchored
    at its directory. Macro definitions (``[attr]``) count only at the top level, as in git.
    """
    if not directory:
        return text if text.endswith("\n") or not text else text + "\n"
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "[attr]")):
            continue
        quote = '"' if stripped.startswith('"') else ""
        if quote:  # a C-style quoted pattern: "with space" attr
            pattern, _, rest = stripped[1:].partition('"')
        else:
            pattern, _, rest = stripped.partition(" ") if " " in stripped else stripped.partition("\t")
            rest = " " + rest
        prefix = f"{directory}/" if "/" in pattern.rstrip("/") else f"{directory}/**/"
        out.append(f"{quote}{prefix}{pattern.lstrip('/')}{quote}{rest}")
    return "".join(f"{line}\n" for line in out)
