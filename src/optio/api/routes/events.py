"""`/api/events/stream`: everything that happens in the caller's workspace, live, resumable by event id.

Server-sent events:

* `state` (a run changed state) and `event` (a fact on a run's timeline: PR opened, CI passed, review asked,
  approved, cancel requested, ...) carry an `id:`; reconnecting with `Last-Event-ID` (which browsers send by
  themselves) or `?after=` replays what was missed, in order, exactly once.
* `log` (a run printed new lines: kind, run id, last sequence number) and `cost` (a run's cost and token totals
  moved) are live signals without an id: they are not replayed.

Without a position the stream starts at "now"; the first event, `hello`, says where that is, and `live` (once)
says the replay has caught up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from optio.api.deps import Ctx, get_stream_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.schemas import Seq
from optio.errors import Invalid
from optio.services import events as event_service

router = APIRouter(prefix="/api/events", tags=["events"], responses=ERROR_RESPONSES)
POLL_S = 0.3
KEEP_ALIVE_S = 15.0
STREAM_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/event-stream": {}},
          "description": "Server-sent events: `hello`, then `state`, `event` (with ids), `log` and `cost`"}
}


def _position(last_event_id: str | None, after: int | None) -> int | None:
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            raise Invalid("Last-Event-ID must be an event id (a whole number)", field="Last-Event-ID")
        return int(text)
    return after


@router.get("/stream", response_class=StreamingResponse, responses=STREAM_RESPONSES)
def stream(
    ctx: Ctx = Depends(get_stream_ctx),
    after: Annotated[Seq | None, Query(description="Replay events with id > after")] = None,
    last_event_id: Annotated[str | None, Header(max_length=32, description="Resume after this event id")] = None,
) -> StreamingResponse:
    start = _position(last_event_id, after)
    if start is None:
        start = event_service.current_position(ctx.db)
    feed = event_service.EventFeed(ctx.db, ctx.workspace_id, start)

    async def events() -> AsyncIterator[str]:
        yield f"retry: 1000\nevent: hello\ndata: {json.dumps({'position': start})}\n\n"
        quiet = 0.0
        caught_up = False
        while True:
            batch = await run_in_threadpool(feed.poll)
            for item in batch:
                head = f"id: {item.id}\n" if item.id is not None else ""
                yield f"{head}event: {item.type}\ndata: {json.dumps(item.data)}\n\n"
            if batch:
                quiet = 0.0
                continue
            if not caught_up:
                caught_up = True
                yield f"event: live\ndata: {json.dumps({'position': feed.after})}\n\n"
            quiet += POLL_S
            if quiet >= KEEP_ALIVE_S:
                quiet = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
