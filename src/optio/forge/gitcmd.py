"""Running the git CLI with a predictable, hostile-input-proof environment.

Optio drives git as a subprocess on behalf of many tasks at once, often from a
server started inside someone's shell (or inside a git hook), and on
repositories an agent has had its hands on. So every call here:

* starts from an environment built from scratch, not the server's: no
  operator ``HOME``, no system or global git config, no location variables
  that would point git at another repository, a fixed identity;
* disables everything a repository's own files could make git execute:
  hooks (``core.hooksPath=/dev/null``), ``core.fsmonitor``, external diff
  drivers, credential helpers;
* speaks only the transport protocols a call explicitly allows.

Remote operations go through :func:`remote_access`, which adds the remote's
protocol to the allowlist, refuses internal addresses (the SSRF guard, run on
every fetch and push), pins the checked address for the connection, never
follows redirects, and hands git Optio's own per-repo credential through
``GIT_ASKPASS`` reading an environment variable that only that git process
gets.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from optio.security.ssrf import Allowlist, Resolver, UnsafeURLError, pin_url

IDENTITY_NAME = "Optio"
IDENTITY_EMAIL = "optio@localhost"

# No operator home: nothing in ~/.gitconfig, ~/.git-credentials or ~/.config/git applies to Optio's git.
GIT_HOME = "/nonexistent"
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

# Variables that make git operate on some other repository, index or object
# store than the one named by ``cwd``; inheriting any of them is a silent bug.
_LOCATION_VARS = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_COMMON_DIR",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
        "GIT_QUARANTINE_PATH",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
    }
)

# Command-line config wins over every config file, a repository's own included,
# so these hold even in a repository whose .git/config an agent wrote.
_CONFIG_ARGS = (
    "-c",
    f"user.name={IDENTITY_NAME}",
    "-c",
    f"user.email={IDENTITY_EMAIL}",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "tag.gpgsign=false",
    "-c",
    "rerere.enabled=false",
    "-c",
    "advice.detachedHead=false",
    # Nothing a repository carries may run code in Optio's git calls.
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "core.askPass=",
    "-c",
    "core.sshCommand=",
    "-c",
    "diff.external=",
    "-c",
    "credential.helper=",
    "-c",
    "init.templateDir=",
    # Transports are opted into per call (see remote_access); none by default.
    "-c",
    "protocol.allow=never",
)

_PASSED_THROUGH = ("TMPDIR", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH")

# For git commands Optio runs against local paths only (its own cache, a permitted local remote).
LOCAL_TRANSPORT = ("-c", "protocol.file.allow=always")

_SERVER_ENV = "env -u GIT_CONFIG_PARAMETERS -u GIT_CONFIG_COUNT"
_LOCAL_SERVER_SIDE = (
    "-c",
    f"remote.origin.receivepack={_SERVER_ENV} git receive-pack",
    "-c",
    f"remote.origin.uploadpack={_SERVER_ENV} git upload-pack",
)

# ``ssh`` resolves ``~`` from the password database, not $HOME: name every file it would read.
_SSH_COMMAND = (
    "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none -o IdentityFile=none "
    "-o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes"
)

_STDERR_TAIL_CHARS = 2000


class GitError(RuntimeError):
    """A git command failed; keeps what an operator needs to see why."""

    def __init__(
        self,
        args: Sequence[str],
        returncode: int | None,
        stderr: str,
        *,
        message: str | None = None,
    ) -> None:
        self.git_args = list(args)
        self.argv = ["git", *_CONFIG_ARGS, *self.git_args]
        self.returncode = returncode
        self.stderr_tail = stderr[-_STDERR_TAIL_CHARS:].strip()
        status = "timed out" if returncode is None else f"exit {returncode}"
        head = message or f"git {' '.join(self.git_args)} failed ({status})"
        super().__init__(f"{head}: {self.stderr_tail}" if self.stderr_tail else head)


class MergeConflictError(GitError):
    """Merging the head onto the base needs a human (or the agent) to resolve files."""

    def __init__(
        self,
        args: Sequence[str],
        returncode: int | None,
        stderr: str,
        conflicting_files: list[str],
    ) -> None:
        self.conflicting_files = list(conflicting_files)
        super().__init__(
            args,
            returncode,
            stderr,
            message=f"merge conflict in {', '.join(self.conflicting_files) or 'unknown files'}",
        )


def scrubbed_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment minus anything that points git at another repository."""
    env = {k: v for k, v in os.environ.items() if k not in _LOCATION_VARS}
    if extra:
        env.update(extra)
    return env


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for Optio's own git calls, built from nothing but a few fixed values.

    Not the server's environment: its ``HOME`` holds the operator's credential
    helpers and ssh keys, its ``OPTIO_*`` variables hold the server's secrets,
    and anything a git subprocess sees, a hook or helper it runs sees too.
    Author/committer variables are set explicitly because they win over ``-c
    user.name``.
    """
    env = {
        "PATH": os.environ.get("PATH") or _DEFAULT_PATH,
        "HOME": GIT_HOME,
        "XDG_CONFIG_HOME": GIT_HOME,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_SYSTEM": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        # A clone whose config names a promisor remote must not make Optio fetch from it behind its back.
        "GIT_NO_LAZY_FETCH": "1",
        "GIT_SSH_COMMAND": _SSH_COMMAND,
        "LC_ALL": "C",
        "LANG": "C",
        "GIT_AUTHOR_NAME": IDENTITY_NAME,
        "GIT_AUTHOR_EMAIL": IDENTITY_EMAIL,
        "GIT_COMMITTER_NAME": IDENTITY_NAME,
        "GIT_COMMITTER_EMAIL": IDENTITY_EMAIL,
    }
    # Where to find temporary space and which CAs to trust (a self-hosted forge's own CA) carry no secret and no
    # code; proxies are not passed: a proxy would resolve names itself, past the pinned address.
    for name in _PASSED_THROUGH:
        if os.environ.get(name):
            env[name] = os.environ[name]
    if extra:
        env.update(extra)
    return env


# -- remotes ---------------------------------------------------------------------------------------------

_ASKPASS_SCRIPT = """#!/bin/sh
# Optio's askpass: answers git's prompts from variables only the git process that asked was given.
case "$1" in
  Username*|username*) printf '%s\\n' "${OPTIO_GIT_USERNAME:-optio}" ;;
  *) printf '%s\\n' "$OPTIO_GIT_PASSWORD" ;;
esac
"""
_askpass_lock = threading.Lock()
_askpass_file: Path | None = None


def _askpass() -> Path:
    """A small script that holds no secret itself, in a folder only this user can write.

    One folder per user, shared by this user's processes: a folder per process outlived every server that was
    killed (no exit handler runs on SIGKILL) and piled up in the temporary directory. The folder is used only
    when it is a real directory (not a link) owned by this user that no one else can write; otherwise the
    process makes a private one of its own, removed at exit.
    """
    global _askpass_file
    with _askpass_lock:
        if _askpass_file is None or not _askpass_file.is_file():
            folder = _shared_askpass_dir()
            if folder is None:
                folder = Path(tempfile.mkdtemp(prefix="optio-askpass-"))
                atexit.register(shutil.rmtree, folder, True)
            script = folder / "askpass"
            if not _holds_script(script):
                # Written beside and renamed into place: a git started meanwhile never runs half a script.
                fd, partial = tempfile.mkstemp(dir=folder, prefix=".askpass-")
                with os.fdopen(fd, "w") as out:
                    out.write(_ASKPASS_SCRIPT)
                os.chmod(partial, stat.S_IRWXU)
                os.replace(partial, script)
            _askpass_file = script
        return _askpass_file


def _shared_askpass_dir() -> Path | None:
    folder = Path(tempfile.gettempdir()) / f"optio-askpass-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        info = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return folder


def _holds_script(script: Path) -> bool:
    try:
        info = os.lstat(script)
        return (stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022
                and script.read_text() == _ASKPASS_SCRIPT)
    except OSError:
        return False


def is_local_remote(url: str) -> bool:
    """A path or ``file://`` URL, as opposed to a network remote (``scheme://`` or scp-like ``host:path``)."""
    if url.startswith("file://"):
        return True
    if "://" in url:
        return False
    head = url.split("/", 1)[0]
    return ":" not in head or os.path.exists(url)


def remote_host(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a network remote; scp-like ``user@host:path`` counts as ssh."""
    if "://" in url:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise UnsafeURLError("remote URL has an invalid port") from None
        return parts.scheme.lower(), (parts.hostname or ""), port
    head = url.split(":", 1)[0]
    if "::" in url.split("/", 1)[0] or not re.fullmatch(r"(?:[^@\s/]+@)?[\w.\-\[\]]+", head):
        # `transport::address` runs a remote helper (`ext::` runs a shell command); never Optio's to run.
        raise UnsafeURLError("remote is neither a URL nor host:path")
    host = head.rsplit("@", 1)[-1]
    return "ssh", host.strip("[]").lower(), None


@dataclass(frozen=True)
class RemoteAccess:
    """What one remote operation may do: its transport, the pinned address, and the credential."""

    config: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict, repr=False)


def remote_access(
    url: str,
    *,
    credential: str | None = None,
    username: str | None = None,
    allowlist: Sequence[str] | Allowlist = (),
    resolver: Resolver = socket.getaddrinfo,
) -> RemoteAccess:
    """The extra git config and environment for one fetch/push/ls-remote against ``url``.

    Called right before each operation, so the address checked is the one git
    connects to (pinned with ``http.curloptResolve``); a name that resolves
    somewhere internal by now is refused even if it was fine when the repo was
    added. ``username`` is what the forge expects beside a token (GitHub's ``x-access-token``, which an
    App's installation token requires); a user name in the URL wins. Raises :class:`UnsafeURLError`.
    """
    if is_local_remote(url):
        # A local path: only the file transport (validated when the repo was registered).
        # A local remote is a server like any other: its own config and hooks (a pre-receive policy) apply on its
        # side, so the receiving git does not inherit Optio's command-line config; only Optio's side is locked.
        return RemoteAccess(config=(*LOCAL_TRANSPORT, *_LOCAL_SERVER_SIDE))
    scheme, host, port = remote_host(url)
    config: list[str] = []
    env: dict[str, str] = {}
    if scheme in ("http", "https"):
        pinned_host, pinned_port, address = pin_url(url, allowlist=allowlist, resolver=resolver)
        config += ["-c", f"protocol.{scheme}.allow=always", "-c", "http.followRedirects=false"]
        if address is not None:
            shown = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
            config += ["-c", f"http.curloptResolve={pinned_host}:{pinned_port}:{shown}"]
    elif scheme in ("ssh", "git"):
        # The guard speaks http(s); for ssh and git only the host matters, so it is checked as one.
        shown_host = f"[{host}]" if ":" in host else host
        pin_url(f"http://{shown_host}:{port or 80}/", allowlist=allowlist, resolver=resolver)
        config += ["-c", f"protocol.{scheme}.allow=always"]
    else:
        raise UnsafeURLError(f"unsupported remote scheme {scheme!r}")
    if credential:
        env.update(
            {
                "GIT_ASKPASS": str(_askpass()),
                "OPTIO_GIT_PASSWORD": credential,
                # A server that needs a particular user name gets it from the URL (https://alice@host/x.git).
                "OPTIO_GIT_USERNAME": (urlsplit(url).username if "://" in url else None) or username or "optio",
            }
        )
    return RemoteAccess(config=tuple(config), env=env)



def git_argv(*args: str) -> list[str]:
    """``git`` with the fixed command-line config every Optio git call carries, then ``args``."""
    return ["git", *_CONFIG_ARGS, *args]


def run_git(
    args: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
    config: Sequence[str] = (),
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``git <args>`` in ``cwd``; raise GitError on failure when ``check``.

    ``config`` is extra ``-c key=value`` arguments (e.g. from :func:`remote_access`)
    and ``env`` extra environment; neither may carry a secret into ``argv``.
    A timeout always raises, even with ``check=False``: a hung git (a credential
    prompt that slipped through, a dead network mount) is never a normal answer.
    """
    argv = git_argv(*config, *args)
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=git_env(env),
            stdin=subprocess.DEVNULL if input is None else None,
            input=input,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise GitError(
            args, None, stderr, message=f"git {' '.join(args)} timed out after {timeout:g}s"
        ) from exc
    if check and proc.returncode != 0:
        raise GitError(args, proc.returncode, proc.stderr or proc.stdout)
    return proc
