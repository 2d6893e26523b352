"""Run logs for any run kind: a page after a sequence number, or a live SSE stream that replays then follows.

The stream is served by the log's hub (`optio.api.log_hub`): one reader per log, whatever the number of
subscribers. A client that falls too far behind gets a `dropped` event and resumes with `?after=` its
`last_seq` (or the `Last-Event-ID` header, which every `line` event's id sets in an EventSource).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from fastapi.responses import StreamingResponse

from optio.api.log_hub import Scope, Slice, Topic, hubs_for
from optio.config import Settings
from optio.store.db import Database

STREAM_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/event-stream": {}},
          "description": "Server-sent events: `line` events, then `end`; or `dropped` (with `last_seq`) for a "
                         "client that fell behind, which reconnects with `?after=last_seq`"}
}
# Lines one read of the hub takes: large enough that a busy log is read in few transactions.
STREAM_PAGE = 5000


def resume_after(after: int, last_event_id: str | None) -> int:
    """Where a stream starts: after `?after=`, or after the last event an EventSource saw if that is later."""
    if last_event_id is not None and last_event_id.strip().isdigit():
        return max(after, int(last_event_id.strip()))
    return after


def sse(page: Callable[[int], Slice], after: int, *, db: Database, settings: Settings, key: Hashable,
        topic: Topic, scope: Scope | None = None) -> StreamingResponse:
    """The live stream of one log: `page(cursor)` reads it (already scoped to the caller's workspace, which
    `key` must name too); `topic` is the run whose appends wake it; `scope` (run kind, run id, workspace id)
    if the page reads every line appended to that run in that workspace and nothing else."""
    hubs = hubs_for(db, buffer_bytes=settings.log_stream_buffer_bytes, poll_s=settings.log_stream_poll_s)
    return StreamingResponse(hubs.follow(key, topic, page, after, scope), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
