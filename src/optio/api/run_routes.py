"""The events, logs and live log stream of a run, the same for every run kind: one factory adds them to a router."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import StreamingResponse

from optio.api.deps import Ctx, get_ctx
from optio.api.logstream import STREAM_PAGE, STREAM_RESPONSES, resume_after, sse
from optio.api.schemas import Id, LogLimit, LogLine, LogPage, RunEventOut, Seq
from optio.services import runs as run_service


def add_run_routes(router: APIRouter, *, kind: str, id_name: str, noun: str, terminal: frozenset[str],
                   names: tuple[str, str, str]) -> None:
    """`GET /{id}/events`, `/{id}/logs` and `/{id}/logs/stream` for runs of `kind`.

    `id_name` is the path parameter's name and `names` the routes' names (events, logs, stream), so each
    kind's API keeps its own spelling.
    """
    path = "/{" + id_name + "}"

    def page(ctx: Ctx, run_id: int, after: int, limit: int) -> LogPage:
        got = run_service.log_slice(ctx.db, kind, run_id, ctx.workspace_id, noun=noun, terminal=terminal,
                                    after=after, limit=limit)
        return LogPage(items=[LogLine.model_validate(r) for r in got.lines], last_seq=got.last_seq,
                       state=got.state, done=got.done)

    def events(run_id: Annotated[Id, Path(alias=id_name)], ctx: Ctx = Depends(get_ctx)) -> list[RunEventOut]:
        return [RunEventOut.model_validate(e)
                for e in run_service.run_events(ctx.db, kind, run_id, ctx.workspace_id, noun)]

    def logs(
        run_id: Annotated[Id, Path(alias=id_name)],
        ctx: Ctx = Depends(get_ctx),
        after: Annotated[Seq, Query(description="Return lines with seq > after")] = 0,
        limit: Annotated[LogLimit, Query()] = 1000,
    ) -> LogPage:
        return page(ctx, run_id, after, limit)

    def stream(run_id: Annotated[Id, Path(alias=id_name)], ctx: Ctx = Depends(get_ctx),
               after: Annotated[Seq, Query(description="Replay lines with seq > after")] = 0,
               last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", include_in_schema=False)] = None,
               ) -> StreamingResponse:
        """Replays lines after `after`, then follows until the run ends (SSE: `line` events, then `end`)."""
        page(ctx, run_id, after, 1)  # a run that does not exist is a 404, not an empty stream
        def read(cursor: int) -> run_service.LogSlice:
            return run_service.log_slice(ctx.db, kind, run_id, ctx.workspace_id, noun=noun, terminal=terminal,
                                         after=cursor, limit=STREAM_PAGE)

        return sse(read, resume_after(after, last_event_id), db=ctx.db, settings=ctx.optio.settings,
                   key=(kind, run_id, ctx.workspace_id), topic=(kind, run_id), scope=(kind, run_id, ctx.workspace_id))

    router.add_api_route(path + "/events", events, methods=["GET"], response_model=list[RunEventOut],
                         name=names[0])
    router.add_api_route(path + "/logs", logs, methods=["GET"], response_model=LogPage, name=names[1])
    router.add_api_route(path + "/logs/stream", stream, methods=["GET"], response_class=StreamingResponse,
                         responses=STREAM_RESPONSES, name=names[2])
