"""The outbound setup every hosted ticket provider makes in its constructor: its credential, and the SSRF guard
on its base URL at once and on each request its client sends after."""

from __future__ import annotations

import httpx
import pytest

from optio.security.ssrf import UnsafeURLError
from optio.tickets import net
from optio.tickets.base import TicketProviderError, TicketSourceConfig
from optio.tickets.registry import build_provider


def test_a_source_without_its_credential_says_what_it_needs() -> None:
    for missing in (None, ""):
        with pytest.raises(TicketProviderError) as refused:
            net.credential(missing, "Jira", "an API token")
        assert str(refused.value) == "a Jira source needs an API token (its credential secret)"
        assert not refused.value.retryable
    assert net.credential("t0ken", "Jira", "an API token") == "t0ken"


def test_the_base_url_is_checked_at_once_and_every_request_after() -> None:
    with pytest.raises(UnsafeURLError):
        net.guarded("http://127.0.0.1:9", [])  # internal unless the operator allows it
    hook = net.guarded("http://127.0.0.1:9", ["127.0.0.1"])
    hook(httpx.Request("GET", "http://127.0.0.1:9/rest/api/3/issue/1"))
    with pytest.raises(UnsafeURLError):
        hook(httpx.Request("GET", "http://169.254.169.254/latest/meta-data"))  # e.g. where a redirect points


def test_without_an_allowlist_the_servers_applies_as_it_was_when_the_provider_was_built() -> None:
    net.set_allowlist(["127.0.0.1"])
    try:
        hook = net.guarded("http://127.0.0.1:9")
    finally:
        net.set_allowlist([])
    hook(httpx.Request("GET", "http://127.0.0.1:9/graphql"))
    with pytest.raises(UnsafeURLError):
        net.guarded("http://127.0.0.1:9")


@pytest.mark.parametrize(("kind", "options", "message"), [
    ("jira", {"project": "PROJ", "email": "a@example.com"}, "a Jira source needs an API token"),
    ("linear", {"team": "ENG"}, "a Linear source needs an API key"),
    ("notion", {"database_id": "db"}, "a Notion source needs an integration token"),
    ("github", {"repo": "acme/issues"}, "a GitHub source needs a token"),
    ("gitlab", {"project": "acme/issues"}, "a GitLab source needs a token"),
])
def test_every_hosted_provider_refuses_to_start_without_its_credential(kind: str, options: dict[str, str],
                                                                        message: str) -> None:
    config = TicketSourceConfig(1, 1, kind, "https://tracker.example", options)
    with pytest.raises(TicketProviderError) as refused:
        build_provider(config, None)
    assert str(refused.value) == f"{message} (its credential secret)"
