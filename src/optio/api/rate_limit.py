"""Per-client rate limits on the endpoints worth guessing at: sign-in, password changes and webhooks.

A sliding window per (bucket, client address) in memory: one Optio process serves the API, so the
counts need no shared store. The client address is the connection's peer; uvicorn replaces it with the
`X-Forwarded-For` address only when the peer is in OPTIO_TRUSTED_PROXIES (none by default), so a client
cannot pick a fresh key per request by sending a made-up header. A client over its limit gets 429 with
`Retry-After` and the request never reaches the handler (a password is not even hashed). Buckets are
chosen by path, so webhook routes added later are limited without touching this module.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

LOGIN_PATHS = ("/login", "/auth/oidc/")
PASSWORD_PATH = "/api/me/password"  # proves the current password: as worth guessing at as a sign-in
WEBHOOK_PATHS = ("/api/webhooks/", "/webhooks/", "/api/hooks/", "/api/ticket-hooks/")


class SlidingWindow:
    """At most `limit` hits per `window_s` for each key; thread-safe; monotonic clock injectable."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Record a hit; None if allowed, else seconds until the next one would be."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(0.0, hits[0] + self.window_s - now)
            hits.append(now)
            if len(self._hits) > 100_000:  # forget idle clients rather than grow without bound
                for k in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window_s]:
                    del self._hits[k]
            return None


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
    def __init__(self, app: ASGIApp, login: SlidingWindow, webhook: SlidingWindow) -> None:
        self.app = app
        self.windows = {"login": login, "webhook": webhook}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            bucket = bucket_for(scope["method"], scope["path"])
            if bucket is not None:
                client = (scope.get("client") or ("unknown", 0))[0]
                wait = self.windows[bucket].hit(f"{bucket}:{client}")
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
