"""What a remote offers before Optio clones it: its branches and where its HEAD points.

Asked once when a repo is registered or its default branch changed, so a branch that does not exist is a
clear error at the API instead of a task that retries provisioning for ever.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from optio.forge.gitcmd import GitError, run_git

LS_REMOTE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RemoteRefs:
    branches: frozenset[str]
    head: str | None  # the branch the remote's HEAD names, when it says


def ls_remote(remote: str, *, config: Sequence[str] = (), env: Mapping[str, str] | None = None,
              timeout: float = LS_REMOTE_TIMEOUT_S) -> RemoteRefs:
    """Branches and HEAD of `remote`; raises GitError when it is not a reachable git repository.

    `config` (`-c key=value` pairs) and `env` are what the remote's access rules give this one call (transport,
    pinned address, credential). Runs from an empty directory so no repository around the server's working
    directory is involved, and with `--` so a remote can never be read as an option.
    """
    with tempfile.TemporaryDirectory(prefix="optio-ls-remote-") as empty:
        proc = run_git([*config, "ls-remote", "--symref", "--", remote], cwd=Path(empty), timeout=timeout,
                       env=dict(env) if env else None)
    branches: set[str] = set()
    head = None
    for line in proc.stdout.splitlines():
        if line.startswith("ref: "):
            target, _, name = line.removeprefix("ref: ").partition("\t")
            if name == "HEAD" and target.startswith("refs/heads/"):
                head = target.removeprefix("refs/heads/")
            continue
        _sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            branches.add(ref.removeprefix("refs/heads/"))
    return RemoteRefs(branches=frozenset(branches), head=head)


def is_valid_branch_name(name: str) -> bool:
    """Whether git accepts `name` as a branch (`git check-ref-format --branch`), and it cannot pass as an option."""
    if not name or name.startswith("-"):
        return False
    with tempfile.TemporaryDirectory(prefix="optio-ref-check-") as empty:
        try:
            proc = run_git(["check-ref-format", "--branch", name], cwd=Path(empty), timeout=30, check=False)
        except GitError:
            return False
    return proc.returncode == 0 and proc.stdout.strip() == name
