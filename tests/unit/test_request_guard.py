"""Which Host headers the server answers, from its settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from optio.api.request_guard import HostPolicy
from optio.config import Settings


def policy(**kw: object) -> HostPolicy:
    return HostPolicy.from_settings(Settings(data_dir=Path("/nonexistent"), **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("auth", ["enabled", "disabled"])
def test_default_is_loopback_names_on_the_port(auth: str) -> None:
    p = policy(auth=auth, port=8470)
    for host in ("127.0.0.1:8470", "localhost:8470", "[::1]:8470", "LOCALHOST:8470"):
        assert p.allows(host), host
    for host in ("evil.example:8470", "evil.example", "127.0.0.1.evil.example:8470", "localhost:9999", "", None,
                 "localhost"):
        assert not p.allows(host), host


def test_explicit_list_names_any_port_or_one_port() -> None:
    p = policy(allowed_hosts="optio.example.com, build.internal:9000")
    assert p.allows("optio.example.com") and p.allows("optio.example.com:443")
    assert p.allows("build.internal:9000") and not p.allows("build.internal:9001")
    assert not p.allows("127.0.0.1:8470")  # the list replaces the defaults
    assert policy(allowed_hosts="*").allows("anything.example")


def test_auth_on_with_a_public_bind_and_no_list_answers_any_host() -> None:
    assert policy(host="0.0.0.0").allows("optio.example.com")
    assert not policy(host="0.0.0.0", auth="disabled").allows("optio.example.com")


def test_a_specific_bind_address_is_allowed() -> None:
    assert policy(host="10.1.2.3", auth="disabled", port=81).allows("10.1.2.3:81")
    assert policy(host="::1", port=81).allows("[::1]:81")
