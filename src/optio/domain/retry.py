"""The one retry rule: what a failed attempt of any run (job run, repo task, review) leads to.

Each run kind used to word and count its own retries; now they all ask `decide_retry`, and the only
policy it reads is the error-policy table in `optio.domain.agent_errors`, the same one the agent
adapters use to mark an error retryable. A run kind only decides what the outcome means for its own
states (a repo task with a pull request goes to a person instead, for instance).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from optio.domain.agent_errors import ErrorKind, as_error_kind, policy_for
from optio.domain.backoff import backoff_seconds
from optio.domain.snapshot import ProcessView

RetryOutcome = Literal["retry", "give_up", "fail_fast"]

# A failure nobody classified (the process vanished, Optio's own timeout, a stall) is treated as an unknown one.
_UNCLASSIFIED: ErrorKind = "unknown"


@dataclass(frozen=True)
class Failure:
    """Why an attempt failed: the worded reason, and the classified kind when an adapter could tell."""

    why: str
    kind: ErrorKind | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True)
class RetryDecision:
    """Retry after `delay_s`, give up (retries used up), or fail fast (retrying cannot help)."""

    outcome: RetryOutcome
    why: str
    reason: str
    delay_s: float = 0.0


def classified_failure(default_why: str, kind: str | None, message: str | None = None,
                       retry_after_s: float | None = None) -> Failure:
    """A failure worded for the run's history, with the classifier's message when there is one."""
    error_kind = as_error_kind(kind)
    if error_kind is None:
        return Failure(why=default_why)
    text = message or default_why
    if not policy_for(error_kind).retry:
        why = f"{kind}: {text}"
    elif error_kind == "rate_limited":
        why = f"rate limited: {text}"
    else:
        why = f"{default_why} ({kind}: {text})"
    return Failure(why=why, kind=error_kind, retry_after_s=retry_after_s if error_kind == "rate_limited" else None)


def process_failure(proc: ProcessView | None, default_why: str) -> Failure:
    """The failure a process's recorded classification describes; `default_why` when it has none."""
    if proc is None:
        return Failure(why=default_why)
    return classified_failure(default_why, proc.failure_kind, proc.error, proc.retry_after_s)


def decide_retry(failure: Failure, *, attempt: int, max_retries: int, seed: int) -> RetryDecision:
    """Attempt `attempt` (1-based) failed: retry while the budget lasts, unless the kind never retries.

    The budget is `max_retries` attempts after the first, plus the kind's extra attempts. The delay is the
    run's jittered backoff, or the vendor's retry-after when that is longer.
    """
    policy = policy_for(failure.kind or _UNCLASSIFIED)
    head = f"attempt {attempt} failed: {failure.why}"
    if not policy.retry:
        return RetryDecision("fail_fast", failure.why, f"{head}; not retried")
    if attempt <= max_retries + policy.extra_attempts:
        delay = max(backoff_seconds(attempt, seed=seed), failure.retry_after_s or 0.0)
        return RetryDecision("retry", failure.why, f"{head}; retrying in {delay:.1f}s", delay_s=delay)
    return RetryDecision("give_up", failure.why, f"{head}; no retries left (max {max_retries})")
