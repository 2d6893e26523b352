"""The fake Jira speaks Jira Cloud's published REST shapes, not a dialect of its own.

Atlassian's OpenAPI description of the REST API v3 is not shipped by any npm or PyPI package CI can install as
a file, but the maintained npm client `jira.js` ships runtime zod schemas generated from it, one per request
body and response model. Every request the provider makes through a whole ticket life (search, get, comment,
transitions, transition) and every response the fake gives is parsed with the matching `jira.js` schema by
Node (tests/support/jira_zod_check.mjs). jira.js publishes no model for webhook bodies, so those are checked
against the issue model only. Skipped locally without the package; required in CI.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.support.fake_jira import FakeJira
from tests.support.saas_models import require

from optio.tickets.base import TicketFilter, TicketSourceConfig
from optio.tickets.jira import JiraProvider

CHECKER = Path(__file__).parents[1] / "support" / "jira_zod_check.mjs"

# (method, path pattern) -> (request body schema, response schema by status)
ROUTES: list[tuple[str, str, str | None, str | None]] = [
    ("POST", r"/rest/api/3/search/jql", "SearchAndReconcileRequestSchema", "SearchAndReconcileResultsSchema"),
    ("GET", r"/rest/api/3/issue/[\w-]+", None, "IssueSchema"),
    ("POST", r"/rest/api/3/issue/[\w-]+/comment", "CommentInputSchema", "CommentSchema"),
    ("GET", r"/rest/api/3/issue/[\w-]+/transitions", None, "TransitionsSchema"),
    ("POST", r"/rest/api/3/issue/[\w-]+/transitions", "IssueUpdateDetailsSchema", None),
]


def zod_check(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is needed to run jira.js's schemas")
    out = subprocess.run([node, str(CHECKER), str(require("jira.js"))], input=json.dumps(checks), text=True,
                         capture_output=True, check=True, timeout=120)
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def test_every_request_and_response_matches_jira_js_schemas() -> None:
    require("jira.js")
    with FakeJira() as fake:
        ada = fake.create_user("ada@example.com", "Ada")
        issue = fake.create_issue("PROJ", "Shapes", "first line\nsecond", labels=["optio"], assignee=ada)
        fake.create_issue("PROJ", "Bare")
        provider = JiraProvider(TicketSourceConfig(1, 1, "jira", fake.url, {"project": "PROJ",
                                                                             "email": fake.email}),
                                fake.api_token, allowlist=["127.0.0.1"])
        provider.list_tickets(TicketFilter(label="optio", assignee="ada@example.com"))
        provider.list_tickets(TicketFilter(state=None), limit=1)  # pages: nextPageToken
        provider.get(issue.id)
        provider.comment(issue.id, "hello\nworld")
        provider.close(issue.id, "done")
        exchanges = list(fake.exchanges)
        _, hook = fake.delivery(issue)

    checks: list[dict[str, Any]] = []
    seen: set[str] = set()
    for x in exchanges:
        route = next((r for r in ROUTES if r[0] == x.method and re.fullmatch(r[1], x.path)), None)
        assert route is not None, f"no schema for {x.method} {x.path}"
        assert x.status < 400, (x.method, x.path, x.status, x.response)
        seen.add(f"{route[0]} {route[1]}")
        if route[2]:
            checks.append({"where": f"request {x.method} {x.path}", "schema": route[2], "value": x.body})
        if route[3]:
            checks.append({"where": f"response {x.method} {x.path}", "schema": route[3], "value": x.response})
    assert seen == {f"{r[0]} {r[1]}" for r in ROUTES}
    checks.append({"where": "webhook issue", "schema": "IssueSchema", "value": json.loads(hook)["issue"]})
    results = zod_check(checks)
    assert [r for r in results if r["issues"]] == []


def test_the_checker_catches_a_wrong_shape() -> None:
    bad = zod_check([{"where": "bad", "schema": "TransitionsSchema",
                      "value": {"transitions": [{"id": 31, "to": {"statusCategory": {"key": 3}}}]}},
                     {"where": "bad comment", "schema": "CommentInputSchema", "value": {"body": {"type": "doc"}}}])
    assert all(r["issues"] for r in bad), bad
