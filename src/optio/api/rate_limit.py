"""Per-client rate limits on the endpoints worth guessing at: sign-in, password changes and webhooks.

A window per (bucket, client address) opened by its first hit, counted in the database
(`store.rate_counters`), so a limit holds across every replica behind a load balancer, and SQLite counts the
same way. The client address is the
connection's peer; uvicorn replaces it with the `X-Forwarded-For` address only when the peer is in
OPTIO_TRUSTED_PROXIES (none by default), so a client cannot pick a fresh key per request by sending a
made-up header. A client over its limit gets 429 with `Retry-After` and the request never reaches the
handler (a password is not even hashed). Buckets are chosen by path, so webhook routes added later are
limited without touching this module.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Protocol

from anyio import to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from optio.services import rate_limits

LOGIN_PATHS = ("/login", "/auth/oidc/")
PASSWORD_PATH = "/api/me/password"  # proves the current password: as worth guessing at as a sign-in
WEBHOOK_PATHS = ("/api/webhooks/", "/webhooks/", "/api/hooks/")


class Limit(Protocol):
    def hit(self, key: str) -> float | None:
        """Record a hit; None if allowed, else seconds until the next one would be."""


class FixedWindow:
    """At most `limit` hits per `window_s` (from a key's first hit) for each key, counted in `db_of()`'s database."""

    def __init__(self, db_of: Callable[[], rate_limits.Database], limit: int, window_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.db_of = db_of
        self.limit = limit
        self.window_s = window_s
        self.clock = clock

    def hit(self, key: str) -> float | None:
        return rate_limits.hit(self.db_of(), key, limit=self.limit, window_s=self.window_s, now=self.clock())


def bucket_for(method: str, path: str) -> str | None:
    if method == "POST" and (path == "/login" or path.startswith(LOGIN_PATHS[1])):
        return "login"
    if method == "GET" and path.startswith(LOGIN_PATHS[1]):
        return "login"
    if method == "PUT" and path == PASSWORD_PATH:
        return "login"
    if path.startswith(WEBHOOK_PATHS):
        return "webhook"
    return None


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, login: Limit, webhook: Limit) -> None:
        self.app = app
        self.windows = {"login": login, "webhook": webhook}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            bucket = bucket_for(scope["method"], scope["path"])
            if bucket is not None:
                client = (scope.get("client") or ("unknown", 0))[0]
                wait = await to_thread.run_sync(self.windows[bucket].hit, f"{bucket}:{client}")
                if wait is not None:
                    body = json.dumps({"error": {"code": "rate_limited",
                                                 "message": f"too many {bucket} requests; retry later",
                                                 "field": None}}).encode()
                    await send({"type": "http.response.start", "status": 429,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"retry-after", str(max(1, math.ceil(wait))).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)
