"""A stateful Jira Cloud double: a test stand-in for Atlassian's hosted REST API v3, which tests cannot reach.

It serves on 127.0.0.1, with basic auth (e-mail and API token), the calls a ticket source makes: the
enhanced JQL search (`POST /rest/api/3/search/jql`, with the JQL subset of project, labels,
statusCategory and assignee clauses joined by AND, ordered by `updated`), get issue, add comment (the body
must be an Atlassian Document Format document), and the workflow: `GET .../transitions` lists the
transitions out of the issue's status with their target status and its category, `POST .../transitions`
moves it. The workflow is To Do (category `new`) → In Progress (`indeterminate`) → Done (`done`), and the
transition into Done is deliberately not the first listed.

Every request and response is recorded; tests/integration/test_jira_fake_schema.py checks them against the
runtime (zod) schemas the maintained `jira.js` client publishes for Atlassian's OpenAPI description.
Webhook deliveries are made as Jira Cloud makes them for a webhook registered with a secret:
`X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>`, `X-Atlassian-Webhook-Identifier`, and a body with
`timestamp` (milliseconds), `webhookEvent` and the issue.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.support.saas_http import HttpError, SaasFake, hmac_hex, post_webhook

_CATEGORIES = {"new": {"id": 2, "key": "new", "name": "To Do", "colorName": "blue-gray"},
               "indeterminate": {"id": 4, "key": "indeterminate", "name": "In Progress", "colorName": "yellow"},
               "done": {"id": 3, "key": "done", "name": "Done", "colorName": "green"}}
_STATUSES = {"10000": ("To Do", "new"), "10001": ("In Progress", "indeterminate"), "10002": ("Done", "done")}
# (transition id, name, target status id): the way out to Done is listed last
_TRANSITIONS = (("11", "To Do", "10000"), ("21", "Start progress", "10001"), ("31", "Done", "10002"))
_CLAUSE = re.compile(r'^(project|labels|assignee|statusCategory)\s*(=|!=)\s*("(?:[^"\\]|\\.)*"|\w+)$')


def _jira_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{datetime.now(UTC).microsecond // 1000:03d}+0000"


@dataclass
class JiraIssue:
    id: str
    key: str
    project: str
    summary: str
    description: dict[str, Any] | None
    status: str = "10000"
    labels: list[str] = field(default_factory=list)
    assignee: dict[str, Any] | None = None
    updated: str = field(default_factory=_jira_time)
    comments: list[dict[str, Any]] = field(default_factory=list)

    def comment_texts(self) -> list[str]:
        from optio.tickets.jira import adf_text
        return [adf_text(c["body"]).strip("\n") for c in self.comments]


class FakeJira(SaasFake):
    name = "jira"

    def __init__(self, email: str = "bot@example.com", api_token: str = "jira_token_fake") -> None:
        self.email, self.api_token = email, api_token
        self.issues: dict[str, JiraIssue] = {}
        self.projects: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.webhook_secret = "jira_wh_" + uuid.uuid4().hex
        self.webhook_url: str | None = None
        self._next_id = 10000
        super().__init__()

    # --- arranging ------------------------------------------------------------------------------

    def create_project(self, key: str, name: str | None = None) -> dict[str, Any]:
        project = {"id": str(10000 + len(self.projects)), "key": key, "name": name or key,
                   "self": f"{self.url}/rest/api/3/project/{key}", "projectTypeKey": "software", "simplified": False}
        self.projects[key] = project
        return project

    def create_user(self, email: str, name: str) -> dict[str, Any]:
        account = uuid.uuid4().hex[:24]
        user = {"accountId": account, "accountType": "atlassian", "emailAddress": email, "displayName": name,
                "active": True, "timeZone": "UTC", "self": f"{self.url}/rest/api/3/user?accountId={account}"}
        self.users[account] = user
        return user

    def create_issue(self, project: str, summary: str, description: str = "", *, labels: Sequence[str] = (),
                     assignee: dict[str, Any] | None = None) -> JiraIssue:
        from optio.tickets.jira import text_adf
        with self.lock:
            self._next_id += 1
            number = sum(1 for i in self.issues.values() if i.project == project) + 1
            issue = JiraIssue(str(self._next_id), f"{project}-{number}", project, summary,
                              text_adf(description) if description else None, labels=list(labels),
                              assignee=assignee)
            self.issues[issue.id] = issue
        self.notify(issue, "jira:issue_created")
        return issue

    def set_labels(self, issue: JiraIssue, labels: list[str]) -> None:
        with self.lock:
            issue.labels = list(labels)
            issue.updated = _jira_time()
        self.notify(issue, "jira:issue_updated")

    def status_name(self, issue: JiraIssue) -> str:
        return _STATUSES[issue.status][0]

    # --- webhooks -------------------------------------------------------------------------------

    def delivery(self, issue: JiraIssue, event: str = "jira:issue_updated", *, secret: str | None = None,
                 timestamp_ms: int | None = None) -> tuple[dict[str, str], bytes]:
        payload = {"timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
                   "webhookEvent": event, "issue_event_type_name": "issue_generic", "issue": self._issue_json(issue)}
        body = json.dumps(payload).encode()
        headers = {"X-Atlassian-Webhook-Identifier": str(uuid.uuid4()),
                   "X-Hub-Signature": "sha256=" + hmac_hex(secret or self.webhook_secret, body)}
        return headers, body

    def notify(self, issue: JiraIssue, event: str) -> None:
        if self.webhook_url:
            post_webhook(self.webhook_url, *self.delivery(issue, event))

    # --- serving --------------------------------------------------------------------------------

    def authorized(self, headers: dict[str, str]) -> bool:
        expected = base64.b64encode(f"{self.email}:{self.api_token}".encode()).decode()
        return headers.get("authorization") == f"Basic {expected}"

    def failure_body(self, status: int) -> Any:
        return {"errorMessages": [f"fake jira: HTTP {status}"], "errors": {}}

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if method == "POST" and path == "/rest/api/3/search/jql":
            return 200, self._search(body or {})
        m = re.fullmatch(r"/rest/api/3/issue/([\w-]+)(/comment|/transitions)?", path)
        if not m:
            raise HttpError(404, {"errorMessages": ["not found"], "errors": {}})
        issue = self._find(m.group(1))
        if m.group(2) is None and method == "GET":
            return 200, self._issue_json(issue)
        if m.group(2) == "/comment" and method == "POST":
            doc = (body or {}).get("body")
            if not (isinstance(doc, dict) and doc.get("type") == "doc" and doc.get("version") == 1
                    and isinstance(doc.get("content"), list)):
                raise HttpError(400, {"errorMessages": [], "errors": {"comment": "Comment body is not valid ADF."}})
            comment = {"id": str(len(issue.comments) + 1), "self": f"{self.url}{path}/{len(issue.comments) + 1}",
                       "body": doc, "created": _jira_time(), "updated": _jira_time(), "jsdPublic": True}
            with self.lock:
                issue.comments.append(comment)
                issue.updated = _jira_time()
            return 201, comment
        if m.group(2) == "/transitions" and method == "GET":
            return 200, {"transitions": [self._transition(t) for t in _TRANSITIONS if t[2] != issue.status]}
        if m.group(2) == "/transitions" and method == "POST":
            wanted = str(((body or {}).get("transition") or {}).get("id") or "")
            target = next((t for t in _TRANSITIONS if t[0] == wanted and t[2] != issue.status), None)
            if target is None:
                raise HttpError(400, {"errorMessages": [f"Transition id '{wanted}' is not valid for this issue."],
                                      "errors": {}})
            with self.lock:
                issue.status = target[2]
                issue.updated = _jira_time()
            return 204, None
        raise HttpError(405, {"errorMessages": ["method not allowed"], "errors": {}})

    def _find(self, id_or_key: str) -> JiraIssue:
        issue = self.issues.get(id_or_key) or next((i for i in self.issues.values() if i.key == id_or_key), None)
        if issue is None:
            raise HttpError(404, {"errorMessages": ["Issue does not exist or you do not have permission to see it."],
                                  "errors": {}})
        return issue

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        jql = str(body.get("jql") or "")
        where, _, order = jql.partition(" ORDER BY ")
        if order and order.strip() not in ("updated DESC", "updated desc"):
            raise HttpError(400, {"errorMessages": [f"unsupported order {order!r}"], "errors": {}})
        tests = []
        for clause in filter(None, (c.strip() for c in where.split(" AND "))):
            m = _CLAUSE.match(clause)
            if not m:
                raise HttpError(400, {"errorMessages": [f"Error in the JQL Query: {clause!r}"], "errors": {}})
            name, op, raw = m.groups()
            value = json.loads(raw) if raw.startswith('"') else raw
            tests.append((name, op, value))
        found = [i for i in self.issues.values() if all(self._holds(i, *t) for t in tests)]
        found.sort(key=lambda i: i.updated, reverse=True)
        start = int(body.get("nextPageToken") or 0)
        size = int(body.get("maxResults") or 50)
        page = found[start:start + size]
        result: dict[str, Any] = {"issues": [self._issue_json(i, body.get("fields")) for i in page],
                                  "isLast": start + size >= len(found)}
        if not result["isLast"]:
            result["nextPageToken"] = str(start + size)
        return result

    def _holds(self, issue: JiraIssue, name: str, op: str, value: str) -> bool:
        if name == "project":
            got = issue.project.lower() == value.lower()
        elif name == "labels":
            got = value.lower() in {label.lower() for label in issue.labels}  # JQL matches labels in any case
        elif name == "assignee":
            got = issue.assignee is not None and value.lower() in (issue.assignee["accountId"].lower(),
                                                                   issue.assignee["emailAddress"].lower())
        else:
            got = _CATEGORIES[_STATUSES[issue.status][1]]["name"].lower() == value.lower()
        return got if op == "=" else not got

    # --- shapes ---------------------------------------------------------------------------------

    def _status(self, status_id: str) -> dict[str, Any]:
        name, category = _STATUSES[status_id]
        cat = dict(_CATEGORIES[category], self=f"{self.url}/rest/api/3/statuscategory/{_CATEGORIES[category]['id']}")
        return {"id": status_id, "name": name, "description": "", "iconUrl": f"{self.url}/images/status.png",
                "self": f"{self.url}/rest/api/3/status/{status_id}", "statusCategory": cat}

    def _transition(self, t: tuple[str, str, str]) -> dict[str, Any]:
        return {"id": t[0], "name": t[1], "to": self._status(t[2]), "hasScreen": False, "isGlobal": True,
                "isInitial": False, "isAvailable": True, "isConditional": False, "isLooped": False}

    def _issue_json(self, issue: JiraIssue, fields: list[str] | None = None) -> dict[str, Any]:
        project = self.projects.get(issue.project) or self.create_project(issue.project)
        all_fields = {"summary": issue.summary, "description": issue.description, "status": self._status(issue.status),
                      "labels": list(issue.labels), "assignee": issue.assignee, "updated": issue.updated,
                      "project": project}
        wanted = set(fields or all_fields)
        return {"id": issue.id, "key": issue.key, "self": f"{self.url}/rest/api/3/issue/{issue.id}",
                "expand": "", "fields": {k: v for k, v in all_fields.items() if k in wanted}}
