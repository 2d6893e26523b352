"""The fake Linear speaks Linear's published GraphQL schema, not a dialect of its own.

Linear's npm SDK `@linear/sdk` ships its schema as graphql-codegen's TypeScript types, not as SDL (no npm
package ships the SDL); tests/support/linear_schema.py rebuilds the SDL from them. Checked here: every
query the provider sends validates against it (the fake refuses, as Linear would, any that does not); the
part of the schema the fake implements (`FAKE_SDL`) declares each field, argument and input field exactly as
Linear does; and the webhook deliveries the fake makes are Linear's `EntityWebhookPayload` with an
`IssueWebhookPayload` in `data`. Skipped locally without the package; required in CI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from graphql import GraphQLInputObjectType, GraphQLObjectType, GraphQLSchema, build_schema
from tests.support.fake_linear import FAKE_SDL, FakeLinear
from tests.support.linear_schema import check_value, published_schema, rebuild
from tests.support.saas_models import require

from optio.tickets.base import TicketFilter, TicketSourceConfig
from optio.tickets.linear import LinearProvider


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return published_schema(require("@linear/sdk"))


@pytest.fixture
def fake(schema: GraphQLSchema) -> Iterator[FakeLinear]:
    with FakeLinear(published_schema=schema) as fake:
        yield fake


def test_the_rebuilt_schema_covers_linears_api() -> None:
    rebuilt = rebuild(require("@linear/sdk"))
    built = rebuilt.build()
    assert built.query_type and built.mutation_type
    assert len(built.type_map) > 1000
    # what the rebuild could not read is only the webhook payloads' string-literal `type` fields
    assert all(u.startswith('"') or u.endswith(("$1", "WithNotification")) for u in rebuilt.unread), rebuilt.unread


def test_every_query_the_provider_sends_validates_against_linears_schema(fake: FakeLinear) -> None:
    team = fake.create_team("ENG")
    ada = fake.create_user("ada@example.com", "Ada")
    issue = fake.create_issue(team, "Shapes", "body", labels=["optio"], assignee=ada)
    provider = LinearProvider(TicketSourceConfig(1, 1, "linear", fake.url, {"team": "ENG"}), fake.api_key,
                              allowlist=["127.0.0.1"])
    for flt in (TicketFilter(label="optio"), TicketFilter(state="closed", assignee="ada@example.com"),
                TicketFilter(state=None, project="ENG")):
        provider.list_tickets(flt)
    provider.get(issue.id)
    provider.comment(issue.id, "hello")
    provider.close(issue.id, "bye")
    queries = [x.body["query"] for x in fake.exchanges if x.path == "/graphql"]
    assert len(queries) >= 7 and all(x.status == 200 for x in fake.exchanges)
    assert fake.refused == []


def test_the_fake_refuses_what_linear_would(fake: FakeLinear) -> None:
    bad = {"query": "query { issues(filter: {labels: {name: {eq: \"x\"}}}, first: 5) { nodes { id nope } } }"}
    reply = httpx.post(fake.url + "/graphql", json=bad, headers={"Authorization": fake.api_key})
    assert reply.status_code == 400
    errors = reply.json()["errors"]
    assert {e["extensions"]["code"] for e in errors} == {"GRAPHQL_VALIDATION_FAILED"}
    assert any("nope" in e["message"] for e in errors)
    assert fake.refused and "nope" in fake.refused[0][0]


def test_the_fakes_schema_is_a_faithful_part_of_linears(schema: GraphQLSchema) -> None:
    fake_schema = build_schema(FAKE_SDL)
    problems = []
    for name, ours in fake_schema.type_map.items():
        if name.startswith("__") or name in ("String", "Boolean", "ID", "Int", "Float"):
            continue
        theirs = schema.type_map.get(name)
        if theirs is None or type(theirs) is not type(ours):
            problems.append(f"{name}: not a {type(ours).__name__} in Linear's schema")
            continue
        if isinstance(ours, GraphQLObjectType | GraphQLInputObjectType):
            for fname, fld in ours.fields.items():
                other = theirs.fields.get(fname)  # type: ignore[union-attr]
                if other is None:
                    problems.append(f"{name}.{fname}: not in Linear's schema")
                    continue
                if str(fld.type) != str(other.type):
                    problems.append(f"{name}.{fname}: {fld.type} here, {other.type} in Linear's schema")
                for aname, arg in getattr(fld, "args", {}).items():
                    their_arg = other.args.get(aname)
                    if their_arg is None or str(their_arg.type) != str(arg.type):
                        problems.append(f"{name}.{fname}({aname}): {arg.type} here, "
                                        f"{their_arg.type if their_arg else 'absent'} in Linear's schema")
        elif hasattr(ours, "values"):
            missing = set(ours.values) - set(theirs.values)  # type: ignore[attr-defined]
            if missing:
                problems.append(f"{name}: values {sorted(missing)} not in Linear's schema")
    assert problems == []


def test_webhook_deliveries_are_linears_payloads(fake: FakeLinear, schema: GraphQLSchema) -> None:
    team = fake.create_team("ENG")
    ada = fake.create_user("ada@example.com", "Ada")
    for issue in (fake.create_issue(team, "Plain"), fake.create_issue(team, "Full", "text", labels=["optio", "bug"],
                                                                      assignee=ada)):
        _, body = fake.delivery(issue)
        payload = json.loads(body)
        assert check_value(schema, "EntityWebhookPayload", payload) == []
        assert check_value(schema, "IssueWebhookPayload", payload["data"]) == []
