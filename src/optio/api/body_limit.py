"""Refuse request bodies over `max_body_bytes` before a handler buffers them.

A declared `Content-Length` over the limit is refused at once; a chunked body is read up to the limit
and refused with 413 the moment it crosses it, so a client cannot make the server hold an arbitrarily
large body in memory.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _body(limit: int) -> bytes:
    return json.dumps({"error": {"code": "payload_too_large",
                                 "message": f"request body exceeds {limit} bytes", "field": None}}).encode()


async def _reject(send: Send, limit: int) -> None:
    body = _body(limit)
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """``path_limits`` gives paths (by prefix) a limit of their own, e.g. the git pushes of agent pods."""

    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = next((cap for prefix, cap in self.path_limits.items() if path.startswith(prefix)), self.max_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await _reject(send, limit)
                    return
        declared_length = any(name == b"content-length" for name, _ in scope.get("headers", []))
        if declared_length:
            await self.app(scope, receive, send)  # the server enforces the declared length
            return
        # A body of unknown length (chunked) is read here, up to the limit, then handed on: refusing it
        # halfway through a handler's parsing would surface as a parse error instead of a clear 413.
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > limit:
                await _reject(send, limit)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)
