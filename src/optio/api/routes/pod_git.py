"""Git smart HTTP for agent pods: `/api/pods/git/{pod}.git/...`, Optio's exchange repository of one pod.

No Optio login: the pod presents the bearer token that Optio put into its Secret, which opens that one pod's
repository only (see `optio.runtime.pod_git`). Not part of the public API (absent from the OpenAPI schema).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from optio.runtime.pod_git import PodGit
from optio.server import Optio

router = APIRouter(prefix="/api/pods/git", include_in_schema=False)


def exchange(optio: Optio) -> PodGit:
    return PodGit(optio.settings.resolved_data_dir / "pod-git")


@router.api_route("/{name}.git/{path:path}", methods=["GET", "POST"])
async def pod_git(name: str, path: str, request: Request) -> Response:
    optio: Optio = request.app.state.optio
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    pods = exchange(optio)
    if scheme.lower() != "bearer" or not await run_in_threadpool(pods.authorized, name, token.strip()):
        return Response("unauthorized\n", status_code=401, headers={"WWW-Authenticate": 'Bearer realm="optio"'})
    body = await request.body()
    status, headers, payload = await run_in_threadpool(
        pods.serve, name, request.method, path, request.url.query, body, dict(request.headers))
    return Response(payload, status_code=status, headers=headers)
