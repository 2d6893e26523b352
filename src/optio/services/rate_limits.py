"""Fixed-window rate limits counted in the database: the same count whichever replica a request reaches."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from optio.store import rate_counters
from optio.store.db import Database

__all__ = ["Database", "hit"]

# About one hit in this many also deletes counters of windows that ended.
PURGE_ONE_IN = 200


def hit(db: Database, key: str, *, limit: int, window_s: float, now: float) -> float | None:
    """Count a hit of `key` at `now` (epoch seconds); None if within `limit` per window, else seconds to wait."""
    window = int(now // window_s)
    ends = (window + 1) * window_s
    with db.write() as session:
        count = rate_counters.hit(session, key, window, expires_at=datetime.fromtimestamp(ends, UTC))
        if random.randrange(PURGE_ONE_IN) == 0:
            rate_counters.purge(session, datetime.fromtimestamp(now, UTC))
    if count > limit:
        return max(0.0, ends - now)
    return None
