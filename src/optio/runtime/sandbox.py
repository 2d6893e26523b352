"""A bubblewrap sandbox around every process Optio starts for a run: agents, CI commands, reviews.

A run's process sees the system directories read-only, its own worktree, its own ``HOME``, a private
``/tmp``, new ``/proc`` and ``/dev`` in a new pid namespace, and the network; nothing of Optio's data dir
(database, key files, other runs' worktrees and logs, repo caches) except what :class:`Mounts` names,
nothing of the server's ``/proc`` and nothing of its environment (the caller passes a minimal one).
Inside it runs as an unprivileged uid of a new user namespace, to which the server's own uid is mapped,
so the files Optio created for the run (worktree, home) are the agent's own and writable.

Two bubblewrap options are deliberately *not* used:

* ``--die-with-parent``: agents must outlive a restart of the server (it adopts them on start);
* ``--new-session``: the runtime ends a run by signalling its process group, and a new session would
  put the sandboxed processes out of that group. The launcher already starts the process in a new
  session of its own (``setsid``), so it has no controlling terminal to inject input into anyway.

Resource limits are rlimits set by ``prlimit`` just before bubblewrap: address space, file size and
process count (the kernel does not enforce the process count for root, see :func:`probe`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from optio.runtime.base import Mounts

log = structlog.get_logger(__name__)

# Directories of the host every sandbox sees read-only (those that exist; merged-/usr links stay links).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
SANDBOX_UID = 1000
SANDBOX_HOSTNAME = "optio-sandbox"
PROBE_TIMEOUT_S = 10.0
_MB = 1024 * 1024


class SandboxUnavailable(RuntimeError):
    """The sandbox is required but cannot be set up; the message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    """Per-run resource limits; ``None`` leaves a limit as the server's own."""

    memory_mb: int | None = None
    max_processes: int | None = None
    max_file_mb: int | None = None

    def prlimit_args(self) -> list[str]:
        args: list[str] = []
        if self.memory_mb:
            args.append(f"--as={self.memory_mb * _MB}")
        if self.max_processes:
            args.append(f"--nproc={self.max_processes}")
        if self.max_file_mb:
            args.append(f"--fsize={self.max_file_mb * _MB}")
        return args


@dataclass(frozen=True)
class Probe:
    """What ``optio agents doctor`` and the server's start-up report about the sandbox on this host."""

    bwrap: str | None
    version: str | None
    works: bool
    reason: str | None
    prlimit: str | None
    nproc_enforced: bool


@dataclass(frozen=True)
class Sandbox:
    """Turns a command into one that runs inside bubblewrap; see the module docstring for the layout."""

    bwrap: str
    hidden: tuple[Path, ...]
    limits: Limits = field(default_factory=Limits)
    prlimit: str | None = None
    readonly: tuple[Path, ...] = ()
    uid: int = SANDBOX_UID

    def wrap(
        self, argv: list[str], *, cwd: Path, env: Mapping[str, str], mounts: Mounts | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that run ``argv`` in ``cwd`` inside the sandbox.

        ``mounts`` None is the agent layout: ``cwd`` read-write. Paths keep their host names inside,
        so the environment (``HOME``, ``$OPTIO_PROMPT_FILE``, ...) needs no rewriting but ``TMPDIR``.
        """
        mounts = mounts if mounts is not None else Mounts(writable=(cwd,))
        env = dict(env)
        env["TMPDIR"] = "/tmp"
        args = [self.bwrap, "--unshare-user", "--uid", str(self.uid), "--gid", str(self.uid),
                "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--hostname", SANDBOX_HOSTNAME, "--cap-drop", "ALL"]
        shown: list[Path] = []
        for name in SYSTEM_DIRS:
            path = Path(name)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), name]
            elif path.is_dir():
                args += ["--ro-bind", name, name]
                shown.append(path)
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", "/run"]
        resolv = Path("/etc/resolv.conf")
        if resolv.is_symlink() and resolv.exists():
            target = resolv.resolve()
            if not _under_any(target, SYSTEM_DIRS):
                args += ["--ro-bind", str(target), str(target)]
        for path in self._tool_paths(argv, env):
            args += ["--ro-bind", str(path), str(path)]
            shown.append(path)
        # The data dir may sit below a system dir (e.g. /opt/optio): cover it before the run's own paths.
        for hidden in self.hidden:
            if hidden.is_dir() and any(_within(hidden, s) for s in shown):
                args += ["--tmpfs", str(hidden)]
        git_ro, git_rw, git_masks = git_metadata(mounts)
        for path in git_ro:
            args += ["--ro-bind", str(path), str(path)]
        for path in git_masks:
            args += ["--tmpfs", str(path)]
        for path in (*git_rw, *mounts.writable):
            args += ["--bind", str(path), str(path)]
        for path in mounts.readonly:
            args += ["--ro-bind", str(path), str(path)]
        args += ["--chdir", str(cwd), "--"]
        limits = self.limits.prlimit_args() if self.prlimit else []
        prefix = [self.prlimit, *limits, "--"] if limits and self.prlimit else []
        return [*prefix, *args, *argv], env

    def _tool_paths(self, argv: list[str], env: Mapping[str, str]) -> list[Path]:
        """Read-only binds for what runs the command: the program's install, extra PATH dirs, configured dirs."""
        found: list[Path] = []
        program = argv[0] if argv else ""
        located = shutil.which(program, path=env.get("PATH", "")) if "/" not in program else program
        if located:
            found += _install_root(Path(located))
        # A wrapper (the output relay, `sh -c`) names the real program later in argv, often by absolute path.
        for arg in argv[1:]:
            if os.path.isabs(arg) and os.path.isfile(arg) and os.access(arg, os.X_OK):
                found += _install_root(Path(arg))
        for entry in env.get("PATH", "").split(os.pathsep):
            if entry and os.path.isabs(entry) and Path(entry).is_dir():
                found += _install_root(Path(entry) / "_")
        found += [p for p in self.readonly if p.exists()]
        paths: list[Path] = []
        for path in found:
            path = Path(os.path.abspath(path))
            if _under_any(path, SYSTEM_DIRS) or path in paths:
                continue
            if any(_within(path, h) or _within(h, path) for h in self.hidden):
                log.warning("sandbox_path_not_shown", path=str(path), reason="inside or above Optio's data dir")
                continue
            paths.append(path)
        # A parent bound later would hide a child bound earlier: bind parents first.
        return sorted(paths, key=lambda p: len(p.parts))


def _within(path: Path | str, root: Path | str) -> bool:
    """`path` is `root` or below it, compared as absolute paths' text (as ``root in path.parents`` would,
    which costs a Path per parent: every launch and CI run checks a dozen paths against each root)."""
    p, r = str(path), str(root)
    return p == r or p.startswith(r if r.endswith("/") else r + "/")


def _under_any(path: Path, roots: Iterable[str]) -> bool:
    return any(_within(path, r) for r in roots)


# Tool managers whose launchers (shims, ``.bin`` links) need their whole tree; none of them keeps credentials.
_TOOL_ROOTS = ("node_modules", ".pyenv", ".nvm", ".volta", ".asdf")


def _install_root(program: Path) -> list[Path]:
    """The directories a program needs to run: its tool tree (``node_modules``, pyenv, a venv) or its dir.

    Both the path as given and its resolved target count: ``node_modules/.bin/x`` links into the package.
    """
    roots: list[Path] = []
    for path in dict.fromkeys((Path(os.path.abspath(program)), program.resolve())):
        parts = path.parts
        marker = next((i for i, part in enumerate(parts) if part in _TOOL_ROOTS), None)
        if marker is not None:
            roots.append(Path(*parts[: marker + 1]))
        elif (path.parent.parent / "pyvenv.cfg").is_file():
            roots.append(path.parent.parent)
            roots += _venv_base(path.parent.parent / "pyvenv.cfg")
        else:
            roots.append(path.parent)
    return [r for r in roots if r.is_dir()]


def _venv_base(cfg: Path) -> list[Path]:
    """The Python install a venv was made from (``home`` in ``pyvenv.cfg``), which its interpreter links to."""
    with contextlib.suppress(OSError):
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                return _install_root(Path(value.strip()) / "python")
    return []


def git_metadata(mounts: Mounts) -> tuple[list[Path], list[Path], list[Path]]:
    """Binds that make git work in each mounted checkout: (read-only, read-write, masked with a tmpfs).

    A standalone clone keeps its metadata inside the checkout; its ``objects/info/alternates`` lists
    shared object dirs, shown read-only. A ``git worktree`` (a ``.git`` file) keeps its own metadata in
    ``<common>/worktrees/<name>``: the common dir is shown read-only, the other worktrees' metadata
    masked, and this one's writable only when the checkout itself is.
    """
    readonly: list[Path] = []
    writable: list[Path] = []
    masks: list[Path] = []
    checkouts = [(p, True) for p in mounts.writable] + [(p, False) for p in mounts.readonly]
    for checkout, rw in checkouts:
        dotgit = checkout / ".git"
        objects: Path | None = None
        if dotgit.is_dir():
            objects = dotgit / "objects"
        elif dotgit.is_file():
            gitdir = _gitdir_of(dotgit)
            if gitdir is None:
                continue
            common = gitdir
            with contextlib.suppress(OSError):
                common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
            objects = common / "objects"
            if common != gitdir:
                readonly.append(common)
                if gitdir.parent.name == "worktrees" and gitdir.parent.parent == common:
                    masks.append(gitdir.parent)
                (writable if rw else readonly).append(gitdir)
            else:
                (writable if rw else readonly).append(gitdir)
        if objects is not None:
            borrowed = _alternates(objects)
            readonly += [p for p in borrowed if p not in readonly]
            # The remotes of the checkout and of the repositories it borrows from (the cache's upstream):
            # a local remote is shown read-only as a network one is reachable read-only.
            for config in (objects.parent / "config", *(b.parent / "config" for b in borrowed)):
                readonly += [p for p in _local_remotes(config) if p not in readonly]
    return readonly, writable, list(dict.fromkeys(masks))


_REMOTE_SECTION = re.compile(r'^\s*\[\s*remote\s+"[^"]*"\s*\]', re.IGNORECASE)
_SECTION = re.compile(r"^\s*\[")
_URL = re.compile(r"^\s*url\s*=\s*(.+?)\s*$", re.IGNORECASE)


def _local_remotes(config: Path, depth: int = 0) -> list[Path]:
    """Remotes on this machine (a path or ``file://``), shown read-only so ``git fetch`` works inside.

    A task's clone fetches from the repo cache, whose own remote may be a local repository too (one more
    level is followed); nothing inside can write to a remote shown this way.
    """
    if depth > 1:
        return []
    try:
        lines = config.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found: list[Path] = []
    in_remote = False
    for line in lines:
        if _SECTION.match(line):
            in_remote = bool(_REMOTE_SECTION.match(line))
            continue
        match = _URL.match(line) if in_remote else None
        if match is None:
            continue
        url = match.group(1).strip('"')
        if url.startswith("file://"):
            url = url[len("file://") :]
        if os.path.isabs(url) and Path(url).is_dir():
            remote = Path(url).resolve()
            found.append(remote)
            for nested in (remote / "config", remote / ".git" / "config"):
                if nested.is_file():
                    found += _local_remotes(nested, depth + 1)
    return found


def _gitdir_of(dotgit: Path) -> Path | None:
    try:
        text = dotgit.read_text().strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    gitdir = Path(text[len("gitdir:") :].strip())
    gitdir = gitdir if gitdir.is_absolute() else dotgit.parent / gitdir
    return gitdir.resolve() if gitdir.is_dir() else None


def _alternates(objects: Path, depth: int = 0) -> list[Path]:
    """Object dirs borrowed through ``objects/info/alternates`` (recursively, as git reads them)."""
    if depth > 5:
        return []
    try:
        lines = (objects / "info" / "alternates").read_text().splitlines()
    except OSError:
        return []
    found: list[Path] = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line) if os.path.isabs(line) else (objects / line)
        path = path.resolve()
        if path.is_dir():
            found.append(path)
            found += _alternates(path, depth + 1)
    return found


_VERSION = re.compile(r"\d+(?:\.\d+)+")


@functools.lru_cache(maxsize=4)
def probe(bwrap_path: str | None = None) -> Probe:
    """Whether bubblewrap can build the sandbox here: runs a trivial command in the real layout."""
    bwrap = bwrap_path or shutil.which("bwrap")
    prlimit = shutil.which("prlimit")
    nproc_enforced = os.geteuid() != 0
    if bwrap is None:
        return Probe(None, None, False, "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install "
                     "bubblewrap)", prlimit, nproc_enforced)
    version = None
    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
        match = _VERSION.search(out.stdout + out.stderr)
        version = match.group(0) if match else None
        sandbox = Sandbox(bwrap=bwrap, hidden=())
        argv, env = sandbox.wrap(["/bin/sh", "-c", f"test \"$(id -u)\" = {SANDBOX_UID}"], cwd=Path("/"),
                                 env={"PATH": "/usr/bin:/bin"}, mounts=Mounts())
        res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return Probe(bwrap, version, False, f"bubblewrap could not run: {exc}", prlimit, nproc_enforced)
    if res.returncode != 0:
        detail = (res.stderr or res.stdout).strip().splitlines()
        reason = f"bubblewrap cannot create the sandbox here (user namespaces?): {detail[-1] if detail else ''}"
        return Probe(bwrap, version, False, reason, prlimit, nproc_enforced)
    return Probe(bwrap, version, True, None, prlimit, nproc_enforced)


def from_settings(settings: object) -> Sandbox | None:
    """The sandbox the settings ask for; None when it is off (or unavailable under ``auto``).

    Raises :class:`SandboxUnavailable` when the sandbox is required (``on``) or when it is unavailable
    under ``auto`` while authentication is on: a multi-user server never runs members' code unconfined.
    """
    mode = getattr(settings, "sandbox", "auto")
    if mode == "off":
        return None
    found = probe()
    if not found.works:
        if mode == "on":
            raise SandboxUnavailable(f"OPTIO_SANDBOX=on but {found.reason}")
        if getattr(settings, "auth_enabled", True):
            raise SandboxUnavailable(
                f"the agent sandbox is unavailable: {found.reason}. A server with authentication (several users) "
                "refuses to run members' agents unconfined; install bubblewrap, or set OPTIO_SANDBOX=off "
                "explicitly on a single-user machine."
            )
        log.warning("sandbox_unavailable", reason=found.reason, effect="agents run as the server's own user")
        return None
    assert found.bwrap is not None
    data_dir: Path = settings.resolved_data_dir  # type: ignore[attr-defined]
    limits = Limits(
        memory_mb=getattr(settings, "sandbox_memory_mb", 0) or None,
        max_processes=getattr(settings, "sandbox_max_processes", 0) or None,
        max_file_mb=getattr(settings, "sandbox_max_file_mb", 0) or None,
    )
    return Sandbox(bwrap=found.bwrap, hidden=(data_dir,), limits=limits, prlimit=found.prlimit,
                   readonly=tuple(getattr(settings, "sandbox_readonly_paths", ()) or ()))
