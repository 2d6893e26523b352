"""Run kinds, their states and the transitions the reconciler may take between them.

The tables here are the single authority on which state changes are legal: the executor checks every
transition against them before writing, so a bug in a decision function surfaces as a clear error
instead of a corrupted run.
"""

from __future__ import annotations

from enum import StrEnum


class RunKind(StrEnum):
    REPO_TASK = "repo_task"
    JOB_RUN = "job_run"
    PR_REVIEW = "pr_review"
    AGENT = "agent"


class RepoTaskState(StrEnum):
    PENDING = "pending"
    WAITING_ON_DEPS = "waiting_on_deps"
    QUEUED = "queued"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    NEEDS_ATTENTION = "needs_attention"
    PR_OPENED = "pr_opened"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobRunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PrReviewState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AgentState(StrEnum):
    IDLE = "idle"
    QUEUED = "queued"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    PAUSED = "paused"
    FAILED = "failed"
    ARCHIVED = "archived"


class InvalidTransition(ValueError):
    """A decision asked for a state change the state machine forbids."""

    def __init__(self, kind: RunKind, from_state: str, to_state: str) -> None:
        allowed = sorted(TRANSITIONS[kind].get(from_state, frozenset()))
        super().__init__(
            f"invalid {kind.value} transition {from_state!r} -> {to_state!r}; "
            f"allowed from {from_state!r}: {', '.join(allowed) or 'none (terminal)'}"
        )
        self.kind = kind
        self.from_state = from_state
        self.to_state = to_state


_R = RepoTaskState
_J = JobRunState
_P = PrReviewState
_A = AgentState

TRANSITIONS: dict[RunKind, dict[str, frozenset[str]]] = {
    RunKind.REPO_TASK: {
        _R.PENDING: frozenset({_R.WAITING_ON_DEPS, _R.QUEUED, _R.FAILED, _R.CANCELLED}),
        _R.WAITING_ON_DEPS: frozenset({_R.QUEUED, _R.FAILED, _R.CANCELLED}),
        _R.QUEUED: frozenset({_R.PROVISIONING, _R.WAITING_ON_DEPS, _R.FAILED, _R.CANCELLED}),
        _R.PROVISIONING: frozenset({_R.RUNNING, _R.QUEUED, _R.FAILED, _R.CANCELLED, _R.NEEDS_ATTENTION}),
        _R.RUNNING: frozenset(
            {_R.PR_OPENED, _R.COMPLETED, _R.QUEUED, _R.FAILED, _R.CANCELLED, _R.NEEDS_ATTENTION}
        ),
        _R.PR_OPENED: frozenset(
            {_R.RUNNING, _R.COMPLETED, _R.FAILED, _R.CANCELLED, _R.NEEDS_ATTENTION, _R.QUEUED}
        ),
        _R.NEEDS_ATTENTION: frozenset({_R.QUEUED, _R.PR_OPENED, _R.RUNNING, _R.COMPLETED, _R.FAILED, _R.CANCELLED}),
        _R.COMPLETED: frozenset(),
        _R.FAILED: frozenset({_R.QUEUED}),
        _R.CANCELLED: frozenset({_R.QUEUED}),
    },
    RunKind.JOB_RUN: {
        _J.QUEUED: frozenset({_J.RUNNING, _J.FAILED, _J.CANCELLED}),
        _J.RUNNING: frozenset({_J.QUEUED, _J.COMPLETED, _J.FAILED, _J.CANCELLED}),
        _J.COMPLETED: frozenset(),
        _J.FAILED: frozenset({_J.QUEUED}),
        _J.CANCELLED: frozenset({_J.QUEUED}),
    },
    RunKind.PR_REVIEW: {
        _P.QUEUED: frozenset({_P.RUNNING, _P.FAILED, _P.CANCELLED}),
        _P.RUNNING: frozenset({_P.QUEUED, _P.COMPLETED, _P.FAILED, _P.CANCELLED}),
        _P.COMPLETED: frozenset(),
        _P.FAILED: frozenset({_P.QUEUED}),
        _P.CANCELLED: frozenset({_P.QUEUED}),
    },
    RunKind.AGENT: {
        _A.IDLE: frozenset({_A.QUEUED, _A.PAUSED, _A.ARCHIVED}),
        _A.QUEUED: frozenset({_A.PROVISIONING, _A.IDLE, _A.PAUSED, _A.FAILED, _A.ARCHIVED}),
        _A.PROVISIONING: frozenset({_A.RUNNING, _A.QUEUED, _A.IDLE, _A.PAUSED, _A.FAILED, _A.ARCHIVED}),
        _A.RUNNING: frozenset({_A.IDLE, _A.QUEUED, _A.PAUSED, _A.FAILED, _A.ARCHIVED}),
        _A.PAUSED: frozenset({_A.IDLE, _A.QUEUED, _A.ARCHIVED}),
        _A.FAILED: frozenset({_A.IDLE, _A.ARCHIVED}),
        _A.ARCHIVED: frozenset(),
    },
}

# States from which a run never moves on by itself. Failed and cancelled runs can still be retried by a
# person (a control intent), which is why they have outgoing edges above.
TERMINAL: dict[RunKind, frozenset[str]] = {
    RunKind.REPO_TASK: frozenset({_R.COMPLETED, _R.FAILED, _R.CANCELLED}),
    RunKind.JOB_RUN: frozenset({_J.COMPLETED, _J.FAILED, _J.CANCELLED}),
    RunKind.PR_REVIEW: frozenset({_P.COMPLETED, _P.FAILED, _P.CANCELLED}),
    RunKind.AGENT: frozenset({_A.ARCHIVED}),
}


def states_of(kind: RunKind) -> frozenset[str]:
    return frozenset(TRANSITIONS[kind])


def is_terminal(kind: RunKind, state: str) -> bool:
    return state in TERMINAL[kind]


def can_transition(kind: RunKind, from_state: str, to_state: str) -> bool:
    return to_state in TRANSITIONS[kind].get(from_state, frozenset())


def check_transition(kind: RunKind, from_state: str, to_state: str) -> None:
    """Raise InvalidTransition unless the state machine of `kind` allows from_state -> to_state."""
    if from_state not in TRANSITIONS[kind]:
        raise InvalidTransition(kind, from_state, to_state)
    if not can_transition(kind, from_state, to_state):
        raise InvalidTransition(kind, from_state, to_state)
