"""GitHub Issues as a ticket provider, through githubkit (the same client and error rules as the GitHub forge).

Options: `{"repo": "owner/name"}`; `api_url` is `https://api.github.com` or an Enterprise `/api/v3` root; the
credential is a token. Webhooks are GitHub's `issues` events, verified with `X-Hub-Signature-256` over the raw
body; pull requests (which GitHub lists as issues too) are never tickets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from optio.forge.base import ForgeBusy
from optio.forge.github.client import GitHubClient, GitHubError
from optio.security import signatures
from optio.tickets import net
from optio.tickets.base import (
    BadTicketSignature,
    Ticket,
    TicketEvent,
    TicketFilter,
    TicketProviderError,
    TicketSourceConfig,
    parse_time,
)

DEFAULT_API = "https://api.github.com"
EVENTS = ("issues",)


class GitHubTicketProvider:
    kind = "github"

    def __init__(self, config: TicketSourceConfig, credential: str | None) -> None:
        repo = str(config.options.get("repo") or "")
        owner, _, name = repo.partition("/")
        if not owner or not name or "/" in name:
            raise TicketProviderError("a GitHub source needs options.repo as owner/name")
        token = net.credential(credential, "GitHub", "a token")
        self.config, self.owner, self.name = config, owner, name
        self.client = GitHubClient((config.api_url or DEFAULT_API).rstrip("/"), token=lambda: token,
                                   allowlist=net.allowlist(), timeout_s=net.TIMEOUT_S)

    def _call(self, what: str, request: Any) -> Any:
        try:
            return self.client.call(what, request).json()
        except ForgeBusy as exc:
            raise TicketProviderError(str(exc), retryable=True) from None
        except GitHubError as exc:
            retry = exc.status_code is None or exc.status_code >= 500
            raise TicketProviderError(exc.message, retryable=retry) from None
        except net.UnsafeURL as exc:
            raise TicketProviderError(str(exc)) from None

    def _ticket(self, issue: Mapping[str, Any]) -> Ticket:
        labels = tuple(str(label["name"] if isinstance(label, Mapping) else label)
                       for label in issue.get("labels") or [])
        assignee = issue.get("assignee")
        milestone = issue.get("milestone")
        return Ticket(external_id=str(issue["number"]), key=f"#{issue['number']}", title=str(issue.get("title") or ""),
                      body=str(issue.get("body") or ""), url=str(issue.get("html_url") or ""),
                      state="closed" if issue.get("state") == "closed" else "open", labels=labels,
                      assignee=str(assignee["login"]) if isinstance(assignee, Mapping) else None,
                      project=str(milestone["title"]) if isinstance(milestone, Mapping) else None,
                      updated_at=parse_time(issue.get("updated_at")))

    def list_tickets(self, flt: TicketFilter, *, limit: int = 100) -> list[Ticket]:
        query: dict[str, Any] = {"state": flt.state if flt.state in ("open", "closed") else "all",
                                 "sort": "created", "direction": "desc", "per_page": min(100, max(1, limit))}
        if flt.label:
            query["labels"] = flt.label
        if flt.assignee:
            query["assignee"] = flt.assignee
        issues = self._call("list issues", lambda gh: gh.rest.issues.list_for_repo(self.owner, self.name, **query))
        found = [self._ticket(i) for i in issues if isinstance(i, Mapping) and "pull_request" not in i]
        return [t for t in found if t.matches(flt)][:limit]

    def _number(self, external_id: str) -> int:
        if not external_id.isdigit():
            raise TicketProviderError(f"{external_id!r} is not a GitHub issue number")
        return int(external_id)

    def get(self, external_id: str) -> Ticket:
        number = self._number(external_id)
        return self._ticket(self._call("read an issue", lambda gh: gh.rest.issues.get(self.owner, self.name, number)))

    def comment(self, external_id: str, text: str) -> None:
        number = self._number(external_id)
        self._call("comment on an issue",
                   lambda gh: gh.rest.issues.create_comment(self.owner, self.name, number, body=text))

    def close(self, external_id: str, comment: str | None = None) -> None:
        if comment:
            self.comment(external_id, comment)
        number = self._number(external_id)
        self._call("close an issue", lambda gh: gh.rest.issues.update(self.owner, self.name, number, state="closed",
                                                                      state_reason="completed"))

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, secret: str | None) -> list[TicketEvent]:
        lower = {k.lower(): v for k, v in headers.items()}
        if not secret or not signatures.verify(secret, body, lower.get("x-hub-signature-256")):
            raise BadTicketSignature("X-Hub-Signature-256 does not verify")
        if lower.get("x-github-event") not in EVENTS:
            return []
        try:
            data = json.loads(body)
        except ValueError:
            return []
        issue = data.get("issue") if isinstance(data, dict) else None
        repo = (data.get("repository") or {}).get("full_name") if isinstance(data, dict) else None
        if not isinstance(issue, dict) or "number" not in issue or "pull_request" in issue:
            return []
        if repo and str(repo).lower() != f"{self.owner}/{self.name}".lower():
            return []
        return [TicketEvent(external_id=str(issue["number"]), action=str(data.get("action") or ""),
                            delivery_id=lower.get("x-github-delivery"))]
