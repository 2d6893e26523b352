"""The fake Notion speaks Notion's published API shapes, not a dialect of its own.

Notion publishes no OpenAPI description on a registry, but its official JavaScript SDK `@notionhq/client`
ships a TypeScript model of every request body, response and webhook payload. Every request the provider
sends through a ticket's life (database, data source, query with a compound filter, blocks, comments, page
update) and every response the fake gives is checked against the matching model with
tests/support/ts_models.py, down to each page property, block and webhook delivery. Skipped locally without
the package; required in CI.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from tests.support.fake_notion import FakeNotion
from tests.support.saas_models import require
from tests.support.ts_models import Models

from optio.tickets.base import TicketFilter, TicketSourceConfig
from optio.tickets.notion import NotionProvider

# (method, path pattern) -> (request body model, response model)
ROUTES: list[tuple[str, str, str | None, str]] = [
    ("GET", r"/v1/databases/[\w-]+", None, "DatabaseObjectResponse"),
    ("GET", r"/v1/data_sources/[\w-]+", None, "DataSourceObjectResponse"),
    ("POST", r"/v1/data_sources/[\w-]+/query", "QueryDataSourceBodyParameters", "QueryDataSourceResponse"),
    ("GET", r"/v1/blocks/[\w-]+/children", None, "ListBlockChildrenResponse"),
    ("POST", r"/v1/comments", "CreateCommentBodyParameters", "CommentObjectResponse"),
    ("GET", r"/v1/pages/[\w-]+", None, "PageObjectResponse"),
    ("PATCH", r"/v1/pages/[\w-]+", "UpdatePageBodyParameters", "PageObjectResponse"),
]


class NotionModels(Models):
    """`Array<A | B>` read as an array of the union (not `A | B[]`), which Notion's models use throughout."""

    def check(self, value: Any, type_: str, where: str = "$") -> list[str]:
        m = re.match(r"^Array<(.+)>$", type_.strip())
        if m:
            return super().check(value, f"({m.group(1)})[]", where)
        return super().check(value, type_, where)


@pytest.fixture(scope="module")
def models() -> NotionModels:
    endpoints = require("@notionhq/client") / "build" / "src" / "api-endpoints"
    return NotionModels.load(*sorted(endpoints.glob("*.d.ts")))


def test_every_request_and_response_matches_notions_models(models: NotionModels) -> None:
    with FakeNotion() as fake:
        ada = fake.create_user("ada@example.com", "Ada")
        page = fake.create_page("Shapes", "first line\nsecond", labels=["optio", "bug"], assignee=ada)
        fake.create_page("Bare")
        provider = NotionProvider(TicketSourceConfig(1, 1, "notion", fake.url, {"database_id": fake.database_id}),
                                  fake.token, allowlist=["127.0.0.1"])
        provider.list_tickets(TicketFilter(label="optio", assignee=ada["id"]))
        provider.list_tickets(TicketFilter(state="closed"))
        provider.get(page.id)
        provider.comment(page.id, "hello")
        provider.close(page.id, "done")
        exchanges = list(fake.exchanges)
        hooks = [json.loads(fake.delivery(page, event)[1]) for event in ("page.created", "page.properties_updated")]

    problems: list[str] = []
    seen = set()
    for x in exchanges:
        route = next((r for r in ROUTES if r[0] == x.method and re.fullmatch(r[1], x.path)), None)
        assert route is not None, f"no model for {x.method} {x.path}"
        assert x.status == 200, (x.method, x.path, x.status, x.response)
        seen.add(route[:2])
        if route[2]:
            problems += models.check(x.body, route[2], f"request {x.method} {x.path}")
        problems += models.check(x.response, route[3], f"response {x.method} {x.path}")
        pages = x.response.get("results", []) if x.path.endswith("/query") else [x.response] \
            if x.path.startswith("/v1/pages/") else []
        for p in pages:  # each property on its own: the page model types `properties` as a Record
            for name, prop in p["properties"].items():
                problems += models.check(prop, "PagePropertyValueWithIdResponse", f"{x.path} property {name}")
        if x.path.endswith("/children"):
            for block in x.response["results"]:
                problems += models.check(block, "ParagraphBlockObjectResponse", f"{x.path} block")
        if x.path.startswith("/v1/data_sources/") and x.method == "GET":
            for name, config in x.response["properties"].items():
                problems += models.check(config, "DatabasePropertyConfigResponse", f"data source property {name}")
    assert seen == {r[:2] for r in ROUTES}
    problems += models.check(hooks[0], "PageCreatedWebhookPayload", "webhook page.created")
    problems += models.check(hooks[1], "PagePropertiesUpdatedWebhookPayload", "webhook page.properties_updated")
    assert problems == []
    assert models.unread == set()


def test_the_models_catch_a_wrong_shape(models: NotionModels) -> None:
    assert models.check({"object": "page", "id": "x"}, "PageObjectResponse")
    assert models.check({"id": "s", "type": "status", "status": {"name": 3}}, "PagePropertyValueWithIdResponse")
    assert models.check({"parent": {"page_id": "p"}, "rich_text": "not a list"}, "CreateCommentBodyParameters")
