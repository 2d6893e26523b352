"""Every successful change made through the API lands in the audit log, without each route asking.

After a state-changing request (POST/PUT/PATCH/DELETE) succeeds, the middleware records the route's
name as the action (`create_job`, `cancel_run`, `merge_pr`, `set_member`, ...), the caller, the
workspace and the path parameters naming the target. Routes added later are audited automatically.
Routes that know more (a role change's old and new role) add their own richer event as well.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from optio.services import audit

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuditTrailMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE:
            await self.app(scope, receive, send)
            return
        status = 0

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, capture)
        ctx = (scope.get("state") or {}).get("ctx")
        route = scope.get("route")
        if ctx is None or route is None or not 200 <= status < 400:
            return
        await anyio.to_thread.run_sync(_record, ctx, route, scope, status)


def _record(ctx: Any, route: Any, scope: Scope, status: int) -> None:
    params = {k: str(v) for k, v in (scope.get("path_params") or {}).items()}
    target_type = str(getattr(route, "tags", [""])[0] if getattr(route, "tags", None) else "")
    audit.record(
        ctx.db, workspace_id=ctx.workspace_id, user_id=ctx.user_id, actor=ctx.username or "anonymous",
        action=str(getattr(route, "name", "") or scope["path"]), target_type=target_type,
        target_id=",".join(params.values()),
        detail={"method": scope["method"], "path": scope["path"], "status": status, "params": params},
    )
