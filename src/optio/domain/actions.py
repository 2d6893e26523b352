"""The closed set of things a decision can ask the executor to do.

A decision returns exactly one action; the executor is the only code that turns an action into writes
and side effects. Keeping the set closed (a union of frozen dataclasses) lets tests check every
decision against the state machine without running anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Transition:
    """Move the run to `to`. `patch` sets other columns in the same compare-and-swap write.

    The run is looked at again `recheck_after_s` after the move (at once by default); an event about it (a
    freed slot, its agent's exit, its CI) wakes it sooner, so a decision that knows the next look would find
    nothing to do puts it off instead of paying for it.
    """

    to: str
    reason: str
    patch: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    kill_process: bool = False
    clear_intent: bool = False
    event: str | None = None
    recheck_after_s: float = 0.0
    name: ClassVar[str] = "transition"


@dataclass(frozen=True)
class StartAgent:
    """Move the run to `to` and launch its agent process (the `enqueue_agent` action).

    `prompt` overrides the run's stored prompt (resumes carry their own); `resume_reason` names why an
    agent is being started again, for events and the resume counters. `recheck_after_s` as for `Transition`:
    the agent's exit wakes the run, so the next look can wait for the watch interval.
    """

    to: str
    reason: str
    prompt: str | None = None
    resume_reason: str | None = None
    resume_key: str | None = None
    patch: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    clear_intent: bool = False
    event: str | None = None
    recheck_after_s: float = 0.0
    name: ClassVar[str] = "start"


@dataclass(frozen=True)
class PatchStatus:
    """Update bookkeeping columns without changing state (still a compare-and-swap write)."""

    patch: Mapping[str, Any]
    reason: str
    event: str | None = None
    name: ClassVar[str] = "patch_status"


@dataclass(frozen=True)
class DeferWithBackoff:
    """Look again later. `count_attempt` marks a failure to read or act, which grows the backoff."""

    reason: str
    delay_s: float
    count_attempt: bool = False
    name: ClassVar[str] = "defer_with_backoff"


@dataclass(frozen=True)
class ClearControlIntent:
    """Drop a control intent that has nothing left to do (e.g. cancel on an already finished run)."""

    reason: str
    name: ClassVar[str] = "clear_control_intent"


@dataclass(frozen=True)
class Noop:
    """Nothing to do now. `recheck_after_s` asks for another look without counting a failure."""

    reason: str
    recheck_after_s: float | None = None
    name: ClassVar[str] = "noop"


# --- repo task actions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provision:
    """Move a queued repo task to provisioning and prepare its worktree."""

    reason: str
    to: str = "provisioning"
    name: ClassVar[str] = "provision"


@dataclass(frozen=True)
class OpenPullRequest:
    """The agent finished with changes: commit leftovers, push the branch, open the PR."""

    reason: str
    to: str = "pr_opened"
    name: ClassVar[str] = "open_pr"


@dataclass(frozen=True)
class LaunchReview:
    """Run the repo's review agent on the PR head."""

    reason: str
    head_sha: str
    name: ClassVar[str] = "launch_review"


@dataclass(frozen=True)
class PostReview:
    """A review agent wrote a valid review file: post it on the PR through the forge, then complete the run."""

    reason: str
    verdict: str
    to: str = "completed"
    name: ClassVar[str] = "post_review"


@dataclass(frozen=True)
class MergePullRequest:
    """Squash-merge the PR; the task completes once the forge confirms the merge."""

    reason: str
    head_sha: str
    to: str = "completed"
    name: ClassVar[str] = "merge_pr"


Action = (
    Transition
    | StartAgent
    | PatchStatus
    | DeferWithBackoff
    | ClearControlIntent
    | Noop
    | Provision
    | OpenPullRequest
    | LaunchReview
    | PostReview
    | MergePullRequest
)


def target_state(action: Action) -> str | None:
    """The state an action moves its run to, or None for actions that keep the state."""
    return getattr(action, "to", None)
