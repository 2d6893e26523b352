"""A stateful Linear double: a test stand-in for Linear's hosted GraphQL API, which tests cannot reach.

It serves `POST /graphql` on 127.0.0.1 with an API key in `Authorization`, and holds teams (each with its
workflow states: Backlog, Todo, In Progress, Done, Canceled), labels, users, issues and comments. Queries
run for real with graphql-core against the part of Linear's schema the fake implements (``FAKE_SDL``:
names, arguments, nullability and filters as Linear declares them); and, when the fake is given Linear's
published schema, every incoming document is first validated against it, and any document Linear would
refuse is answered with Linear's GRAPHQL_VALIDATION_FAILED error instead of being run.

Linear's npm SDK (``@linear/sdk``) does not ship the schema as SDL; it ships the TypeScript types that
graphql-codegen generates from it, one type per schema type, field, argument list and enum.
:mod:`tests.support.linear_schema` rebuilds the SDL from those types, and that is the published schema
the fake checks against (see tests/integration/test_linear_fake_schema.py).

Webhook deliveries are made as Linear makes them: the JSON body with `webhookTimestamp` in milliseconds,
`Linear-Signature` (hex HMAC-SHA256 of the raw body with the webhook's secret), `Linear-Delivery`,
`Linear-Event`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLSchema, build_schema, graphql_sync, parse, validate
from graphql.error import GraphQLError
from tests.support.saas_http import HttpError, SaasFake, hmac_hex, post_webhook

FAKE_SDL = """
scalar DateTime
enum PaginationOrderBy { createdAt updatedAt }
input StringComparator { eq: String eqIgnoreCase: String in: [String!] }
input IdComparator { eq: ID }
input TeamFilter { id: IdComparator key: StringComparator }
input IssueLabelFilter { name: StringComparator }
input IssueLabelCollectionFilter { some: IssueLabelFilter }
input NullableUserFilter { email: StringComparator displayName: StringComparator }
input WorkflowStateFilter { type: StringComparator team: TeamFilter }
input IssueFilter {
  team: TeamFilter labels: IssueLabelCollectionFilter state: WorkflowStateFilter assignee: NullableUserFilter
}
input CommentCreateInput { issueId: String body: String }
input IssueUpdateInput { stateId: String }
type Team { id: ID! key: String! name: String! }
type User { id: ID! email: String! displayName: String! }
type WorkflowState { id: ID! name: String! type: String! position: Float! }
type IssueLabel { id: ID! name: String! }
type IssueLabelConnection { nodes: [IssueLabel!]! }
type Issue {
  id: ID! identifier: String! title: String! description: String url: String! updatedAt: DateTime!
  state: WorkflowState! labels: IssueLabelConnection! assignee: User team: Team!
}
type IssueConnection { nodes: [Issue!]! }
type WorkflowStateConnection { nodes: [WorkflowState!]! }
type Comment { id: ID! body: String! }
type CommentPayload { success: Boolean! comment: Comment! }
type IssuePayload { success: Boolean! issue: Issue }
type Query {
  issue(id: String!): Issue!
  issues(filter: IssueFilter, first: Int, orderBy: PaginationOrderBy): IssueConnection!
  workflowStates(filter: WorkflowStateFilter, first: Int): WorkflowStateConnection!
}
type Mutation {
  commentCreate(input: CommentCreateInput!): CommentPayload!
  issueUpdate(id: String!, input: IssueUpdateInput!): IssuePayload!
}
"""

_STATES = (("Backlog", "backlog", 0.0), ("Todo", "unstarted", 1.0), ("In Progress", "started", 2.0),
           ("Done", "completed", 3.0), ("Canceled", "canceled", 4.0))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class LinearIssue:
    id: str
    identifier: str
    team: dict[str, Any]
    title: str
    description: str
    state: dict[str, Any]
    labels: list[str] = field(default_factory=list)
    assignee: dict[str, Any] | None = None
    updated_at: str = field(default_factory=_now)
    comments: list[str] = field(default_factory=list)


class FakeLinear(SaasFake):
    name = "linear"

    def __init__(self, api_key: str = "lin_api_fake", *, published_schema: GraphQLSchema | None = None) -> None:
        self.api_key = api_key
        self.published_schema = published_schema
        self.schema = build_schema(FAKE_SDL)
        self.teams: dict[str, dict[str, Any]] = {}
        self.states: dict[str, list[dict[str, Any]]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.issues: dict[str, LinearIssue] = {}
        self.refused: list[tuple[str, list[str]]] = []  # documents the published schema refused
        self.webhook_secret = "lin_wh_" + uuid.uuid4().hex
        self.webhook_url: str | None = None
        super().__init__()

    # --- arranging ------------------------------------------------------------------------------

    def create_team(self, key: str, name: str | None = None) -> dict[str, Any]:
        team = {"id": str(uuid.uuid4()), "key": key, "name": name or key}
        self.teams[team["id"]] = team
        self.states[team["id"]] = [{"id": str(uuid.uuid4()), "name": n, "type": t, "position": p}
                                   for n, t, p in _STATES]
        return team

    def create_user(self, email: str, display_name: str) -> dict[str, Any]:
        user = {"id": str(uuid.uuid4()), "email": email, "displayName": display_name}
        self.users[user["id"]] = user
        return user

    def create_issue(self, team: dict[str, Any], title: str, description: str = "", *, labels: Sequence[str] = (),
                     assignee: dict[str, Any] | None = None, state: str = "Todo") -> LinearIssue:
        with self.lock:
            number = sum(1 for i in self.issues.values() if i.team["id"] == team["id"]) + 1
            issue = LinearIssue(str(uuid.uuid4()), f"{team['key']}-{number}", team, title, description,
                                self.state_named(team, state), list(labels), assignee)
            self.issues[issue.id] = issue
        self.notify(issue, "create")
        return issue

    def state_named(self, team: dict[str, Any], name: str) -> dict[str, Any]:
        return next(s for s in self.states[team["id"]] if s["name"] == name)

    def set_labels(self, issue: LinearIssue, labels: list[str]) -> None:
        with self.lock:
            issue.labels = list(labels)
            issue.updated_at = _now()
        self.notify(issue, "update")

    # --- webhooks -------------------------------------------------------------------------------

    def delivery(self, issue: LinearIssue, action: str = "update", *, secret: str | None = None,
                 timestamp_ms: int | None = None) -> tuple[dict[str, str], bytes]:
        """The headers and raw body of the delivery Linear sends for `issue` (signed with `secret`)."""
        payload = {"action": action, "type": "Issue", "createdAt": _now(), "url": self._url(issue),
                   "data": self._webhook_issue(issue), "organizationId": "org-fake",
                   "webhookTimestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
                   "webhookId": "wh-fake"}
        body = json.dumps(payload).encode()
        headers = {"Linear-Delivery": str(uuid.uuid4()), "Linear-Event": "Issue",
                   "Linear-Signature": hmac_hex(secret or self.webhook_secret, body)}
        return headers, body

    def notify(self, issue: LinearIssue, action: str) -> None:
        if self.webhook_url:
            post_webhook(self.webhook_url, *self.delivery(issue, action))

    # --- serving --------------------------------------------------------------------------------

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == self.api_key

    def failure_body(self, status: int) -> Any:
        code = "RATELIMITED" if status == 429 else "AUTHENTICATION_ERROR" if status == 401 else "INTERNAL"
        return {"errors": [{"message": f"fake linear: HTTP {status}", "extensions": {"code": code}}]}

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if method != "POST" or path != "/graphql" or not isinstance(body, dict):
            raise HttpError(404, {"errors": [{"message": "not found"}]})
        document = str(body.get("query") or "")
        try:
            parsed = parse(document)
        except GraphQLError as err:
            return 400, {"errors": [{"message": err.message, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]}
        if self.published_schema is not None:
            errors = validate(self.published_schema, parsed)
            if errors:
                self.refused.append((document, [e.message for e in errors]))
                return 400, {"errors": [{"message": e.message, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}
                                        for e in errors]}
        result = graphql_sync(self.schema, document, root_value=_Root(self),
                              variable_values=body.get("variables"), operation_name=body.get("operationName"))
        if result.errors:
            return 400, {"errors": [{"message": e.message, "extensions": {"code": "INVALID_INPUT"}}
                                    for e in result.errors]}
        return 200, {"data": result.data}

    # --- shapes ---------------------------------------------------------------------------------

    def _url(self, issue: LinearIssue) -> str:
        return f"{self.url}/acme/issue/{issue.identifier}"

    def _issue_json(self, issue: LinearIssue) -> dict[str, Any]:
        return {"id": issue.id, "identifier": issue.identifier, "title": issue.title,
                "description": issue.description or None, "url": self._url(issue), "updatedAt": issue.updated_at,
                "state": issue.state, "labels": {"nodes": [{"id": f"label-{n}", "name": n} for n in issue.labels]},
                "assignee": issue.assignee, "team": issue.team}

    def _webhook_issue(self, issue: LinearIssue) -> dict[str, Any]:
        """The issue as a webhook carries it (Linear's IssueWebhookPayload: flat ids beside child objects)."""
        number = int(issue.identifier.rsplit("-", 1)[1])
        assignee = issue.assignee and {"id": issue.assignee["id"], "email": issue.assignee["email"],
                                       "name": issue.assignee["displayName"],
                                       "url": f"{self.url}/acme/profiles/{issue.assignee['id']}"}
        return {"id": issue.id, "identifier": issue.identifier, "number": number, "title": issue.title,
                "description": issue.description or None, "url": self._url(issue), "createdAt": issue.updated_at,
                "updatedAt": issue.updated_at, "priority": 0, "priorityLabel": "No priority",
                "prioritySortOrder": 0.0, "sortOrder": float(number), "previousIdentifiers": [],
                "reactionData": {}, "releases": [], "subscriberIds": [], "teamId": issue.team["id"],
                "team": {"id": issue.team["id"], "key": issue.team["key"], "name": issue.team["name"]},
                "stateId": issue.state["id"], "state": {"id": issue.state["id"], "name": issue.state["name"],
                                                        "type": issue.state["type"], "color": "#e2e2e2"},
                "labelIds": [f"label-{n}" for n in issue.labels],
                "labels": [{"id": f"label-{n}", "name": n, "color": "#5e6ad2"} for n in issue.labels],
                "assigneeId": issue.assignee["id"] if issue.assignee else None, "assignee": assignee}

    def _matches(self, issue: LinearIssue, flt: dict[str, Any]) -> bool:
        def cmp(value: str | None, c: dict[str, Any] | None) -> bool:
            if not c:
                return True
            if c.get("eq") is not None and value != c["eq"]:
                return False
            if c.get("eqIgnoreCase") is not None and (value or "").lower() != c["eqIgnoreCase"].lower():
                return False
            return c.get("in") is None or value in c["in"]

        if (team := flt.get("team")) and not (cmp(issue.team["id"], team.get("id"))
                                              and cmp(issue.team["key"], team.get("key"))):
            return False
        some = (flt.get("labels") or {}).get("some")
        if some and not any(cmp(name, some.get("name")) for name in issue.labels):
            return False
        if (state := flt.get("state")) and not cmp(issue.state["type"], state.get("type")):
            return False
        if (who := flt.get("assignee")) is not None:
            if issue.assignee is None:
                return False
            if not (cmp(issue.assignee["email"], who.get("email"))
                    and cmp(issue.assignee["displayName"], who.get("displayName"))):
                return False
        return True


class _Root:
    """Query and mutation resolvers (graphql-core calls a root attribute with `info` and the arguments)."""

    def __init__(self, fake: FakeLinear) -> None:
        self.fake = fake

    def _issue(self, issue_id: str) -> LinearIssue:
        issue = self.fake.issues.get(issue_id) or next(
            (i for i in self.fake.issues.values() if i.identifier == issue_id), None)
        if issue is None:
            raise GraphQLError("Entity not found: Issue")
        return issue

    def issue(self, info: Any, id: str) -> dict[str, Any]:
        return self.fake._issue_json(self._issue(id))

    def issues(self, info: Any, filter: dict[str, Any] | None = None, first: int | None = None,
               orderBy: str | None = None) -> dict[str, Any]:
        found = [i for i in self.fake.issues.values() if self.fake._matches(i, filter or {})]
        found.sort(key=lambda i: i.updated_at, reverse=True)
        return {"nodes": [self.fake._issue_json(i) for i in found[:first or 50]]}

    def workflowStates(self, info: Any, filter: dict[str, Any] | None = None,
                       first: int | None = None) -> dict[str, Any]:
        flt = filter or {}
        team_id = ((flt.get("team") or {}).get("id") or {}).get("eq")
        wanted = ((flt.get("type") or {}).get("eq"))
        states = [s for tid, states in self.fake.states.items() if team_id in (None, tid) for s in states
                  if wanted in (None, s["type"])]
        return {"nodes": states[:first or 50]}

    def commentCreate(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        issue = self._issue(str(input.get("issueId") or ""))
        with self.fake.lock:
            issue.comments.append(str(input.get("body") or ""))
            issue.updated_at = _now()
        return {"success": True, "comment": {"id": str(uuid.uuid4()), "body": issue.comments[-1]}}

    def issueUpdate(self, info: Any, id: str, input: dict[str, Any]) -> dict[str, Any]:
        issue = self._issue(id)
        if input.get("stateId"):
            state = next((s for s in self.fake.states[issue.team["id"]] if s["id"] == input["stateId"]), None)
            if state is None:
                raise GraphQLError("Entity not found: WorkflowState")
            with self.fake.lock:
                issue.state = state
                issue.updated_at = _now()
        return {"success": True, "issue": self.fake._issue_json(issue)}
