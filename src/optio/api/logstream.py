"""Run logs for any run kind: a page after a sequence number, or a live SSE stream that replays then follows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from optio.api.schemas import LogLine, LogPage
from optio.store import logs
from optio.store.db import Database

STREAM_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-sent events: `line` events, then `end`"}
}


def log_page(db: Database, kind: str, run_id: int, workspace_id: int, *, state_of: Callable[..., str],
             terminal: frozenset[str], after: int, limit: int) -> LogPage:
    with db.read() as session:
        state = state_of(session, workspace_id, run_id)
        rows = logs.read(session, kind, run_id, workspace_id, after=after, limit=limit)
        last = rows[-1].seq if rows else after
        done = state in terminal and last >= logs.last_seq(session, kind, run_id)
        return LogPage(
            items=[LogLine(seq=r.seq, attempt=r.attempt, stream=r.stream, text=r.text, created_at=r.created_at)
                   for r in rows],
            last_seq=last, state=state, done=done,
        )


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
