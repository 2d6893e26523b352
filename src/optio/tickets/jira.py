"""Jira Cloud issues as a ticket source, through the REST API v3 with httpx.

Authentication is Atlassian's basic auth: the account's e-mail (`options["email"]`) and an API token (the
source's secret). Searching uses the enhanced JQL search (`POST /rest/api/3/search/jql`), the endpoint
Atlassian documents since the old `/rest/api/3/search` was retired; the filter becomes JQL (project, label,
`statusCategory`, assignee), so a poll fetches only candidates. Issue text and comments are Atlassian
Document Format (ADF): the body is read back as plain text and comments are written as one paragraph per
line. "Closed" means the status is in the `done` category, and closing is a transition: Jira has no
"close" call, and which transitions exist depends on the project's workflow, so the provider asks for the
issue's transitions and takes the first whose target status is in the `done` category.

Jira Cloud signs webhook deliveries registered with a secret: `X-Hub-Signature: sha256=<hex HMAC-SHA256 of
the raw body>`. The body's `timestamp` (milliseconds) must be within five minutes; a retry Jira makes later
is then refused and polling picks the change up instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from optio.security.ssrf import Allowlist, UnsafeURLError
from optio.tickets import net, webhook_auth
from optio.tickets.base import (
    Ticket,
    TicketEvent,
    TicketFilter,
    TicketProviderError,
    TicketSourceConfig,
)

__all__ = ["WEBHOOK_TOLERANCE_S", "JiraProvider", "adf_text", "text_adf"]

WEBHOOK_TOLERANCE_S = 300.0
_FIELDS = ["summary", "description", "status", "labels", "assignee", "project", "updated"]


def text_adf(text: str) -> dict[str, Any]:
    """Plain text as an ADF document: one paragraph per line (an empty line an empty paragraph)."""
    return {"type": "doc", "version": 1,
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": line}] if line else []}
                        for line in (text.splitlines() or [""])]}


def adf_text(node: Any) -> str:
    """An ADF document's text: block nodes end a line, hard breaks break one, marks are dropped."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node  # a description set through API v2 is plain text
    if node.get("type") == "text":
        return str(node.get("text") or "")
    if node.get("type") == "hardBreak":
        return "\n"
    inner = "".join(adf_text(child) for child in node.get("content") or ())
    if node.get("type") in ("doc", "listItem", "bulletList", "orderedList"):
        return inner.rstrip("\n") + ("\n" if node.get("type") != "doc" else "")
    return inner + "\n"


def _jql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class JiraProvider:
    """One Jira Cloud site (`api_url`, e.g. https://acme.atlassian.net), narrowed to `options["project"]`."""

    kind = "jira"

    def __init__(self, config: TicketSourceConfig, api_token: str | None, *,
                 allowlist: Sequence[str] | Allowlist | None = None, clock: Callable[[], float] = time.time,
                 timeout_s: float = net.TIMEOUT_S) -> None:
        """`allowlist` defaults to the server's outbound allowlist (the registry builds providers that way)."""
        api_token = net.credential(api_token, "Jira", "an API token")
        self.config = config
        self.base = config.api_url.rstrip("/")
        if not self.base:
            raise TicketProviderError("a Jira source needs its site as api_url, e.g. https://acme.atlassian.net")
        self.project = str(config.options.get("project") or "") or None
        email = str(config.options.get("email") or "")
        if not email:
            raise TicketProviderError("a Jira source needs options.email (the account the API token belongs to)")
        guard = net.guarded(self.base, allowlist)
        self._clock = clock
        self._http = httpx.Client(base_url=self.base, auth=(email, api_token), timeout=timeout_s, trust_env=False,
                                  headers={"Accept": "application/json"}, event_hooks={"request": [guard]})

    # --- reading --------------------------------------------------------------------------------

    def jql(self, flt: TicketFilter) -> str:
        clauses = []
        project = flt.project or self.project
        if project:
            clauses.append(f"project = {_jql_string(project)}")
        if flt.label:
            clauses.append(f"labels = {_jql_string(flt.label)}")
        if flt.state == "open":
            clauses.append("statusCategory != Done")
        elif flt.state == "closed":
            clauses.append("statusCategory = Done")
        if flt.assignee:
            clauses.append(f"assignee = {_jql_string(flt.assignee)}")
        return " AND ".join(clauses) + " ORDER BY updated DESC"

    def list_tickets(self, flt: TicketFilter, *, limit: int = 100) -> list[Ticket]:
        tickets: list[Ticket] = []
        token: str | None = None
        while len(tickets) < limit:
            body: dict[str, Any] = {"jql": self.jql(flt), "fields": _FIELDS, "maxResults": min(100, limit)}
            if token:
                body["nextPageToken"] = token
            page = self._call("POST", "/rest/api/3/search/jql", json=body)
            tickets += [self._ticket(issue) for issue in page.get("issues") or ()]
            token = page.get("nextPageToken")
            if page.get("isLast", True) or not token:
                break
        return [t for t in tickets if t.matches(flt)][:limit]

    def get(self, external_id: str) -> Ticket:
        return self._ticket(self._call("GET", f"/rest/api/3/issue/{external_id}",
                                       params={"fields": ",".join(_FIELDS)}))

    # --- writing --------------------------------------------------------------------------------

    def comment(self, external_id: str, text: str) -> None:
        self._call("POST", f"/rest/api/3/issue/{external_id}/comment", json={"body": text_adf(text)})

    def close(self, external_id: str, comment: str | None = None) -> None:
        if comment:
            self.comment(external_id, comment)
        if self.get(external_id).state == "closed":
            return
        found = self._call("GET", f"/rest/api/3/issue/{external_id}/transitions").get("transitions") or []
        done = [t for t in found if ((t.get("to") or {}).get("statusCategory") or {}).get("key") == "done"]
        if not done:
            raise TicketProviderError(f"Jira issue {external_id} has no transition into a done-category status")
        self._call("POST", f"/rest/api/3/issue/{external_id}/transitions", json={"transition": {"id": done[0]["id"]}})

    # --- webhooks -------------------------------------------------------------------------------

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, secret: str | None) -> list[TicketEvent]:
        lowered = {k.lower(): v for k, v in headers.items()}
        webhook_auth.verify_signature(
            body, secret, lowered.get("x-hub-signature", ""), header="X-Hub-Signature", prefix="sha256=",
            missing="Jira delivery without an X-Hub-Signature, or no webhook secret configured")
        payload = webhook_auth.fresh_payload(
            body, tracker="Jira", field="timestamp", sent_at=lambda p: float(p["timestamp"]) / 1000.0,
            now=self._clock(), tolerance_s=WEBHOOK_TOLERANCE_S, tolerance="five minutes")
        issue = payload.get("issue") or {}
        if not issue.get("id"):
            return []
        event = str(payload.get("webhookEvent") or "")
        action = {"jira:issue_created": "created", "jira:issue_updated": "updated",
                  "jira:issue_deleted": "deleted"}.get(event, "comment" if event.startswith("comment_") else event)
        return [TicketEvent(str(issue["id"]), action, lowered.get("x-atlassian-webhook-identifier"))]

    # --- plumbing -------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except UnsafeURLError as exc:
            raise TicketProviderError(f"Jira's URL is refused: {exc}") from exc
        except httpx.HTTPError as exc:
            raise TicketProviderError(f"Jira is unreachable: {type(exc).__name__}", retryable=True) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TicketProviderError(f"Jira answered HTTP {response.status_code}", retryable=True)
        if response.status_code >= 400:
            raise TicketProviderError(f"Jira refused {method} {path}: HTTP {response.status_code} "
                                      f"{_errors(response)}")
        if response.status_code == 204 or not response.content:
            return {}
        result: dict[str, Any] = response.json()
        return result

    def _ticket(self, issue: Mapping[str, Any]) -> Ticket:
        fields = issue.get("fields") or {}
        category = (((fields.get("status") or {}).get("statusCategory")) or {}).get("key")
        assignee = fields.get("assignee") or {}
        updated = fields.get("updated")
        return Ticket(
            external_id=str(issue["id"]),
            key=str(issue["key"]),
            title=str(fields.get("summary") or ""),
            body=adf_text(fields.get("description")).strip("\n"),
            url=f"{self.base}/browse/{issue['key']}",
            state="closed" if category == "done" else "open",
            labels=tuple(str(label) for label in fields.get("labels") or ()),
            assignee=assignee.get("emailAddress") or assignee.get("accountId"),
            project=(fields.get("project") or {}).get("key"),
            updated_at=datetime.fromisoformat(updated) if updated else None,
        )


def _errors(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    messages = list(data.get("errorMessages") or []) + [f"{k}: {v}" for k, v in (data.get("errors") or {}).items()]
    return "; ".join(str(m) for m in messages)
