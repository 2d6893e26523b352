"""Running the git CLI with a predictable environment.

Optio drives git as a subprocess on behalf of many tasks at once, often from a
server started inside someone's shell (or inside a git hook). Anything the
caller's environment says about which repository, index or identity to use
would silently redirect those operations, so every call here starts from a
scrubbed environment and a fixed identity.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

IDENTITY_NAME = "Optio"
IDENTITY_EMAIL = "optio@localhost"

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
    """Environment for Optio's own git calls: no prompts, C locale, Optio's identity.

    Author/committer variables are set explicitly because they win over ``-c
    user.name`` and a caller's shell may export them.
    """
    env = scrubbed_env()
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
            "LANG": "C",
            "GIT_AUTHOR_NAME": IDENTITY_NAME,
            "GIT_AUTHOR_EMAIL": IDENTITY_EMAIL,
            "GIT_COMMITTER_NAME": IDENTITY_NAME,
            "GIT_COMMITTER_EMAIL": IDENTITY_EMAIL,
        }
    )
    if extra:
        env.update(extra)
    return env


def run_git(
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``git <args>`` in ``cwd``; raise GitError on failure when ``check``.

    A timeout always raises, even with ``check=False``: a hung git (a credential
    prompt that slipped through, a dead network mount) is never a normal answer.
    """
    argv = ["git", *_CONFIG_ARGS, *args]
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=git_env(env),
            stdin=subprocess.DEVNULL,
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
