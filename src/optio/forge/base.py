"""The forge interface: what Optio needs from a git platform to drive a pull request to its end.

It is deliberately narrow — push a branch and open/update a PR, read its state, record reviews, merge,
close — so the GitHub, GitLab and Gitea adapters implement the same few calls as the local forge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PullRequestInfo:
    number: int
    state: str  # open | merged | closed
    title: str
    head_branch: str
    head_sha: str
    base_branch: str
    mergeable: bool | None
    conflicting_files: tuple[str, ...]
    merged_sha: str | None = None


@dataclass(frozen=True)
class CiInfo:
    head_sha: str
    status: str  # pending | passing | failing
    output: str


@dataclass(frozen=True)
class ReviewInfo:
    id: int
    head_sha: str
    verdict: str  # approve | request_changes
    comments: str
    author: str


class Forge(Protocol):
    name: str

    def open_or_update_pr(self, repo_id: int, task_id: int, *, head_branch: str, head_sha: str, title: str,
                          body: str) -> PullRequestInfo: ...

    def get_pr(self, repo_id: int, number: int) -> PullRequestInfo: ...

    def ci_for_head(self, repo_id: int, number: int) -> CiInfo | None: ...

    def latest_review(self, repo_id: int, number: int) -> ReviewInfo | None: ...

    def submit_review(self, repo_id: int, number: int, *, verdict: str, comments: str, author: str) -> ReviewInfo: ...

    def merge(self, repo_id: int, number: int, *, head_sha: str, message: str, force: bool = False) -> str: ...

    def close(self, repo_id: int, number: int) -> None: ...
