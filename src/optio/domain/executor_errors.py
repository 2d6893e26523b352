"""What to do with a run whose last decision could not be applied.

The executor only records a failure (which action, the redacted error, how many times in a row the same
failure happened, when); this module decides. Some failures never go away by themselves (a title git
refuses, a base branch that does not exist): retrying them for ever would hold a run slot for ever. So
the same failure is retried with a growing backoff a bounded number of times and then the run is given
up, with the error, in a state a person sees (`needs_attention` for repo tasks, `failed` otherwise).

A run that failed before its agent could start (provisioning) waits out its backoff back in the queue,
so it never holds a slot while it waits.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from optio.domain.actions import Action, Noop, Transition
from optio.domain.backoff import backoff_seconds
from optio.domain.snapshot import ExecutorErrorPolicy, RunView

# Paths (temp dirs, worktrees), hex (shas, addresses) and numbers (pids, offsets) vary between tries.
_VOLATILE = re.compile(r"(?:/[^\s'\"]+)+|0x[0-9a-f]+|\b[0-9a-f]{7,40}\b|\d+", re.IGNORECASE)
ERROR_TEXT_MAX = 2000


def same_failure(action_a: str | None, error_a: str | None, action_b: str | None, error_b: str | None) -> bool:
    """Whether two recorded failures are the same one: same action, same message up to numbers and shas.

    Paths, numbers and hashes (temp dirs, pids, commit shas) differ between tries of the very same failure;
    counting those as new failures would restart the count and let the run retry for ever.
    """
    if action_a != action_b or error_a is None or error_b is None:
        return False
    return _VOLATILE.sub("#", error_a) == _VOLATILE.sub("#", error_b)


def retry_delay_s(run: RunView, policy: ExecutorErrorPolicy) -> float:
    return backoff_seconds(run.executor_error_count, seed=run.id, base_s=policy.backoff_base_s,
                           cap_s=policy.backoff_cap_s)


def decide_executor_error(
    run: RunView,
    policy: ExecutorErrorPolicy,
    now: datetime,
    *,
    give_up_to: str,
    requeue_from: frozenset[str] = frozenset(),
    requeue_to: str = "queued",
) -> Action | None:
    """The action for a run with recorded executor failures, or None to decide as usual (retry the action).

    `requeue_from` names the states that hold a run slot before the agent started: a run failing there
    waits out its backoff back in `requeue_to` instead of holding the slot.
    """
    count = run.executor_error_count
    if count <= 0 or run.executor_error is None:
        return None
    what = run.executor_error_action or "an action"
    error = run.executor_error[:ERROR_TEXT_MAX]
    if count >= policy.max_errors:
        why = f"{what} failed {count} times in a row: {error}"
        return Transition(
            to=give_up_to,
            reason=f"giving up: {why}",
            patch={"error": why, **cleared()},
            kill_process=True,
            event=give_up_to,
        )
    at = run.executor_error_at or now
    retry_at = at + timedelta(seconds=retry_delay_s(run, policy))
    if now >= retry_at:
        return None
    remaining = (retry_at - now).total_seconds()
    why = f"{what} failed ({count} of {policy.max_errors} tries): {error}; retrying in {remaining:.1f}s"
    if run.state in requeue_from:
        return Transition(
            to=requeue_to,
            reason=why,
            patch={"error": f"{what} failed: {error}", "reconcile_backoff_until": retry_at},
            event="retry_scheduled",
        )
    return Noop(reason=why, recheck_after_s=remaining)


def cleared() -> dict[str, object]:
    """The columns that forget recorded executor failures (after giving up, or once the action worked)."""
    return {"executor_error_action": None, "executor_error": None, "executor_error_count": 0,
            "executor_error_at": None}
