"""`GET /metrics`: Prometheus's text format, for a scraper holding the metrics token or an admin's key.

The figures are counts across the whole server (no names, prompts or secrets), so they are for its
operator: with `OPTIO_METRICS_TOKEN` set, a scraper sends that as its bearer token and needs no account;
without it, an admin's API key is asked for, like any other admin route.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from optio.api.deps import Unauthorized, bearer_scheme, cookie_scheme, get_admin_ctx
from optio.observability import metrics
from optio.server import Optio
from optio.services.metrics import database_facts

router = APIRouter(tags=["system"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def scrape(request: Request) -> Response:
    optio: Optio = request.app.state.optio
    token = optio.settings.metrics_token
    bearer: HTTPAuthorizationCredentials | None = await bearer_scheme(request)
    cookie = await cookie_scheme(request)

    def answer() -> bytes:
        if token and bearer is not None and hmac.compare_digest(bearer.credentials.encode(), token.encode()):
            pass
        elif token and not optio.settings.auth_enabled:
            raise Unauthorized("send the metrics token: 'Authorization: Bearer <OPTIO_METRICS_TOKEN>'")
        else:
            get_admin_ctx(request, None, bearer, cookie)
        return metrics.render(lambda: database_facts(optio.db))

    return Response(content=await run_in_threadpool(answer), media_type=metrics.CONTENT_TYPE)
