"""Git work behind a repo task: cache clone, per-task worktrees, CI and squash-merge.

One ``RepoCache`` stands for one remote repository on this machine. Its layout
is a *bare* repository with a single ``origin`` remote using the standard
``+refs/heads/*:refs/remotes/origin/*`` refspec (``git init --bare`` plus
``git remote add``, not ``git clone --bare``). Why:

* bare, so no branch is checked out in the cache itself and every branch
  (including the base branch) stays free for ``git worktree add``;
* remote-tracking refs rather than a mirror, so each task worktree sees a
  normal ``origin`` with ``origin/<branch>`` refs and the agent can run
  ``git fetch origin && git rebase origin/<base>`` in it unaided;
* objects and refs are shared, so a task costs a checkout, not a clone.

Thread safety: several tasks of one repo run at once in threads. Operations
that change state shared by all worktrees (fetch, worktree add/remove) hold a
per-cache lock; the lock is keyed by the cache path so separate ``RepoCache``
objects for one cache still exclude each other. Squash-merges are serialised
among themselves on a second lock, since they race for the same base branch
anyway. Work inside a single worktree (commit, push, CI) runs unlocked.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from optio.forge.gitcmd import GitError, MergeConflictError, run_git, scrubbed_env
from optio.runtime.base import Mounts
from optio.runtime.sandbox import Sandbox

__all__ = [
    "CiResult",
    "GitError",
    "MergeConflictError",
    "Mergeability",
    "RepoCache",
    "branch_for_task",
    "run_git",
]

log = structlog.get_logger(__name__)

CI_OUTPUT_CAP_BYTES = 1024 * 1024
_CI_TERM_GRACE_S = 5.0
_MERGE_PUSH_RETRIES = 3
_FETCH_ATTEMPTS = 3
# The first fetch of a large repository can take far longer than a routine git call.
_FETCH_TIMEOUT_S = 1800.0
_READY_KEY = "optio.cacheready"

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


def branch_for_task(task_id: int) -> str:
    """The branch a task works on; one name per task keeps PRs and worktrees one-to-one."""
    return f"optio/{task_id}"


_registry_lock = threading.Lock()
_cache_locks: dict[str, tuple[threading.RLock, threading.Lock]] = {}


def _locks_for(cache_dir: Path) -> tuple[threading.RLock, threading.Lock]:
    key = os.path.realpath(cache_dir)
    with _registry_lock:
        if key not in _cache_locks:
            _cache_locks[key] = (threading.RLock(), threading.Lock())
        return _cache_locks[key]


def _normalise_remote(url: str) -> str:
    """Local paths become absolute so worktrees anywhere resolve ``origin`` the same way."""
    if "://" in url:
        return url
    head = url.split("/", 1)[0]
    if ":" in head and not os.path.exists(url):
        return url  # scp-like user@host:path
    return str(Path(url).expanduser().resolve())


def _same_path(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


class RepoCache:
    """A local cache of one remote repository that hands out worktrees to tasks."""

    def __init__(self, remote_url: str, cache_dir: Path) -> None:
        self.remote_url = _normalise_remote(remote_url)
        self.cache_dir = Path(cache_dir).absolute()
        self._lock, self._merge_lock = _locks_for(self.cache_dir)
        self._ready = False

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
                current = self._git(["remote", "get-url", "origin"]).stdout.strip()
                if current != self.remote_url:
                    self._git(["remote", "set-url", "origin", self.remote_url])
                self._ready = True
                return
            self._discard_half_made_cache()
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            run_git(["init", "--bare", "--quiet", str(self.cache_dir)], cwd=self.cache_dir)
            for key, value in (
                # Reflogs are off by default in bare repos; --force-if-includes needs them.
                ("core.logAllRefUpdates", "true"),
                # Tasks (and their agents) fetch and commit concurrently; wait for ref locks.
                ("core.filesRefLockTimeout", "5000"),
                ("core.packedRefsTimeout", "5000"),
            ):
                self._git(["config", key, value])
            self._git(["remote", "add", "origin", self.remote_url])
            self._fetch_unlocked()
            self._git(["config", "--bool", _READY_KEY, "true"])
            self._ready = True

    def _is_ready_cache(self) -> bool:
        if not (self.cache_dir / "HEAD").is_file():
            return False
        proc = self._git(["config", "--bool", _READY_KEY], check=False)
        return proc.returncode == 0 and proc.stdout.strip() == "true"

    def _discard_half_made_cache(self) -> None:
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

    def fetch(self) -> None:
        """Bring every ``origin/<branch>`` up to date, dropping branches deleted on the remote."""
        self.ensure()
        with self._lock:
            self._fetch_unlocked()

    def _fetch_unlocked(self) -> None:
        # An agent may run `git fetch origin` in its worktree at the same moment;
        # both update the same shared refs, so a lost ref-lock race is retried.
        for attempt in range(_FETCH_ATTEMPTS):
            proc = run_git(
                ["fetch", "--prune", "--quiet", "origin"], cwd=self.cache_dir, timeout=_FETCH_TIMEOUT_S, check=False
            )
            if proc.returncode == 0:
                return
            lost_race = any(m in proc.stderr.lower() for m in _LOCK_MARKERS)
            if not lost_race or attempt == _FETCH_ATTEMPTS - 1:
                raise GitError(["fetch", "--prune", "--quiet", "origin"], proc.returncode, proc.stderr)
            time.sleep(0.2 * (attempt + 1))

    def resolve(self, ref: str) -> str:
        self.ensure()
        return self._resolve_in(self.cache_dir, self._qualify(ref))

    # -- worktrees ---------------------------------------------------------

    def add_worktree(self, path: Path, branch: str, base_ref: str) -> str:
        """Give a task its own working tree on ``branch``; returns the sha the work is based on.

        A branch that already exists on the remote (a task resumed after a
        restart) is checked out at the remote tip, and its base is the merge-base
        with ``base_ref``. An existing worktree of the same branch at ``path`` is
        reused as it is, uncommitted edits included.
        """
        self.ensure()
        path = Path(path).absolute()
        with self._lock:
            self._fetch_unlocked()
            base_sha = self._resolve_in(self.cache_dir, self._qualify(base_ref))
            remote_tip = self._try_resolve(f"refs/remotes/origin/{branch}")
            entry = self._worktree_at(path)
            if entry is not None and not entry.prunable:
                if entry.branch != f"refs/heads/{branch}":
                    raise GitError(
                        [],
                        None,
                        "",
                        message=f"{path} is already a worktree of {entry.branch or 'a detached HEAD'}",
                    )
                head = self._resolve_in(path, "HEAD")
                return self._merge_base(base_sha, head)
            if path.exists():
                if path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
                else:
                    raise GitError([], None, "", message=f"{path} exists and is not a worktree of {branch}")
            self._git(["worktree", "prune"])
            path.parent.mkdir(parents=True, exist_ok=True)
            start = remote_tip or base_sha
            self._git(["worktree", "add", "--quiet", "--no-track", "-B", branch, str(path), start])
            return self._merge_base(base_sha, start) if remote_tip else base_sha

    def remove_worktree(self, path: Path) -> None:
        """Throw a task's worktree and local branch away; missing paths are fine.

        The caller pushes anything worth keeping first: the branch on the
        remote is what survives a task, not the local checkout.
        """
        self.ensure()
        path = Path(path).absolute()
        with self._lock:
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
        self.ensure()
        return [w.path for w in self._worktrees() if not w.prunable]

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

    # -- inside a task's worktree -------------------------------------------

    def has_changes(self, worktree: Path) -> bool:
        out = run_git(["status", "--porcelain", "--untracked-files=all"], cwd=worktree).stdout
        return bool(out.strip())

    def commit_all(self, worktree: Path, message: str) -> str | None:
        """Commit whatever the agent left behind; None when there is nothing.

        Hooks are skipped: this commit only preserves the agent's work, and the
        repo's CI is the gate that judges it.
        """
        run_git(["add", "-A"], cwd=worktree)
        if run_git(["diff", "--cached", "--quiet"], cwd=worktree, check=False).returncode == 0:
            return None
        run_git(["commit", "--quiet", "--no-verify", "-m", message], cwd=worktree)
        return self.head_sha(worktree)

    def head_sha(self, worktree: Path) -> str:
        return self._resolve_in(worktree, "HEAD")

    def commits_ahead(self, worktree: Path, base_ref: str) -> int:
        out = run_git(["rev-list", "--count", f"{self._qualify(base_ref)}..HEAD"], cwd=worktree).stdout
        return int(out.strip())

    def push_branch(self, worktree: Path, branch: str) -> str:
        """Publish the worktree's HEAD as ``branch`` on the remote; returns the pushed sha.

        Forced, because the agent may have rebased, but leased against our
        ``origin/<branch>`` and required to include it, so a commit someone
        else pushed to the branch is never silently thrown away.
        """
        sha = self.head_sha(worktree)
        run_git(
            [
                "push",
                "--quiet",
                "--no-verify",
                f"--force-with-lease=refs/heads/{branch}",
                "--force-if-includes",
                "origin",
                f"{sha}:refs/heads/{branch}",
            ],
            cwd=worktree,
        )
        return sha

    # -- review-time operations on the cache ---------------------------------

    def mergeability(self, base_ref: str, head_sha: str) -> Mergeability:
        """Would ``head_sha`` merge cleanly onto the current remote base? Touches no worktree."""
        self.fetch()
        head = self._ensure_commit(head_sha)
        args = [
            "merge-tree",
            "--write-tree",
            "--name-only",
            "--no-messages",
            "-z",
            self._qualify(base_ref),
            head,
        ]
        proc = self._git(args, check=False)
        if proc.returncode == 0:
            return Mergeability(clean=True, conflicting_files=[])
        if proc.returncode != 1:
            raise GitError(args, proc.returncode, proc.stderr)
        names = [n for n in proc.stdout.split("\0")[1:] if n]
        return Mergeability(clean=False, conflicting_files=list(dict.fromkeys(names)))

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
    ) -> CiResult:
        """Run the repo's CI command on a clean checkout of ``head_sha``.

        Never the agent's worktree: untracked or ignored leftovers there must not
        make CI pass. The command runs in its own process group so a timeout can
        take down everything it started. With ``inherit_env=False`` the command sees
        exactly ``env``: CI is the repo's code and must not read the server's secrets.
        With a ``sandbox`` it sees only its checkout and a fresh ``HOME`` of the host's
        files besides the system; without ``HOME`` in ``env`` it gets that fresh one too.
        """
        self.ensure()
        sha = self._ensure_commit(head_sha)
        work_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="ci-", dir=work_root))
        checkout = scratch / "checkout"
        log_path = scratch / "output.log"
        home = scratch / "home"
        try:
            with self._lock:
                self._git(["worktree", "add", "--quiet", "--detach", str(checkout), sha])
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
            )
            duration = time.monotonic() - started
            suffix = ""
            if exit_code is None:
                suffix = f"\noptio: CI command timed out after {timeout_s:g}s; its process group was killed\n"
            output = _read_tail(log_path, CI_OUTPUT_CAP_BYTES - len(suffix.encode())) + suffix
        finally:
            self._discard_worktree(checkout)
            shutil.rmtree(scratch, ignore_errors=True)
        status = "passing" if exit_code == 0 else "failing"
        return CiResult(status=status, exit_code=exit_code, output=output, duration_s=duration)

    def squash_merge(self, base_branch: str, head_sha: str, message: str, *, work_root: Path) -> str:
        """Land ``head_sha`` on the remote ``base_branch`` as one commit; returns the new base sha.

        The push is never forced: if the base moved between our fetch and our
        push, the squash is redone on the fresh base (a bounded number of times).
        When the head has nothing the base lacks, no commit is made and the
        current base sha is returned.
        """
        self.ensure()
        base_branch = base_branch.removeprefix("origin/").removeprefix("refs/heads/")
        with self._merge_lock:
            for attempt in range(_MERGE_PUSH_RETRIES + 1):
                self.fetch()
                head = self._ensure_commit(head_sha)
                base_sha = self._resolve_in(self.cache_dir, f"refs/remotes/origin/{base_branch}")
                pushed, sha, detail = self._squash_once(base_branch, base_sha, head, message, work_root)
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

    def _squash_once(
        self, base_branch: str, base_sha: str, head: str, message: str, work_root: Path
    ) -> tuple[bool, str, str]:
        work_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="merge-", dir=work_root))
        checkout = scratch / "checkout"
        try:
            with self._lock:
                self._git(["worktree", "add", "--quiet", "--detach", str(checkout), base_sha])
            merge_args = ["merge", "--squash", "--quiet", head]
            merge = run_git(merge_args, cwd=checkout, check=False)
            if merge.returncode != 0:
                unmerged = run_git(["diff", "--name-only", "--diff-filter=U", "-z"], cwd=checkout).stdout
                files = [f for f in unmerged.split("\0") if f]
                if files:
                    raise MergeConflictError(merge_args, merge.returncode, merge.stderr or merge.stdout, files)
                raise GitError(merge_args, merge.returncode, merge.stderr or merge.stdout)
            if run_git(["diff", "--cached", "--quiet"], cwd=checkout, check=False).returncode == 0:
                return True, base_sha, ""
            run_git(["commit", "--quiet", "--no-verify", "-m", message], cwd=checkout)
            new_sha = self._resolve_in(checkout, "HEAD")
            push = run_git(
                ["push", "--porcelain", "--no-verify", "origin", f"{new_sha}:refs/heads/{base_branch}"],
                cwd=checkout,
                check=False,
            )
            if push.returncode == 0:
                return True, new_sha, ""
            return False, new_sha, f"{push.stdout}\n{push.stderr}"
        finally:
            self._discard_worktree(checkout)
            shutil.rmtree(scratch, ignore_errors=True)

    def delete_remote_branch(self, branch: str) -> None:
        """Best-effort cleanup of a finished task's branch; failure is only logged."""
        try:
            self.ensure()
            proc = self._git(["push", "--quiet", "--no-verify", "origin", "--delete", branch], check=False)
            if proc.returncode != 0 and "remote ref does not exist" not in proc.stderr:
                log.warning("delete_remote_branch.failed", branch=branch, stderr=proc.stderr.strip()[-500:])
            self._git(["update-ref", "-d", f"refs/remotes/origin/{branch}"], check=False)
        except GitError as exc:
            log.warning("delete_remote_branch.failed", branch=branch, error=str(exc))

    # -- helpers ---------------------------------------------------------------

    def _git(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_git(args, cwd=self.cache_dir, check=check)

    def _qualify(self, ref: str) -> str:
        """Map a base name like ``main`` or ``origin/main`` to the remote-tracking ref.

        Spelled out in full so a local branch that happens to be called
        ``origin/main`` can never shadow the remote's.
        """
        if ref.startswith("refs/"):
            return ref
        if ref.startswith("origin/"):
            return f"refs/remotes/{ref}"
        if self._try_resolve(f"refs/remotes/origin/{ref}") is not None:
            return f"refs/remotes/origin/{ref}"
        return ref

    def _try_resolve(self, ref: str) -> str | None:
        proc = self._git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    @staticmethod
    def _resolve_in(cwd: Path, ref: str) -> str:
        return run_git(["rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=cwd).stdout.strip()

    def _merge_base(self, a: str, b: str) -> str:
        proc = self._git(["merge-base", a, b], check=False)
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
        with self._lock:
            if self._worktree_at(path) is not None:
                proc = self._git(["worktree", "remove", "--force", "--force", str(path)], check=False)
                if proc.returncode != 0:
                    shutil.rmtree(path, ignore_errors=True)
            self._git(["worktree", "prune"], check=False)


def _run_in_group(
    argv: list[str],
    *,
    cwd: Path,
    log_path: Path,
    timeout_s: float,
    env: dict[str, str],
    sandbox: Sandbox | None = None,
    mounts: Mounts | None = None,
) -> int | None:
    """Run argv with output to ``log_path``; returns its exit code, None on timeout.

    Whatever the command left running in its process group is killed once it
    ends, so background daemons started by a test suite do not outlive CI. In a
    ``sandbox`` the command sees ``mounts`` (default: ``cwd`` read-write); the log
    stays outside it.
    """
    if sandbox is not None:
        argv, env = sandbox.wrap(argv, cwd=cwd, env=env, mounts=mounts)
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
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=_CI_TERM_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
            return None
        finally:
            _signal_group(proc.pid, signal.SIGKILL)


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
