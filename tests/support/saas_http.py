"""The HTTP plumbing the fake SaaS trackers (Linear, Jira, Notion) share: a real threaded server on 127.0.0.1.

Each fake answers through :meth:`SaasFake.handle` with a status and a JSON body; this base records every
request and response (so a test can check both against the vendor's published schema), refuses a wrong
credential the way the vendor does, and can be told to answer the next N requests with a 429 or 5xx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from tests.support import http_client
from tests.support.http_listener import never_blocks_in_accept


@dataclass
class Exchange:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int
    response: Any


class HttpError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class SaasFake:
    """Subclasses implement :meth:`authorized` and :meth:`handle`."""

    name = "saas"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.exchanges: list[Exchange] = []
        self._failures: list[int] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                status, response, extra = fake._dispatch(self.command, parts.path, parse_qs(parts.query), headers,
                                                         body)
                fake.exchanges.append(Exchange(self.command, parts.path, parse_qs(parts.query), headers, body,
                                               status, response))
                data = b"" if response is None else json.dumps(response).encode()
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        never_blocks_in_accept(self.httpd)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer the next `count` requests with `status` (429 rate limit, 5xx outage)."""
        with self.lock:
            self._failures.extend([status] * count)

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
                  body: Any) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            if self._failures:
                status = self._failures.pop(0)
                return status, self.failure_body(status), ({"Retry-After": "1"} if status == 429 else {})
            if not self.authorized(headers):
                return 401, self.failure_body(401), {}
            try:
                status, response = self.handle(method, path, query, body)
                return status, response, {}
            except HttpError as err:
                return err.status, err.body, err.headers

    # --- for subclasses -----------------------------------------------------------------------------

    def authorized(self, headers: dict[str, str]) -> bool:
        raise NotImplementedError

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        raise NotImplementedError

    def failure_body(self, status: int) -> Any:
        return {"message": f"fake {self.name}: HTTP {status}"}


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_webhook(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    """Deliver a webhook the way the vendor does: one POST of the raw body."""
    return http_client.post(url, content=body, headers={"Content-Type": "application/json", **headers}, timeout=30)
