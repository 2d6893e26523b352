"""The git exchange between Optio and its agent pods, served by Optio over git's smart-HTTP protocol.

A pod never gets forge credentials, and never pushes to the forge. For each pod Optio keeps a bare exchange
repository with two branches: ``base``, the head of the task's worktree as Optio prepared it (the pod's init
container clones it), and ``result``, which the pod's wrapper pushes once the agent has ended: the agent's commits
plus one marker commit of whatever it left uncommitted. The token that opens a pod's repository is an HMAC of the
pod's name under a key only this server's data dir holds; it opens that repository only, and only ``result`` may be
pushed there (a ``pre-receive`` hook refuses every other ref). Once the pod has ended, Optio fetches ``result``
into its own worktree and undoes the marker commit, so the worktree looks exactly as if the agent had run locally:
what reaches the forge is decided by the control plane as for any agent (commit, gates, push).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from optio.security import private_file

BASE = "base"
RESULT = "result"
UNCOMMITTED_MARKER = "optio: uncommitted changes of the agent"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_PRE_RECEIVE = f"""#!/bin/sh
# Only the pod's result branch may be pushed here.
while read old new ref; do
  if [ "$ref" != "refs/heads/{RESULT}" ]; then echo "optio: only refs/heads/{RESULT} may be pushed" >&2; exit 1; fi
done
"""

# Run in the pod after the agent: hand back the worktree (its commits, plus a marker commit of what is left).
WRAPPER_SCRIPT = (
    '"$@"; c=$?; '
    "git add -A >/dev/null 2>&1; "
    "git diff --cached --quiet 2>/dev/null || "
    f"git -c user.name=optio -c user.email=optio@localhost commit -q --no-verify -m '{UNCOMMITTED_MARKER}' "
    ">/dev/null 2>&1; "
    f"git push -q origin HEAD:refs/heads/{RESULT} >/dev/null 2>&1 || "
    'echo "optio: could not hand back the worktree" >&2; '
    'exit "$c"'
)


def _git_env() -> dict[str, str]:
    """A git environment that reads no user or system config (the worktree's own config is Optio's)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0", "LANG": "C.UTF-8"}


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-c", "core.hooksPath=/dev/null", *args], cwd=cwd, env=_git_env(),
                          capture_output=True, text=True, timeout=300, check=False)


class PodGitError(RuntimeError):
    """The exchange could not be prepared or read; the message says which step."""


class PodGit:
    """The exchange repositories under ``root`` (in the data dir) and the key of their tokens."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _key(self) -> bytes:
        path = self.root / ".key"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = secrets.token_bytes(32)
            with private_file.open_private(path) as fh:
                fh.write(key)
            return path.read_bytes()

    def repo(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise PodGitError(f"not a pod name: {name!r}")
        return self.root / f"{name}.git"

    def token(self, name: str) -> str:
        return hmac.new(self._key(), f"pod-git:{name}".encode(), hashlib.sha256).hexdigest()

    def authorized(self, name: str, token: str | None) -> bool:
        if not token or not _NAME.fullmatch(name) or not self.repo(name).is_dir():
            return False
        return hmac.compare_digest(self.token(name), token)

    def publish(self, name: str, worktree: Path) -> None:
        """Make the pod's exchange repository with ``base`` at the worktree's HEAD."""
        repo = self.repo(name)
        if repo.exists():
            shutil.rmtree(repo)
        repo.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for args, where in ((("init", "-q", "--bare", str(repo)), None),
                            (("push", "-q", "--force", str(repo), f"HEAD:refs/heads/{BASE}"), worktree),
                            (("symbolic-ref", "HEAD", f"refs/heads/{BASE}"), repo),
                            (("config", "http.receivepack", "true"), repo)):
            result = _git(*args, cwd=where)
            if result.returncode != 0:
                raise PodGitError(f"git {args[0]} for {name}: {result.stderr.strip()[:500]}")
        hook = repo / "hooks" / "pre-receive"
        hook.write_text(_PRE_RECEIVE)
        hook.chmod(0o700)

    def collect(self, name: str, worktree: Path) -> bool:
        """Bring the pod's ``result`` into ``worktree``; False when the pod handed nothing back."""
        repo = self.repo(name)
        if not (repo / "refs" / "heads" / RESULT).exists() and _git("rev-parse", "--verify", "-q",
                                                                    f"refs/heads/{RESULT}", cwd=repo).returncode:
            return False
        fetched = _git("fetch", "-q", "--no-tags", str(repo), f"refs/heads/{RESULT}", cwd=worktree)
        if fetched.returncode != 0:
            raise PodGitError(f"fetching the result of {name}: {fetched.stderr.strip()[:500]}")
        for args in (("reset", "-q", "--hard", "FETCH_HEAD"),):
            done = _git(*args, cwd=worktree)
            if done.returncode != 0:
                raise PodGitError(f"git {args[0]} for {name}: {done.stderr.strip()[:500]}")
        subject = _git("log", "-1", "--format=%s", cwd=worktree).stdout.strip()
        if subject == UNCOMMITTED_MARKER:
            _git("reset", "-q", "--mixed", "HEAD~1", cwd=worktree)  # the changes stay, uncommitted, as left
        return True

    def remove(self, name: str) -> None:
        shutil.rmtree(self.repo(name), ignore_errors=True)

    def serve(self, name: str, method: str, path: str, query: str, body: bytes,
              headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        """One smart-HTTP request, answered by ``git http-backend`` for this pod's repository only."""
        if path not in ("info/refs", "git-upload-pack", "git-receive-pack"):
            return 404, {}, b"not found"
        env = _git_env() | {
            "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": method,
            "PATH_INFO": f"/{self.repo(name).name}/{path}", "QUERY_STRING": query, "REMOTE_USER": name,
            "CONTENT_TYPE": headers.get("content-type", ""), "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": headers.get("content-encoding", ""),
            "HTTP_GIT_PROTOCOL": headers.get("git-protocol", ""),
        }
        result = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=300,
                                check=False)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = result.stdout.partition(b"\n\n")
        status, answer = 200, {}
        for line in head.decode("latin-1").splitlines():
            field, _, value = line.partition(":")
            if field.lower() == "status":
                status = int(value.strip().split()[0])
            elif field:
                answer[field.strip()] = value.strip()
        return status, answer, payload
