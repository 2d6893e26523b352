"""The newest-first stream of every kind of task."""

from __future__ import annotations

from optio.store import task_feed
from optio.store.db import Database
from optio.store.task_feed import FeedFilter, FeedRow, Position

__all__ = ["FeedFilter", "FeedRow", "Position", "newest"]


def newest(db: Database, workspace_id: int, *, ranks: tuple[int, ...], state: str | None,
           position: Position | None, limit: int, only: FeedFilter | None = None) -> list[FeedRow]:
    with db.read() as session:
        return task_feed.newest(session, workspace_id, ranks=ranks, state=state, position=position, limit=limit,
                                only=only)
