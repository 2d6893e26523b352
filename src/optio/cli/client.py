"""A small HTTP client for the CLI: clear messages instead of tracebacks."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import typer
from rich.console import Console

# Piped stderr is not wrapped at 80 columns either (an error message stays one line).
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=1_000_000, soft_wrap=True)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Client:
    url: str
    workspace: str | None = None
    token: str | None = None
    timeout: float = 30.0
    # One connection pool for the command's life: `--wait` and `--follow` ask every fraction of a second, and a
    # one-off request builds a TLS context and a connection each time (most of such a command's CPU).
    _http: httpx.Client | None = field(default=None, init=False, repr=False, compare=False)

    def _session(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout)
        return self._http

    def _headers(self) -> dict[str, str]:
        # Proves the request is not a cross-site one from a browser (required when the server runs without auth).
        headers: dict[str, str] = {"X-Optio-CSRF": "1"}
        if self.workspace:
            headers["X-Optio-Workspace"] = self.workspace
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._session().request(method, self.url.rstrip("/") + path, headers=self._headers(), **kwargs)
        except httpx.ConnectError:
            raise ApiError(0, "unreachable", unreachable(self.url)) from None
        except httpx.HTTPError as exc:
            raise ApiError(0, "http_error", f"request to {self.url} failed: {exc}") from None
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                raise ApiError(resp.status_code, err.get("code", "error"), err.get("message", resp.text))
            except (ValueError, KeyError, TypeError):
                raise ApiError(resp.status_code, "error", resp.text[:500]) from None
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def sse(self, path: str, params: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yields (event, data) pairs of a server-sent event stream."""
        try:
            with self._session().stream("GET", self.url.rstrip("/") + path, params=params, headers=self._headers(),
                                        timeout=httpx.Timeout(30.0, read=None)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    try:
                        err = resp.json()["error"]
                        raise ApiError(resp.status_code, err.get("code", "error"), err.get("message", ""))
                    except (ValueError, KeyError):
                        raise ApiError(resp.status_code, "error", resp.text[:500]) from None
                event, data = "message", ""
                for line in resp.iter_lines():
                    if not line:
                        if data:
                            yield event, json.loads(data)
                        event, data = "message", ""
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
        except httpx.ConnectError:
            raise ApiError(0, "unreachable", unreachable(self.url)) from None


def unreachable(url: str) -> str:
    return f"cannot reach Optio at {url} (start it with `optio serve`)"


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)
