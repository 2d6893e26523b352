"""OIDC sign-in end to end: a real `optio serve` against a local provider speaking the real protocol
(tests/support/oidc_provider.py), driven like a browser following redirects and keeping cookies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.oidc_provider import OidcProvider, sign_in
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OptioServer, OidcProvider]]:
    with OidcProvider() as provider:
        server = OptioServer(tmp_path_factory.mktemp("oidc") / "data", env={
            "OPTIO_OIDC_ISSUER": provider.issuer, "OPTIO_OIDC_CLIENT_ID": provider.client_id,
            "OPTIO_OIDC_CLIENT_SECRET": provider.client_secret, "OPTIO_OUTBOUND_ALLOWLIST": "127.0.0.1",
            "OPTIO_OIDC_DEFAULT_ROLE": "member", "OPTIO_OIDC_DEFAULT_WORKSPACE": "default"}).start()
        try:
            yield server, provider
        finally:
            server.stop()


def test_sign_in_creates_a_session_for_a_new_member(sso: tuple[OptioServer, OidcProvider]) -> None:
    server, provider = sso
    provider.mode = "good"
    browser, callback = sign_in(server)
    assert callback.status_code == 303 and callback.headers["location"] == "/"
    cookie = callback.headers["set-cookie"]
    assert "optio_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    me = browser.get(server.url + "/api/me").json()
    # The name is the verified email, never the self-chosen preferred_username ("ada").
    assert me["username"] == "ada@example.com" and me["auth"] == "session" and me["workspace"]["role"] == "member"
    # A second sign-in finds the same person, not a new user.
    browser2, callback2 = sign_in(server)
    assert callback2.status_code == 303
    assert browser2.get(server.url + "/api/me").json()["user_id"] == me["user_id"]
    logins = server.api("GET", "/api/audit", params={"action": "login"}).json()["items"]
    assert [e["detail"]["via"] for e in logins] == ["oidc", "oidc"]


@pytest.mark.parametrize("mode", ["bad_signature", "wrong_audience"])
def test_forged_or_misdirected_id_tokens_are_rejected(sso: tuple[OptioServer, OidcProvider], mode: str) -> None:
    server, provider = sso
    provider.mode = mode
    before = provider.token_requests
    try:
        browser, callback = sign_in(server)
    finally:
        provider.mode = "good"
    assert provider.token_requests == before + 1  # the code was exchanged; the token itself was refused
    assert callback.status_code == 401, callback.text
    assert callback.json()["error"]["code"] == "oidc_failed"
    assert ("signature" if mode == "bad_signature" else "audience") in callback.json()["error"]["message"]
    assert "optio_session" not in callback.headers.get("set-cookie", "")
    assert browser.get(server.url + "/api/me").status_code == 401


def test_callback_without_the_browsers_attempt_cookie_is_refused(sso: tuple[OptioServer, OidcProvider]) -> None:
    server, _provider = sso
    browser = httpx.Client(timeout=30)
    start = browser.get(server.url + "/auth/oidc/login")
    back = browser.get(start.headers["location"]).headers["location"]
    stranger = httpx.get(back, timeout=30)  # same code and state, another browser
    assert stranger.status_code == 401


def test_issuer_on_loopback_is_refused_without_the_allowlist(tmp_path: Path) -> None:
    with OidcProvider() as provider:
        server = OptioServer(tmp_path / "data", env={
            "OPTIO_OIDC_ISSUER": provider.issuer, "OPTIO_OIDC_CLIENT_ID": provider.client_id,
            "OPTIO_OIDC_CLIENT_SECRET": provider.client_secret}).start()
        try:
            res = httpx.get(server.url + "/auth/oidc/login", timeout=30)
        finally:
            server.stop()
    assert res.status_code == 401 and "allowlist" in res.json()["error"]["message"]
