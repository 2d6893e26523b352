"""Frozen views of everything the repo task decision may look at.

The snapshot builder fills these from the run row, the repo settings, the forge and the process
table; the decision only reads them. Pull request facts are normalised here (plain strings, `None`
meaning "not known / not configured") so the decision never depends on a particular forge's vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from optio.domain.snapshot import Capacity, ExecutorErrorPolicy, ProcessView, RunView

PrState = Literal["open", "merged", "closed"]
# "error": the CI command could not test the code at all (not found, not executable, timed out).
CiStatus = Literal["pending", "passing", "failing", "error"]
ReviewStatus = Literal["approved", "changes_requested"]
ReviewVerdict = Literal["approve", "request_changes"]


@dataclass(frozen=True)
class RepoView:
    """The repo settings that change how a task's pull request is driven to its end."""

    require_approval: bool = True
    auto_merge: bool = False
    has_review_agent: bool = False
    max_concurrent: int | None = None


@dataclass(frozen=True)
class DependencyView:
    """Another repo task this one waits for; `state` is a RepoTaskState value."""

    id: int
    state: str


@dataclass(frozen=True)
class PullRequestView:
    """The task's pull request as the forge reports it.

    `mergeable` is None while the forge has not computed it yet, and `ci_status` is None when the repo has
    no CI at all, so "unknown" is never mistaken for "fine". The review fields describe the latest review
    on any head; `review_head_sha` tells whether it still applies to the current head.
    """

    number: int
    state: PrState
    head_sha: str
    base_sha: str | None = None
    mergeable: bool | None = None
    conflicting_files: tuple[str, ...] = ()
    ci_status: CiStatus | None = None
    ci_output_tail: str = ""
    # With ci_status "error": not_found | not_executable | timeout | could_not_run (None when unknown).
    ci_failure_kind: str | None = None
    ci_duration_s: float | None = None
    # The base tip CI merged the head onto (None when the forge tested the head alone): a CI result holds
    # for the pair (head, base), so a failure on a new base is a new failure.
    ci_base_sha: str | None = None
    review_status: ReviewStatus | None = None
    review_id: int | None = None
    review_comments: tuple[str, ...] = ()
    review_head_sha: str | None = None
    # The latest review came from a person (not a review agent): their requested changes are a human-requested
    # resume, which the automatic resume cap does not count.
    review_by_person: bool = False


@dataclass(frozen=True)
class ReviewRunView:
    """The latest review-agent run of the task; `state` is a PrReviewState value.

    The executor records the agent's verdict as a review on the pull request, so the decision reads the
    verdict from `PullRequestView.review_status`; this view answers "did the agent already look at this head".
    """

    id: int
    state: str
    head_sha: str
    verdict: ReviewVerdict | None = None


@dataclass(frozen=True, kw_only=True)
class RepoTaskSnapshot:
    """One consistent read of a repo task and everything around it, taken at `now`.

    `resume_keys` holds the keys of automatic resumes already done (one per failure per commit or review),
    which is what stops the feedback loop from retrying the same thing forever.
    """

    now: datetime
    run: RunView
    title: str
    prompt: str
    base_branch: str
    repo: RepoView
    max_retries: int
    max_auto_resumes: int
    dependencies: tuple[DependencyView, ...] = ()
    process: ProcessView | None = None
    capacity: Capacity = field(default_factory=Capacity)
    pr: PullRequestView | None = None
    review_run: ReviewRunView | None = None
    worktree_ready: bool = False
    resume_count: int = 0
    human_resumes: int = 0
    resume_keys: frozenset[str] = frozenset()
    stall_threshold_s: float = 900.0
    provisioning_since: datetime | None = None
    read_error: str | None = None
    intent_note: str = ""
    executor_errors: ExecutorErrorPolicy = field(default_factory=ExecutorErrorPolicy)
