"""Rate limits counted in the database: the same count whichever replica a request reaches."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from optio.store import rate_counters
from optio.store.db import Database

__all__ = ["Database", "hit"]

# About one hit in this many also deletes counters of windows that ended.
PURGE_ONE_IN = 200


def hit(db: Database, key: str, *, limit: int, window_s: float, now: float) -> float | None:
    """Count a hit of `key` at `now` (epoch seconds): None if within `limit` per window, else seconds to wait.

    A window opens at a key's first hit (not at a clock boundary), so a burst is never split in two windows.
    """
    when = datetime.fromtimestamp(now, UTC)
    with db.write() as session:
        count, ends = rate_counters.hit(session, key, now=when, window_s=window_s)
        if random.randrange(PURGE_ONE_IN) == 0:
            rate_counters.purge(session, when)
    if count > limit:
        return max(0.0, (ends - when).total_seconds())
    return None
