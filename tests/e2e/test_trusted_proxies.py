"""Forwarded headers on a real `optio serve`: believed only from OPTIO_TRUSTED_PROXIES, so a client cannot
choose its own rate-limit key (or make a plain-http request look like https) by sending a header."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow

LIMIT = 3


def logins(server: OptioServer, forwarded_for: list[str]) -> list[int]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return [client.post("/login", data={"username": "admin", "password": "guess"},
                            headers={"X-Forwarded-For": ip}).status_code for ip in forwarded_for]


def login_form_cookie(server: OptioServer, proto: str) -> str:
    return httpx.get(server.url + "/login", headers={"X-Forwarded-Proto": proto}, timeout=30).headers["set-cookie"]


def test_forwarded_for_from_loopback_is_ignored_by_default(tmp_path: Path) -> None:
    server = OptioServer(tmp_path / "data", env={"OPTIO_LOGIN_RATE_LIMIT": str(LIMIT),
                                                  "OPTIO_RATE_LIMIT_WINDOW_S": "3600"}).start()
    try:
        codes = logins(server, [f"203.0.113.{i}" for i in range(LIMIT + 3)])
        secure = login_form_cookie(server, "https")
    finally:
        server.stop()
    # Every attempt counts against the real peer (127.0.0.1), whatever address the header claims.
    assert all(c != 429 for c in codes[:LIMIT]) and codes[LIMIT:] == [429] * 3, codes
    assert "secure" not in secure.lower()


def test_forwarded_for_is_used_from_a_trusted_proxy(tmp_path: Path) -> None:
    server = OptioServer(tmp_path / "data", env={"OPTIO_LOGIN_RATE_LIMIT": str(LIMIT),
                                                  "OPTIO_RATE_LIMIT_WINDOW_S": "3600",
                                                  "OPTIO_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"}).start()
    try:
        spread = logins(server, [f"203.0.113.{i}" for i in range(LIMIT + 3)])
        one_client = logins(server, ["198.51.100.7"] * (LIMIT + 1))
        secure = login_form_cookie(server, "https")
    finally:
        server.stop()
    # Behind the proxy each forwarded client has its own window.
    assert 429 not in spread, spread
    assert one_client[LIMIT:] == [429], one_client
    assert "secure" in secure.lower()
