"""Linear issues as a ticket source, through Linear's GraphQL API with the maintained `gql` client.

Linear has one endpoint (`{api_url}/graphql`) and a personal or workspace API key sent bare in
`Authorization`. Filtering is Linear's own `IssueFilter` (team key, label name, workflow-state type,
assignee e-mail or display name) so a poll fetches only candidates; :meth:`Ticket.matches` runs after it
so every provider filters alike. "Closed" means the issue's workflow state has type `completed` or
`canceled`; closing moves it to the team's `completed`-type state with the lowest position (Linear's
"Done" unless the team renamed it).

Linear signs each webhook delivery: `Linear-Signature` is the hex HMAC-SHA256 of the raw body with the
webhook's signing secret, and the body carries `webhookTimestamp` (milliseconds); Linear asks receivers
to refuse a delivery more than a minute old so a captured one cannot be replayed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx
from gql import Client, GraphQLRequest
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.httpx import HTTPXTransport

from optio.security.ssrf import Allowlist, UnsafeURLError
from optio.tickets import net, webhook_auth
from optio.tickets.base import (
    Ticket,
    TicketEvent,
    TicketFilter,
    TicketProviderError,
    TicketSourceConfig,
)

__all__ = ["WEBHOOK_TOLERANCE_S", "LinearProvider"]

DEFAULT_API = "https://api.linear.app"
WEBHOOK_TOLERANCE_S = 60.0
_CLOSED_TYPES = ("completed", "canceled")
_OPEN_TYPES = ("triage", "backlog", "unstarted", "started")

_ISSUE_FIELDS = """
    id identifier title description url updatedAt
    state { id name type }
    labels { nodes { name } }
    assignee { email displayName }
    team { id key }
"""
_LIST = f"""query OptioIssues($filter: IssueFilter, $first: Int) {{
  issues(filter: $filter, first: $first, orderBy: updatedAt) {{ nodes {{ {_ISSUE_FIELDS} }} }}
}}"""
_GET = f"""query OptioIssue($id: String!) {{ issue(id: $id) {{ {_ISSUE_FIELDS} }} }}"""
_COMMENT = """mutation OptioComment($input: CommentCreateInput!) {
  commentCreate(input: $input) { success }
}"""
_DONE_STATES = """query OptioDoneStates($filter: WorkflowStateFilter) {
  workflowStates(filter: $filter, first: 50) { nodes { id name type position } }
}"""
_MOVE = """mutation OptioMove($id: String!, $input: IssueUpdateInput!) {
  issueUpdate(id: $id, input: $input) { success }
}"""


class LinearProvider:
    """One Linear workspace (optionally narrowed to a team: `options["team"]` is its key, e.g. `ENG`)."""

    kind = "linear"

    def __init__(self, config: TicketSourceConfig, api_key: str | None, *,
                 allowlist: Sequence[str] | Allowlist | None = None, clock: Callable[[], float] = time.time,
                 timeout_s: float = net.TIMEOUT_S) -> None:
        """`allowlist` defaults to the server's outbound allowlist (the registry builds providers that way)."""
        api_key = net.credential(api_key, "Linear", "an API key")
        self.config = config
        self.team = str(config.options.get("team") or "") or None
        self._clock = clock
        self.url = (config.api_url or DEFAULT_API).rstrip("/") + "/graphql"
        guard = net.guarded(self.url, allowlist)

        def busy(response: httpx.Response) -> None:
            if response.status_code == 429 or response.status_code >= 500:
                raise _Busy(response.status_code)

        self._transport = HTTPXTransport(self.url, headers={"Authorization": api_key}, timeout=timeout_s,
                                         event_hooks={"request": [guard], "response": [busy]}, trust_env=False)
        self._client = Client(transport=self._transport, fetch_schema_from_transport=False)

    # --- reading --------------------------------------------------------------------------------

    def list_tickets(self, flt: TicketFilter, *, limit: int = 100) -> list[Ticket]:
        where: dict[str, Any] = {}
        team = flt.project or self.team
        if team:
            where["team"] = {"key": {"eqIgnoreCase": team}}
        if flt.label:
            where["labels"] = {"some": {"name": {"eqIgnoreCase": flt.label}}}
        if flt.state == "open":
            where["state"] = {"type": {"in": list(_OPEN_TYPES)}}
        elif flt.state == "closed":
            where["state"] = {"type": {"in": list(_CLOSED_TYPES)}}
        if flt.assignee:
            field = "email" if "@" in flt.assignee else "displayName"
            where["assignee"] = {field: {"eqIgnoreCase": flt.assignee}}
        data = self._run(_LIST, {"filter": where, "first": max(1, min(limit, 250))})
        tickets = [self._ticket(node) for node in data["issues"]["nodes"]]
        matching = [t for t in tickets if t.matches(flt)]
        return sorted(matching, key=lambda t: t.updated_at or datetime.min, reverse=True)[:limit]

    def get(self, external_id: str) -> Ticket:
        data = self._run(_GET, {"id": external_id})
        if not data.get("issue"):
            raise TicketProviderError(f"Linear has no issue {external_id}")
        return self._ticket(data["issue"])

    # --- writing --------------------------------------------------------------------------------

    def comment(self, external_id: str, text: str) -> None:
        data = self._run(_COMMENT, {"input": {"issueId": external_id, "body": text}})
        if not data["commentCreate"]["success"]:
            raise TicketProviderError(f"Linear did not create the comment on {external_id}")

    def close(self, external_id: str, comment: str | None = None) -> None:
        if comment:
            self.comment(external_id, comment)
        issue = self._run(_GET, {"id": external_id}).get("issue")
        if not issue:
            raise TicketProviderError(f"Linear has no issue {external_id}")
        if issue["state"]["type"] == "completed":
            return
        states = self._run(_DONE_STATES, {"filter": {"team": {"id": {"eq": issue["team"]["id"]}},
                                                     "type": {"eq": "completed"}}})["workflowStates"]["nodes"]
        if not states:
            raise TicketProviderError(f"Linear team {issue['team']['key']} has no completed workflow state")
        done = min(states, key=lambda s: s.get("position") or 0.0)
        data = self._run(_MOVE, {"id": external_id, "input": {"stateId": done["id"]}})
        if not data["issueUpdate"]["success"]:
            raise TicketProviderError(f"Linear did not move {issue['identifier']} to {done['name']}")

    # --- webhooks -------------------------------------------------------------------------------

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, secret: str | None) -> list[TicketEvent]:
        lowered = {k.lower(): v for k, v in headers.items()}
        webhook_auth.verify_signature(
            body, secret, lowered.get("linear-signature", ""), header="Linear-Signature", prefix="",
            missing="Linear delivery without a signature, or no webhook secret configured")
        payload = webhook_auth.fresh_payload(
            body, tracker="Linear", field="webhookTimestamp",
            sent_at=lambda p: float(p["webhookTimestamp"]) / 1000.0,
            now=self._clock(), tolerance_s=WEBHOOK_TOLERANCE_S, tolerance="a minute")
        delivery = lowered.get("linear-delivery")
        data = payload.get("data") or {}
        if payload.get("type") == "Issue" and data.get("id"):
            action = "deleted" if payload.get("action") == "remove" else str(payload.get("action") or "update")
            return [TicketEvent(str(data["id"]), action, delivery)]
        if payload.get("type") == "Comment" and data.get("issueId"):
            return [TicketEvent(str(data["issueId"]), "comment", delivery)]
        return []

    # --- plumbing -------------------------------------------------------------------------------

    def _run(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        try:
            result = self._client.execute(GraphQLRequest(query, variable_values=variables))
        except TransportQueryError as exc:
            codes = {str((e.get("extensions") or {}).get("code") or "") for e in (exc.errors or [])
                     if isinstance(e, dict)}
            retryable = bool(codes & {"RATELIMITED", "INTERNAL_SERVER_ERROR"})
            raise TicketProviderError(f"Linear refused the request: {_messages(exc)}", retryable=retryable) from exc
        except TransportServerError as exc:
            code = exc.code or 0
            raise TicketProviderError(f"Linear answered HTTP {code}",
                                      retryable=code == 429 or code >= 500) from exc
        except (TransportConnectionFailed, httpx.TransportError) as exc:
            cause = exc.__cause__
            if isinstance(cause, _Busy):
                raise TicketProviderError(f"Linear answered HTTP {cause.status}", retryable=True) from exc
            if isinstance(cause, UnsafeURLError):
                raise TicketProviderError(f"Linear's URL is refused: {cause}") from exc
            raise TicketProviderError(f"Linear is unreachable: {type(exc).__name__}", retryable=True) from exc
        except TransportError as exc:
            raise TicketProviderError(f"Linear answered something that is not GraphQL: {exc}",
                                      retryable=True) from exc
        return result

    def _ticket(self, node: Mapping[str, Any]) -> Ticket:
        state_type = (node.get("state") or {}).get("type") or ""
        assignee = node.get("assignee") or {}
        updated = node.get("updatedAt")
        return Ticket(
            external_id=str(node["id"]),
            key=str(node["identifier"]),
            title=str(node["title"]),
            body=str(node.get("description") or ""),
            url=str(node["url"]),
            state="closed" if state_type in _CLOSED_TYPES else "open",
            labels=tuple(str(label["name"]) for label in (node.get("labels") or {}).get("nodes") or ()),
            assignee=assignee.get("email") or assignee.get("displayName"),
            project=(node.get("team") or {}).get("key"),
            updated_at=datetime.fromisoformat(updated.replace("Z", "+00:00")) if updated else None,
        )


class _Busy(Exception):
    """Linear answered 429 or 5xx: raised from the response hook, before gql reads the body as GraphQL
    (gql hands it back wrapped in TransportConnectionFailed)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _messages(exc: TransportQueryError) -> str:
    return "; ".join(str(e.get("message")) if isinstance(e, dict) else str(e) for e in (exc.errors or [])) \
        or str(exc)
