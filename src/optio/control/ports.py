"""The ports: everything the control plane may ask of the outside world, as small typed protocols.

Control depends on these and on nothing concrete, so a GitHub forge, a Kubernetes runtime or a vault
plugs in by implementing them; tests pass in-memory fakes (`tests/support/fakes.py`). A repo's forge is
chosen per repo by its forge kind (`repos.forge`) through a :class:`ForgeRegistry`, so repos on
different forges coexist in one server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from optio.forge.base import (
    BadSignature,
    CiInfo,
    DiffFile,
    DiffSummary,
    ForgeBusy,
    ForgeEvent,
    LineComment,
    MergeRefused,
    PullRequestInfo,
    PullRequestState,
    ReviewInfo,
)
from optio.runtime.base import Runtime

__all__ = [
    "BadSignature",
    "CiInfo",
    "DiffFile",
    "DiffSummary",
    "Forge",
    "ForgeBusy",
    "ForgeEvent",
    "ForgeRegistry",
    "LineComment",
    "MergeRefused",
    "PullRequestInfo",
    "PullRequestState",
    "RedactorPort",
    "Redactors",
    "RepoRef",
    "ReviewInfo",
    "RunRef",
    "Runtime",
    "SecretsProvider",
    "UnknownForge",
    "WorktreeProvider",
    "Worktrees",
]


@dataclass(frozen=True)
class RunRef:
    """The run a secret is injected into, for the audit log."""

    kind: str
    run_id: int


class RepoRef(Protocol):
    """What a forge or a worktree provider needs to know of a repo (a store row or snapshot fact)."""

    @property
    def id(self) -> int: ...

    @property
    def remote_url(self) -> str: ...


class Worktrees(Protocol):
    """One repo's git cache and the task clones made from it (what control calls on `RepoCache`)."""

    def ensure(self) -> None: ...

    def fetch(self, *, max_age_s: float = 0.0) -> None:
        """Bring ``origin/*`` up to date; a fetch started at most ``max_age_s`` before the call will do."""
        ...

    def add_worktree(self, path: Path, branch: str, base_ref: str) -> str: ...

    def remove_worktree(self, path: Path) -> None: ...

    def sync_clone(self, clone: Path) -> None:
        """Bring a task clone's ``origin/*`` to the cache's, so a rebase sees the base as it is now."""
        ...

    def commit_all(self, worktree: Path, message: str) -> str | None: ...

    def head_sha(self, worktree: Path) -> str:
        """The commit the clone's HEAD is on."""
        ...

    def commits_ahead(self, worktree: Path, base_ref: str, *, head: str | None = None) -> int: ...

    def push_branch(self, worktree: Path, branch: str, *, head: str | None = None) -> str:
        """Push the clone's HEAD (``head``, when the caller just read it) to ``branch``; the pushed sha."""
        ...

    def export_tree(self, sha: str, dest: Path) -> str:
        """A plain (no .git) copy of the tree at ``sha`` in ``dest``; the full sha exported."""
        ...

    def delete_remote_branch(self, branch: str) -> None:
        """Best effort: remove a finished task's branch from the remote (a failure is only logged)."""
        ...


class WorktreeProvider(Protocol):
    def for_repo(self, repo: RepoRef) -> Worktrees: ...

    def forget(self, repo_id: int) -> None:
        """Drop a removed repo's cache (its directory and any handle kept on it)."""
        ...


class Forge(Protocol):
    """A git platform's pull requests, CI, reviews and merges, as the repo loop needs them."""

    name: str

    def open_or_update_pr(self, repo_id: int, task_id: int, *, head_branch: str, head_sha: str, title: str,
                          body: str) -> PullRequestInfo: ...

    def get_pr(self, repo_id: int, number: int) -> PullRequestInfo: ...

    def pr_for_task(self, repo_id: int, task_id: int) -> PullRequestState | None:
        """The task's PR with its CI on the current head and its latest review; None before it has one."""
        ...

    def ci_for_head(self, repo_id: int, number: int) -> CiInfo | None: ...

    def latest_review(self, repo_id: int, number: int) -> ReviewInfo | None: ...

    def diff_summary(self, repo_id: int, number: int) -> DiffSummary:
        """The files the PR changes (base...head: what merging it would bring), with +/- line counts."""
        ...

    def submit_review(self, repo_id: int, number: int, *, verdict: str, comments: str, author: str,
                      line_comments: tuple[LineComment, ...] = ()) -> ReviewInfo:
        """Post a review; ``line_comments`` go on lines of the head where the forge supports it."""
        ...

    def merge(self, repo_id: int, number: int, *, head_sha: str, message: str, force: bool = False) -> str:
        """Squash-merge ``head_sha`` past the forge's own gates (green CI, approval); ``force`` skips them."""
        ...

    def close(self, repo_id: int, number: int) -> None: ...

    def rerun_ci(self, repo_id: int, number: int) -> None:
        """Schedule the repo's CI again on the PR's current head (a person's request, e.g. after a flaky run)."""
        ...

    def parse_event(self, repo_id: int, headers: Mapping[str, str], body: bytes) -> list[ForgeEvent]:
        """A webhook delivery to ``repo_id``'s hook, verified and parsed: the PRs it changes (empty when none).

        Raises :class:`BadSignature` when the delivery's signature or token does not verify against the
        repo's webhook secret. Deduplicating deliveries is the caller's business.
        """
        ...

    def poll_open_prs(self) -> int:
        """The watcher's safety net: refresh every open PR; how many were looked at."""
        ...

    def recover(self) -> None: ...

    def shutdown(self) -> None: ...


class UnknownForge(LookupError):
    """A repo names a forge kind this server has no implementation for."""


class ForgeRegistry:
    """The forges of one server, by kind; a repo's forge is the one its `forge` column names."""

    def __init__(self, forges: Mapping[str, Forge]) -> None:
        self._forges = dict(forges)

    def get(self, kind: str) -> Forge:
        try:
            return self._forges[kind]
        except KeyError:
            raise UnknownForge(f"no forge of kind {kind!r} is configured (known: {sorted(self._forges)})") from None

    def kinds(self) -> list[str]:
        return sorted(self._forges)

    def all(self) -> Iterable[Forge]:
        return list(self._forges.values())


class SecretsProvider(Protocol):
    def env_for(self, workspace_id: int, names: list[str], repo_id: int | None = None, *,
                run: RunRef | None = None) -> dict[str, str]:
        """The named secrets (never more) as environment variables; each injection audited with ``run``."""
        ...


class RedactorPort(Protocol):
    def redact(self, text: str) -> str: ...


class Redactors(Protocol):
    """Redactors per scope: a workspace's secrets, plus a repo's for that repo's runs."""

    def for_scope(self, workspace_id: int, repo_id: int | None = None) -> RedactorPort: ...
