"""Which git remotes a workspace may register, and when two remotes are the same repository.

A local path (or `file://` URL) makes Optio read — and push to — a directory on the server's own disk. So a
local remote is allowed only under roots a server administrator chose (`OPTIO_LOCAL_REMOTE_ROOTS`; anywhere
with `OPTIO_AUTH=disabled`, the single-user laptop), never inside Optio's data dir (where every workspace's
repo caches and worktrees live). The check is made on the path with symlinks and `..` resolved, and again on
the git directory git would really open (a `.git` file or `commondir` may point elsewhere, and `objects/info/
alternates` lends another repository's objects). A path that is refused gets one message whether or not it
exists, so the API cannot be used to probe the host.

A remote registered by one workspace is refused to every other: comparing `identity()` keys catches the same
repository written differently (`file://` vs path, a symlink, `x.git` vs `x/.git`, `https` vs `ssh`).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from optio.errors import Invalid

NETWORK_SCHEMES = ("http", "https", "ssh", "git")
REFUSED = ("local remotes must be inside a directory the server administrator allows (OPTIO_LOCAL_REMOTE_ROOTS) "
           "and outside Optio's data directory")
# The places git's `enter_repo` looks for a repository given a path, in its order.
_GIT_SUFFIXES = ("/.git", "", ".git/.git", ".git")
_MAX_LINKS = 5


@dataclass(frozen=True)
class LocalRemotePolicy:
    roots: tuple[Path, ...] | None  # None: anywhere (single-user setup)
    data_dir: Path

    @classmethod
    def of(cls, roots: list[Path] | None, data_dir: Path) -> LocalRemotePolicy:
        real = None if roots is None else tuple(Path(os.path.realpath(r)) for r in roots)
        return cls(roots=real, data_dir=Path(os.path.realpath(data_dir)))

    def allows(self, path: Path) -> bool:
        real = Path(os.path.realpath(path))
        if real == self.data_dir or real.is_relative_to(self.data_dir):
            return False
        return self.roots is None or any(real == root or real.is_relative_to(root) for root in self.roots)


def is_local(remote: str) -> bool:
    return urlparse(remote).scheme in ("", "file")


def check_remote(remote: str, policy: LocalRemotePolicy) -> str:
    """The form of `remote` to store: a network URL as given, a local remote as its resolved absolute path."""
    if not remote.isprintable() or not _utf8(remote):
        raise Invalid("remote must be printable text", field="remote_url")
    parsed = urlparse(remote)
    if parsed.scheme in NETWORK_SCHEMES:
        return remote
    if parsed.scheme not in ("", "file"):
        raise Invalid(f"unsupported remote scheme {parsed.scheme!r}", field="remote_url")
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or parsed.query or parsed.fragment or parsed.params:
            raise Invalid("a file:// remote is file:///absolute/path, with no host, query or fragment",
                          field="remote_url")
        raw = unquote(parsed.path)
    else:
        raw = remote
    if "\x00" in raw:
        raise Invalid("remote must be printable text", field="remote_url")
    path = Path(os.path.realpath(Path(raw).expanduser()))
    # Refusals first and alike, so nothing about a path outside the roots (does it exist? is it a repo?) shows.
    if not policy.allows(path) or not all(policy.allows(p) for p in git_paths(path)):
        raise Invalid(REFUSED, field="remote_url")
    if not path.exists():
        raise Invalid(f"remote {remote!r} does not exist", field="remote_url")
    return str(path)


def identity(remote: str) -> str:
    """A key equal for two spellings of one repository (as far as can be told without asking a server)."""
    parsed = urlparse(remote)
    if parsed.scheme in ("", "file"):
        path = Path(os.path.realpath(Path(unquote(parsed.path) if parsed.scheme == "file" else remote)))
        found = git_paths(path)
        return f"path:{found[0] if found else path}"
    host = (parsed.hostname or "").lower().rstrip(".")
    tail = posixpath.normpath("/" + unquote(parsed.path)).rstrip("/").removesuffix(".git").rstrip("/")
    return f"net:{host}{tail}"


def git_paths(path: Path) -> list[Path]:
    """The git directory git would open for `path` (first), then every other directory it would read objects
    from: its common dir and its alternates. Empty when `path` holds no repository."""
    git_dir = _find_git_dir(path)
    if git_dir is None:
        return []
    found = [git_dir]
    common = _read_pointer(git_dir / "commondir", git_dir)
    if common is not None:
        found.insert(0, common)
    objects = found[0] / "objects"
    seen: set[Path] = set()
    queue = [objects]
    while queue and len(seen) < _MAX_LINKS:
        current = queue.pop()
        alternates = current / "info" / "alternates"
        if current in seen or not alternates.is_file():
            continue
        seen.add(current)
        for line in _read_lines(alternates):
            if line and not line.startswith("#"):
                target = Path(os.path.realpath(current / line))
                found.append(target)
                queue.append(target)
    return found


def _find_git_dir(path: Path) -> Path | None:
    for suffix in _GIT_SUFFIXES:
        candidate = Path(str(path) + suffix) if suffix else path
        if candidate.is_file():
            target = _read_gitfile(candidate)
            if target is not None and _looks_like_git_dir(target):
                return target
        elif _looks_like_git_dir(candidate):
            return Path(os.path.realpath(candidate))
    return None


def _looks_like_git_dir(path: Path) -> bool:
    return (path / "HEAD").is_file() and ((path / "objects").is_dir() or (path / "commondir").is_file())


def _read_gitfile(path: Path) -> Path | None:
    lines = _read_lines(path)
    if not lines or not lines[0].startswith("gitdir: "):
        return None
    return Path(os.path.realpath(path.parent / lines[0].removeprefix("gitdir: ").strip()))


def _read_pointer(path: Path, base: Path) -> Path | None:
    lines = _read_lines(path) if path.is_file() else []
    return Path(os.path.realpath(base / lines[0].strip())) if lines and lines[0].strip() else None


def _read_lines(path: Path) -> list[str]:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return handle.read(64 * 1024).splitlines()
    except OSError:
        return []


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a JSON body
        return False
    return True
