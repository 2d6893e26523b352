"""The workspace event stream: what changed, in order, resumable by event id.

Positions are run event ids (written in the same transaction as each state change). Ids are handed out
before commit, so on a database with concurrent writers a lower id can become visible after a higher one;
the cursor therefore never moves past a hole until the hole is old enough (`HOLE_WAIT_S`) to be a rolled-back
transaction rather than one still committing. Log activity and cost updates are "now" signals with no id:
a reader that reconnects gets the run events it missed and fresh activity from then on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from optio.store import events as event_store
from optio.store.db import Database

HOLE_WAIT_S = 3.0
BATCH = 500


@dataclass(frozen=True)
class StreamEvent:
    """One event for a reader: `id` is set for run events (the resumable ones) only."""

    type: str  # state | event | log | cost
    data: dict[str, Any]
    id: int | None = None


def current_position(db: Database) -> int:
    """The id a reader starts after to get only what happens from now on."""
    with db.read() as session:
        return event_store.last_event_id(session)


@dataclass
class EventFeed:
    """One reader's position in its workspace's stream; `poll` returns what happened since the last call."""

    db: Database
    workspace_id: int
    after: int
    log_row: int = -1
    holes: dict[int, float] = field(default_factory=dict)
    costs: dict[tuple[str, int], tuple[float, bool, int, int]] = field(default_factory=dict)

    def poll(self) -> list[StreamEvent]:
        with self.db.read() as session:
            if self.log_row < 0:
                self.log_row = event_store.last_log_row(session)
            upto = self._safe_upto(event_store.event_ids_after(session, self.after, BATCH))
            rows = event_store.events_between(session, self.workspace_id, self.after, upto) if upto > self.after \
                else []
            activity, self.log_row = event_store.log_activity(session, self.workspace_id, self.log_row)
            costs: list[tuple[str, int, float, bool, int, int]] = []
            for kind in {k for k, _, _ in activity}:
                ids = [run_id for k, run_id, _ in activity if k == kind]
                costs += [(kind, *row) for row in event_store.costs_of(session, self.workspace_id, kind, ids)]
        out = [_run_event(row) for row in rows]
        self.after = max(self.after, upto)
        out += [StreamEvent("log", {"kind": kind, "run_id": run_id, "last_seq": seq}) for kind, run_id, seq
                in activity]
        for kind, run_id, cost, imputed, tokens_in, tokens_out in costs:
            value = (cost, imputed, tokens_in, tokens_out)
            if self.costs.get((kind, run_id)) != value and (cost or tokens_in or tokens_out):
                self.costs[(kind, run_id)] = value
                out.append(StreamEvent("cost", {"kind": kind, "run_id": run_id, "cost_usd": cost,
                                                "cost_imputed": imputed, "input_tokens": tokens_in,
                                                "output_tokens": tokens_out}))
        return out

    def _safe_upto(self, ids: list[tuple[int, datetime]]) -> int:
        """The highest id the cursor may move to: the end of the run of ids with no young hole before it.

        A hole is old when this reader has waited on it for `HOLE_WAIT_S`, or when the event after it was
        written longer ago than that (history with deleted rows), so a replay does not stall on old holes.
        """
        now = time.monotonic()
        wall = datetime.now(UTC)
        expected = self.after + 1
        upto = self.after
        for event_id, written in ids:
            if event_id > expected and (wall - written).total_seconds() < HOLE_WAIT_S:
                first_seen = self.holes.setdefault(expected, now)
                if now - first_seen < HOLE_WAIT_S:
                    break
            upto = event_id
            expected = event_id + 1
        self.holes = {k: v for k, v in self.holes.items() if k > upto}
        return upto


def _run_event(row: Any) -> StreamEvent:
    data = {"event_id": row.id, "kind": row.run_kind, "run_id": row.run_id, "event": row.event,
            "from_state": row.from_state, "to_state": row.to_state, "reason": row.reason,
            "at": row.created_at.isoformat() if row.created_at else None}
    changed = row.to_state is not None and row.to_state != row.from_state
    return StreamEvent("state" if changed else "event", data, row.id)
