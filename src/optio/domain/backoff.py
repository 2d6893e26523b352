"""Jittered exponential backoff that is deterministic for a given (run, attempt).

Jitter spreads retries of many runs that failed together; deriving it from the run id and attempt
instead of a random source keeps decisions pure and repeatable.
"""

from __future__ import annotations

from datetime import datetime


def jitter_fraction(seed: int, attempt: int) -> float:
    """A value in [0, 1) that looks random across seeds but is fixed for each (seed, attempt)."""
    x = (seed * 2654435761 + attempt * 40503 + 0x9E3779B9) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x45D9F3B) & 0xFFFFFFFF
    x ^= x >> 16
    return x / 2**32


def backoff_seconds(attempt: int, *, seed: int, base_s: float = 1.0, cap_s: float = 300.0) -> float:
    """Delay before retry number `attempt` (1-based): base * 2^(attempt-1), capped, with +-25% jitter."""
    attempt = max(1, attempt)
    raw = min(cap_s, base_s * (2.0 ** min(attempt - 1, 30)))
    return raw * (0.75 + 0.5 * jitter_fraction(seed, attempt))


def read_error_delay(reconcile_attempts: int, *, seed: int) -> float:
    """Delay before looking again at a run whose state could not be read: short, growing, capped at a minute."""
    return backoff_seconds(reconcile_attempts + 1, seed=seed, base_s=0.5, cap_s=60.0)


# The queue keeps no count of failed snapshots, so the wait before trying one again is fixed and short.
SNAPSHOT_ERROR_DELAY_S = 2.0
# How long a repo runs one agent at a time after a vendor rate limited one of its agents.
RATE_LIMIT_THROTTLE_S = 300.0


def snapshot_error_delay() -> float:
    """Delay before reconciling again a run whose snapshot could not be built (the reason is logged)."""
    return SNAPSHOT_ERROR_DELAY_S


def rate_limit_throttle_s(retry_after_s: float | None) -> float:
    """How long a rate-limited repo stays throttled: the vendor's retry-after when it is longer."""
    return max(RATE_LIMIT_THROTTLE_S, retry_after_s or 0.0)


def repo_slot_cap(max_concurrent: int | None, default: int, rate_limited_until: datetime | None,
                  now: datetime) -> int:
    """A repo's agent slots: its own count or the server's, one while a vendor is rate limiting its agents."""
    if rate_limited_until is not None and rate_limited_until > now:
        return 1
    return max_concurrent or default
