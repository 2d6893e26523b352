"""Who OIDC lets in, and as whom, on a real server against the local provider: a verified email in an
allowed domain is required, an account is bound to (issuer, subject) and named by nothing the person can
choose, and a new account joins no workspace unless the operator configured one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.oidc_provider import OidcProvider, sign_in
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sso_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OptioServer, OidcProvider]]:
    # A default role is set but no default workspace: the role alone must grant nothing.
    with OidcProvider() as provider:
        server = OptioServer(tmp_path_factory.mktemp("oidc-identity") / "data", env={
            "OPTIO_OIDC_ISSUER": provider.issuer, "OPTIO_OIDC_CLIENT_ID": provider.client_id,
            "OPTIO_OIDC_CLIENT_SECRET": provider.client_secret, "OPTIO_OUTBOUND_ALLOWLIST": "127.0.0.1",
            "OPTIO_OIDC_ALLOWED_DOMAINS": "example.com, @Corp.Example", "OPTIO_OIDC_DEFAULT_ROLE": "admin",
            "OPTIO_LOGIN_RATE_LIMIT": "1000"}).start()
        try:
            yield server, provider
        finally:
            server.stop()


@pytest.fixture
def sso(sso_server: tuple[OptioServer, OidcProvider]) -> Iterator[tuple[OptioServer, OidcProvider]]:
    sso_server[1].reset()
    yield sso_server
    sso_server[1].reset()


def users_by_name(server: OptioServer) -> dict[str, dict[str, object]]:
    return {u["username"]: u for u in server.api("GET", "/api/users").json()}


def refused(server: OptioServer, provider: OidcProvider, expected: str) -> None:
    before = set(users_by_name(server))
    browser, callback = sign_in(server)
    assert callback.status_code == 403, callback.text
    assert callback.json()["error"]["code"] == "oidc_refused" and expected in callback.json()["error"]["message"]
    assert "optio_session" not in callback.headers.get("set-cookie", "")
    assert browser.get(server.url + "/api/me").status_code == 401
    assert set(users_by_name(server)) == before


@pytest.mark.parametrize("verified", [False, None, "false"])
def test_an_email_the_provider_did_not_verify_is_refused(sso: tuple[OptioServer, OidcProvider],
                                                         verified: bool | str | None) -> None:
    server, provider = sso
    provider.subject, provider.email, provider.email_verified = "unverified-1", "someone@example.com", verified
    refused(server, provider, "verified email")


def test_an_email_outside_the_allowed_domains_is_refused(sso: tuple[OptioServer, OidcProvider]) -> None:
    server, provider = sso
    provider.subject = "outsider-1"
    for email in ("eve@evil.test", "eve@example.com.evil.test", "eve@sub.example.com"):
        provider.email = email
        refused(server, provider, "domain")
    provider.subject, provider.email = "insider-1", "Ina@CORP.example"
    _browser, callback = sign_in(server)
    assert callback.status_code == 303
    assert "ina@corp.example" in users_by_name(server)


def test_a_new_user_joins_no_workspace_by_default(sso: tuple[OptioServer, OidcProvider]) -> None:
    server, provider = sso
    provider.subject, provider.email = "newcomer-1", "newcomer@example.com"
    browser, callback = sign_in(server)
    assert callback.status_code == 303
    me = browser.get(server.url + "/api/me")
    assert me.status_code == 404 and "not a member of any workspace" in me.json()["error"]["message"]
    assert "not a member of any workspace yet" in browser.get(server.url + "/").text
    assert users_by_name(server)["newcomer@example.com"]["workspaces"] == {}
    assert "newcomer@example.com" not in {m["username"] for m in server.api("GET", "/api/members").json()}
    # A server administrator adds them; then they are in.
    server.api("PUT", "/api/members/newcomer@example.com", json={"role": "viewer"}).raise_for_status()
    assert browser.get(server.url + "/api/me").json()["workspace"]["role"] == "viewer"


def test_preferred_username_cannot_take_or_squat_a_name(sso: tuple[OptioServer, OidcProvider]) -> None:
    server, provider = sso
    carol = server.api("PUT", "/api/members/carol", json={"role": "admin", "create_api_key": True}).json()
    # A person whose provider profile says "carol" does not become (or sit beside, as carol-2) the local carol.
    provider.subject, provider.email, provider.preferred_username = "mallory-1", "mallory@example.com", "carol"
    browser, callback = sign_in(server)
    assert callback.status_code == 303
    names = users_by_name(server)
    assert "mallory@example.com" in names and not any(n.startswith("carol-") for n in names)
    assert names["mallory@example.com"]["id"] != carol["user_id"] and names["mallory@example.com"]["workspaces"] == {}
    # Nor can they claim a name before its owner arrives: an admin granting "dave" a role later reaches a new
    # local dave, not the person whose profile said "dave".
    provider.subject, provider.email, provider.preferred_username = "mallory-2", "mallory2@example.com", "dave"
    squatter, callback = sign_in(server)
    assert callback.status_code == 303
    grant = server.api("PUT", "/api/members/dave", json={"role": "admin"})
    assert grant.status_code == 200 and grant.json()["created"] is True
    assert squatter.get(server.url + "/api/me").status_code == 404
    # And a single sign-on account cannot give itself a password to get in around the provider.
    res = browser.get(server.url + "/")
    assert res.status_code == 200
    server.api("PUT", "/api/members/mallory@example.com", json={"role": "viewer"}).raise_for_status()
    csrf = res.text.split("name='csrf-token' content='")[1].split("'")[0]
    res = browser.put(server.url + "/api/me/password", headers={"X-CSRF-Token": csrf},
                      json={"password": "a password of my own"})
    assert res.status_code == 403 and "single sign-on" in res.json()["error"]["message"]


def test_identity_is_the_issuers_subject_not_the_email(sso: tuple[OptioServer, OidcProvider]) -> None:
    server, provider = sso
    provider.subject, provider.email = "stable-subject", "first@example.com"
    _first, callback = sign_in(server)
    assert callback.status_code == 303
    user_id = users_by_name(server)["first@example.com"]["id"]
    # The provider now reports another email for the same subject: still the same account.
    provider.email, provider.preferred_username = "renamed@example.com", "renamed"
    second, callback = sign_in(server)
    assert callback.status_code == 303
    names = users_by_name(server)
    assert "renamed@example.com" not in names and names["first@example.com"]["id"] == user_id
    # Another subject claiming the first email gets its own account under an opaque name.
    provider.subject, provider.email = "other-subject", "first@example.com"
    third, callback = sign_in(server)
    assert callback.status_code == 303
    new = set(users_by_name(server)) - set(names)
    assert len(new) == 1 and next(iter(new)).startswith("oidc-")
    server.api("PUT", "/api/members/first@example.com", json={"role": "member"}).raise_for_status()
    assert second.get(server.url + "/api/me").json()["user_id"] == user_id
    assert third.get(server.url + "/api/me").status_code == 404
