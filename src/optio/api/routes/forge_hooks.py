"""Forge webhooks: `POST /api/forge-hooks/{repo_id}` (GitHub, GitLab). No Optio login: the repo's forge
verifies each delivery against the repo's webhook secret; a delivery that does not verify is refused (401)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from optio.api.deps import Unauthorized
from optio.api.schemas import Id
from optio.control.ports import BadSignature
from optio.server import Optio
from optio.services import forge_hooks

router = APIRouter(prefix="/api/forge-hooks", tags=["forge hooks"])


@router.post("/{repo_id}", status_code=200, responses={204: {"description": "a repo Optio does not track"},
                                                       401: {"description": "the signature or token does not verify"}})
async def forge_hook(repo_id: Id, request: Request) -> Response:
    """Receive one webhook delivery for a repo: its PR, review, CI and push events wake the affected tasks."""
    optio: Optio = request.app.state.optio
    body = await request.body()
    headers = dict(request.headers)
    try:
        result = await run_in_threadpool(forge_hooks.receive, optio.db, optio.ctx.forges, repo_id, headers, body)
    except BadSignature:
        raise Unauthorized("the delivery's signature does not verify against the repo's webhook secret") from None
    if result.status == 204:
        return Response(status_code=204)
    return JSONResponse({"enqueued": result.enqueued, "duplicate": result.duplicate})
