"""What a classified agent failure means for the retry budget.

Retrying an invalid key or a prompt that does not fit the context only burns time and money, so those
fail at once with the classified message (which names the secret to fix). A rate limit is not the
agent's fault: it retries after the vendor's retry-after (or the backoff, whichever is longer) and gets
a few extra attempts beyond `max_retries` before giving up.
"""

from __future__ import annotations

from dataclasses import dataclass

from optio.domain.snapshot import ProcessView

FAIL_FAST_KINDS = frozenset({"auth", "config", "model_not_found", "context_too_long", "budget"})
RATE_LIMIT_EXTRA_ATTEMPTS = 5


@dataclass(frozen=True)
class FailurePolicy:
    why: str
    fail_fast: bool = False
    min_delay_s: float = 0.0
    extra_attempts: int = 0


def policy_for_failure(proc: ProcessView | None, default_why: str) -> FailurePolicy:
    if proc is None or proc.failure_kind is None:
        return FailurePolicy(why=default_why)
    message = proc.error or default_why
    if proc.failure_kind in FAIL_FAST_KINDS:
        return FailurePolicy(why=f"{proc.failure_kind}: {message}", fail_fast=True)
    if proc.failure_kind == "rate_limited":
        return FailurePolicy(why=f"rate limited: {message}", min_delay_s=proc.retry_after_s or 0.0,
                             extra_attempts=RATE_LIMIT_EXTRA_ATTEMPTS)
    return FailurePolicy(why=f"{default_why} ({proc.failure_kind}: {message})")
