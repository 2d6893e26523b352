"""Run logs for any run kind: a page after a sequence number, or a live SSE stream that replays then follows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from optio.api.schemas import LogPage

STREAM_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-sent events: `line` events, then `end`"}
}


def sse(page: Callable[[int], LogPage], after: int) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        cursor = after
        idle = 0
        while True:
            current = await run_in_threadpool(page, cursor)
            for item in current.items:
                yield f"id: {item.seq}\nevent: line\ndata: {item.model_dump_json()}\n\n"
            cursor = current.last_seq
            if current.done:
                yield f"event: end\ndata: {json.dumps({'state': current.state, 'last_seq': cursor})}\n\n"
                return
            if current.items:
                idle = 0
                continue
            idle += 1
            if idle % 50 == 0:
                yield ": keep-alive\n\n"
            await asyncio.sleep(0.2)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
