"""Linear, Jira Cloud and Notion providers against their stateful fakes, over real HTTP on 127.0.0.1.

Each provider must pick tickets up by label, state, assignee and project; read one whole; comment; close
it the tracker's way (Linear's completed state, a Jira transition into a done-category status, Notion's
status property); verify a webhook delivery's signature and freshness; and report a 429 or 5xx as
retryable. The fake Linear additionally validates every query against Linear's published schema when
`@linear/sdk` is installed (it is in CI).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.support.fake_jira import FakeJira
from tests.support.fake_linear import FakeLinear
from tests.support.fake_notion import FakeNotion
from tests.support.linear_schema import published_schema
from tests.support.saas_models import package

from optio.security.ssrf import UnsafeURLError
from optio.tickets.base import BadTicketSignature, TicketFilter, TicketProviderError, TicketSourceConfig
from optio.tickets.jira import JiraProvider
from optio.tickets.linear import LinearProvider
from optio.tickets.notion import NotionProvider

ALLOW = ["127.0.0.1"]
KINDS = ["linear", "jira", "notion"]


@dataclass
class Env:
    """One tracker's fake and a provider on it, with the moves a test makes on the tracker's side."""

    kind: str
    fake: Any
    provider: Any
    secret: str
    assignee: str  # the filter value that names the assigned person
    make: Callable[..., str]  # (title, body, labels, assigned, elsewhere) -> external id
    close_remotely: Callable[[str], None]
    closed: Callable[[str], bool]
    comments: Callable[[str], list[str]]
    delivery: Callable[..., tuple[dict[str, str], bytes]]  # (external id, secret=, stale=)
    build: Callable[..., Any]  # (api_url, credential, allowlist) -> a provider


def _linear() -> Iterator[Env]:
    pkg = package("@linear/sdk")
    with FakeLinear(published_schema=published_schema(pkg) if pkg else None) as fake:
        eng, ops = fake.create_team("ENG"), fake.create_team("OPS")
        ada = fake.create_user("ada@example.com", "Ada")

        def make(title: str, body: str = "", labels: tuple[str, ...] = (), assigned: bool = False,
                 elsewhere: bool = False) -> str:
            return fake.create_issue(ops if elsewhere else eng, title, body, labels=list(labels),
                                     assignee=ada if assigned else None).id

        def close_remotely(i: str) -> None:
            fake.issues[i].state = fake.state_named(fake.issues[i].team, "Canceled")

        def build(url: str, credential: str, allowlist: list[str]) -> LinearProvider:
            return LinearProvider(TicketSourceConfig(1, 1, "linear", url, {"team": "ENG"}), credential,
                                  allowlist=allowlist)

        yield Env("linear", fake, build(fake.url, fake.api_key, ALLOW), fake.webhook_secret, "ada@example.com",
                  make, close_remotely, lambda i: fake.issues[i].state["type"] == "completed",
                  lambda i: fake.issues[i].comments,
                  lambda i, secret=None, stale=False: fake.delivery(
                      fake.issues[i], secret=secret,
                      timestamp_ms=int((time.time() - 120) * 1000) if stale else None), build)
        assert fake.refused == [], "Linear's published schema refused a query the provider sent"


def _jira() -> Iterator[Env]:
    with FakeJira() as fake:
        ada = fake.create_user("ada@example.com", "Ada")

        def make(title: str, body: str = "", labels: tuple[str, ...] = (), assigned: bool = False,
                 elsewhere: bool = False) -> str:
            return fake.create_issue("OPS" if elsewhere else "PROJ", title, body, labels=list(labels),
                                     assignee=ada if assigned else None).id

        def close_remotely(i: str) -> None:
            fake.issues[i].status = "10002"

        def build(url: str, credential: str, allowlist: list[str]) -> JiraProvider:
            return JiraProvider(TicketSourceConfig(1, 1, "jira", url, {"project": "PROJ", "email": fake.email}),
                                credential, allowlist=allowlist)

        yield Env("jira", fake, build(fake.url, fake.api_token, ALLOW), fake.webhook_secret, "ada@example.com",
                  make, close_remotely, lambda i: fake.status_name(fake.issues[i]) == "Done",
                  lambda i: fake.issues[i].comment_texts(),
                  lambda i, secret=None, stale=False: fake.delivery(
                      fake.issues[i], secret=secret,
                      timestamp_ms=int((time.time() - 600) * 1000) if stale else None), build)


def _notion() -> Iterator[Env]:
    with FakeNotion() as fake:
        ada = fake.create_user("ada@example.com", "Ada")

        def make(title: str, body: str = "", labels: tuple[str, ...] = (), assigned: bool = False,
                 elsewhere: bool = False) -> str:
            return fake.create_page(title, body, labels=list(labels), assignee=ada if assigned else None).id

        def close_remotely(i: str) -> None:
            fake.pages[i].status = "Done"

        def build(url: str, credential: str, allowlist: list[str]) -> NotionProvider:
            return NotionProvider(TicketSourceConfig(1, 1, "notion", url, {"database_id": fake.database_id}),
                                  credential, allowlist=allowlist)

        yield Env("notion", fake, build(fake.url, fake.token, ALLOW), fake.verification_token, ada["id"],
                  make, close_remotely, lambda i: fake.pages[i].status == "Done", lambda i: fake.pages[i].comments,
                  lambda i, secret=None, stale=False: fake.delivery(
                      fake.pages[i], secret=secret,
                      timestamp=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 600))
                      if stale else None), build)


@pytest.fixture(params=KINDS)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    yield from {"linear": _linear, "jira": _jira, "notion": _notion}[request.param]()


def test_lists_tickets_by_label_state_assignee_and_project(env: Env) -> None:
    mine = env.make("Mine", labels=("optio", "bug"), assigned=True)
    # Linear and Jira match labels in any case; Notion matches a multi-select option by its name as spelled
    theirs = env.make("Unassigned", labels=("optio" if env.kind == "notion" else "OPTIO",))
    env.make("Not for optio", labels=("docs",))
    done = env.make("Already done", labels=("optio",))
    env.close_remotely(done)

    open_optio = env.provider.list_tickets(TicketFilter(label="optio"))
    assert {t.external_id for t in open_optio} == {mine, theirs}
    assert all(t.state == "open" and "optio" in {x.lower() for x in t.labels} for t in open_optio)

    assigned = env.provider.list_tickets(TicketFilter(label="optio", assignee=env.assignee))
    assert [t.external_id for t in assigned] == [mine]
    assert assigned[0].assignee == "ada@example.com"

    closed = env.provider.list_tickets(TicketFilter(label="optio", state="closed"))
    assert [t.external_id for t in closed] == [done]
    assert closed[0].state == "closed"
    assert {t.external_id for t in env.provider.list_tickets(TicketFilter(label="optio", state=None))} \
        == {mine, theirs, done}

    if env.kind != "notion":  # a Notion database is one project; Linear teams and Jira projects are many
        elsewhere = env.make("Other team", labels=("optio",), elsewhere=True)
        assert elsewhere not in {t.external_id for t in env.provider.list_tickets(TicketFilter(label="optio"))}


def test_get_reads_the_whole_ticket(env: Env) -> None:
    ext = env.make("Crash on start", "Steps:\nrun it\nsee it crash", labels=("optio",), assigned=True)
    ticket = env.provider.get(ext)
    assert (ticket.external_id, ticket.title, ticket.state) == (ext, "Crash on start", "open")
    assert ticket.body == "Steps:\nrun it\nsee it crash"
    assert ticket.url.startswith(env.fake.url) and ticket.key
    assert ticket.labels == ("optio",) and ticket.assignee == "ada@example.com"
    assert ticket.updated_at is not None and ticket.updated_at.tzinfo is not None
    assert env.provider.list_tickets(TicketFilter(label="optio"))[0].body == ticket.body
    with pytest.raises(TicketProviderError) as missing:
        env.provider.get("00000000-0000-4000-8000-000000000000" if env.kind != "jira" else "99999")
    assert not missing.value.retryable


def test_comments_and_closes_the_trackers_way(env: Env) -> None:
    ext = env.make("Fix the thing", labels=("optio",))
    env.provider.comment(ext, "Optio picked this up: http://optio.local/tasks/7")
    assert env.comments(ext) == ["Optio picked this up: http://optio.local/tasks/7"]
    assert not env.closed(ext)

    env.provider.close(ext, "Merged: http://forge.local/pr/3\nThanks.")
    assert env.closed(ext)
    assert env.comments(ext)[-1] == "Merged: http://forge.local/pr/3\nThanks."
    assert env.provider.get(ext).state == "closed"
    env.provider.close(ext)  # closing a closed ticket changes nothing and does not fail
    assert env.closed(ext) and len(env.comments(ext)) == 2
    if env.kind == "jira":  # the done transition is found by its target's category, not its place in the list
        posted = [x.body for x in env.fake.exchanges if x.method == "POST" and x.path.endswith("/transitions")]
        assert posted == [{"transition": {"id": "31"}}]


def test_webhook_verifies_signature_and_freshness(env: Env) -> None:
    ext = env.make("Hooked", labels=("optio",))
    headers, body = env.delivery(ext)
    events = env.provider.parse_webhook(headers, body, env.secret)
    assert [e.external_id for e in events] == [ext]
    assert events[0].delivery_id

    bad_headers, bad_body = env.delivery(ext, secret="not-the-secret")
    with pytest.raises(BadTicketSignature):
        env.provider.parse_webhook(bad_headers, bad_body, env.secret)
    with pytest.raises(BadTicketSignature):  # a body changed after signing
        env.provider.parse_webhook(headers, body.replace(b'"', b'"  ', 1), env.secret)
    with pytest.raises(BadTicketSignature):
        env.provider.parse_webhook({}, body, env.secret)
    with pytest.raises(BadTicketSignature):
        env.provider.parse_webhook(headers, body, None)
    stale_headers, stale_body = env.delivery(ext, stale=True)
    with pytest.raises(BadTicketSignature):
        env.provider.parse_webhook(stale_headers, stale_body, env.secret)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_outages_are_retryable(env: Env, status: int) -> None:
    ext = env.make("Flaky", labels=("optio",))
    env.fake.fail_next(status)
    with pytest.raises(TicketProviderError) as busy:
        env.provider.get(ext)
    assert busy.value.retryable
    env.fake.fail_next(status)
    with pytest.raises(TicketProviderError) as busy:
        env.provider.comment(ext, "hello")
    assert busy.value.retryable
    assert env.comments(ext) == []
    env.provider.comment(ext, "hello")  # the outage is over
    assert env.comments(ext) == ["hello"]


def test_a_wrong_credential_is_not_retryable(env: Env) -> None:
    ext = env.make("Locked", labels=("optio",))
    provider = env.build(env.fake.url, "not-the-credential", ALLOW)
    with pytest.raises(TicketProviderError) as refused:
        provider.get(ext)
    assert not refused.value.retryable


def test_base_url_goes_through_the_ssrf_guard(env: Env) -> None:
    with pytest.raises(UnsafeURLError):
        env.build(env.fake.url, "x", [])  # 127.0.0.1 is internal unless the operator allows it
    with pytest.raises(UnsafeURLError):
        env.build("http://169.254.169.254", "x", ALLOW)
