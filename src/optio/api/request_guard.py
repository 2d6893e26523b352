"""Refuse requests a web page could make the operator's browser send: foreign `Host`s and cross-site writes.

A server on 127.0.0.1 is still reachable from any web page its user opens. Two doors are closed here,
before anything else runs:

* DNS rebinding: a page on `evil.example` re-resolves its own name to 127.0.0.1 and talks to Optio as a
  same-origin page. Its requests carry `Host: evil.example:8470`, so any `Host` not in the allowed list
  is refused (400). The list is `OPTIO_ALLOWED_HOSTS`, else the bind address, `localhost`, `127.0.0.1`
  and `[::1]` on the server's port. A server bound to a non-loopback address with authentication on and
  no list answers any `Host` (its names are not known; credentials protect it).
* Cross-site writes with `OPTIO_AUTH=disabled`, where no credential stops them: a state-changing request
  must not come from another site (`Sec-Fetch-Site`, `Origin`) and must carry a custom header
  (`X-Optio-CSRF`, or the session's `X-CSRF-Token`), which a cross-site "simple" request cannot send
  without a CORS preflight this server never grants. The CLI always sends `X-Optio-CSRF: 1`.
  With authentication on, cookie requests need the session's CSRF token (see `api.deps`) and API keys
  are never sent by a browser on its own.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from optio.config import Settings

CSRF_HEADERS = ("x-optio-csrf", "x-csrf-token")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
LOOPBACK_BINDS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", "[::]", ""})


class HostPolicy:
    """Which `Host` values the server answers: exact `host:port` entries and names valid on any port."""

    def __init__(self, exact: frozenset[str], any_port: frozenset[str], *, open_to_all: bool = False) -> None:
        self.exact = exact
        self.any_port = any_port
        self.open_to_all = open_to_all

    @classmethod
    def from_settings(cls, settings: Settings) -> HostPolicy:
        if settings.allowed_hosts:
            entries = [entry.strip().lower() for entry in settings.allowed_hosts]
            if "*" in entries:
                return cls(frozenset(), frozenset(), open_to_all=True)
            return cls(frozenset(e for e in entries if _port_of(e) is not None),
                       frozenset(e for e in entries if _port_of(e) is None))
        bind = settings.host.strip().lower()
        if settings.auth_enabled and bind not in LOOPBACK_BINDS:
            return cls(frozenset(), frozenset(), open_to_all=True)
        names = set(LOOPBACK_NAMES)
        if bind not in WILDCARD_BINDS:
            names.add(f"[{bind}]" if ":" in bind and not bind.startswith("[") else bind)
        exact = {f"{name}:{settings.port}" for name in names}
        if settings.port == 80:
            exact |= names
        return cls(frozenset(exact), frozenset())

    def allows(self, host: str | None) -> bool:
        if self.open_to_all:
            return True
        if not host:
            return False
        host = host.strip().lower()
        return host in self.exact or _name_of(host) in self.any_port


def _port_of(host: str) -> str | None:
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1:] if end != -1 else ""
        return rest[1:] if rest.startswith(":") else None
    if host.count(":") == 1:
        return host.split(":", 1)[1]
    return None


def _name_of(host: str) -> str:
    port = _port_of(host)
    return host if port is None else host[: -(len(port) + 1)]


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.hosts = HostPolicy.from_settings(settings)
        self.check_cross_site = not settings.auth_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
        host = headers.get("host")
        refusal: tuple[int, str, str] | None = None
        if not self.hosts.allows(host):
            refusal = (400, "invalid_host", f"Host {host!r} is not one this server answers to; the operator can "
                                            "add it to OPTIO_ALLOWED_HOSTS")
        elif self.check_cross_site and (scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS):
            refusal = self._cross_site(scope, headers, host or "")
        if refusal is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refusal[2][:120]})
            return
        status, code, message = refusal
        body = json.dumps({"error": {"code": code, "message": message, "field": None}}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _cross_site(self, scope: Scope, headers: dict[str, str], host: str) -> tuple[int, str, str] | None:
        fetch_site = headers.get("sec-fetch-site", "").strip().lower()
        if fetch_site in ("cross-site", "same-site"):
            return (403, "forbidden", f"cross-site request refused (Sec-Fetch-Site: {fetch_site}); "
                                      "authentication is disabled, so only this machine's own pages may write")
        origin = headers.get("origin")
        if origin is not None:
            origin_host = urlsplit(origin.strip()).netloc.lower() if origin.strip() != "null" else ""
            same = origin_host == host.strip().lower() or (origin_host and self.hosts.allows(origin_host)
                                                           and not self.hosts.open_to_all)
            if not same:
                return (403, "forbidden", f"cross-site request refused (Origin: {origin[:100]}); "
                                          "authentication is disabled, so only this machine's own pages may write")
        if scope["type"] == "http" and not any(headers.get(name, "").strip() for name in CSRF_HEADERS):
            return (403, "forbidden", "a state-changing request needs the 'X-Optio-CSRF: 1' header when "
                                      "authentication is disabled (the optio CLI sends it)")
        return None
