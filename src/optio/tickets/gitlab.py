"""GitLab Issues as a ticket provider, through python-gitlab.

Options: `{"project": "group/name"}`; `api_url` is the instance root (`https://gitlab.com`, a self-managed
URL); the credential is a token. Webhooks are GitLab's `Issue Hook`, proven by the shared `X-Gitlab-Token`.
GitLab's `opened` state reads as `open`; `project` in a filter is the issue's milestone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import gitlab
import requests
from gitlab.exceptions import GitlabError

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

DEFAULT_URL = "https://gitlab.com"


class GitLabTicketProvider:
    kind = "gitlab"

    def __init__(self, config: TicketSourceConfig, credential: str | None) -> None:
        self.path = str(config.options.get("project") or "").strip("/")
        if not self.path:
            raise TicketProviderError("a GitLab source needs options.project as group/name")
        credential = net.credential(credential, "GitLab", "a token")
        self.config = config
        self.url = (config.api_url or DEFAULT_URL).rstrip("/")
        if self.url.endswith("/api/v4"):
            self.url = self.url.removesuffix("/api/v4")
        session = requests.Session()
        session.trust_env = False
        session.max_redirects = 0  # a redirect would leave the checked host
        self.gl = gitlab.Gitlab(self.url, private_token=credential, session=session, timeout=net.TIMEOUT_S,
                                retry_transient_errors=False, per_page=100)
        self.project = self.gl.projects.get(self.path, lazy=True)

    def _do(self, what: str, call: Any) -> Any:
        """One call, after the SSRF check of the instance's address (redirects are not followed)."""
        try:
            net.check(self.url)
            return call()
        except net.UnsafeURL as exc:
            raise TicketProviderError(str(exc)) from None
        except GitlabError as exc:
            code = exc.response_code
            retry = code is None or code >= 500 or code == 429
            raise TicketProviderError(f"GitLab refused to {what}: {code} {exc.error_message}"[:500],
                                      retryable=retry) from None
        except requests.RequestException as exc:
            raise TicketProviderError(f"GitLab unreachable ({what}): {type(exc).__name__}", retryable=True) from None

    def _ticket(self, issue: Mapping[str, Any]) -> Ticket:
        assignee = issue.get("assignee")
        milestone = issue.get("milestone")
        return Ticket(external_id=str(issue["iid"]), key=f"#{issue['iid']}", title=str(issue.get("title") or ""),
                      body=str(issue.get("description") or ""), url=str(issue.get("web_url") or ""),
                      state="closed" if issue.get("state") == "closed" else "open",
                      labels=tuple(str(label) for label in issue.get("labels") or []),
                      assignee=str(assignee["username"]) if isinstance(assignee, Mapping) else None,
                      project=str(milestone["title"]) if isinstance(milestone, Mapping) else None,
                      updated_at=parse_time(issue.get("updated_at")))

    def list_tickets(self, flt: TicketFilter, *, limit: int = 100) -> list[Ticket]:
        query: dict[str, Any] = {"order_by": "created_at", "sort": "desc", "per_page": min(100, max(1, limit))}
        if flt.state in ("open", "closed"):
            query["state"] = "opened" if flt.state == "open" else "closed"
        if flt.label:
            query["labels"] = flt.label
        if flt.assignee:
            query["assignee_username"] = flt.assignee
        if flt.project:
            query["milestone"] = flt.project
        issues = self._do("list issues", lambda: self.project.issues.list(get_all=False, **query))
        found = [self._ticket(i.attributes) for i in issues]
        return [t for t in found if t.matches(flt)][:limit]

    def _iid(self, external_id: str) -> int:
        if not external_id.isdigit():
            raise TicketProviderError(f"{external_id!r} is not a GitLab issue iid")
        return int(external_id)

    def get(self, external_id: str) -> Ticket:
        iid = self._iid(external_id)
        return self._ticket(self._do("read an issue", lambda: self.project.issues.get(iid)).attributes)

    def comment(self, external_id: str, text: str) -> None:
        iid = self._iid(external_id)
        self._do("comment on an issue",
                 lambda: self.project.issues.get(iid, lazy=True).notes.create({"body": text}))

    def close(self, external_id: str, comment: str | None = None) -> None:
        if comment:
            self.comment(external_id, comment)
        iid = self._iid(external_id)
        self._do("close an issue", lambda: self.project.issues.update(iid, {"state_event": "close"}))

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, secret: str | None) -> list[TicketEvent]:
        lower = {k.lower(): v for k, v in headers.items()}
        if not secret or not signatures.verify_token(secret, lower.get("x-gitlab-token")):
            raise BadTicketSignature("X-Gitlab-Token does not match")
        if lower.get("x-gitlab-event") != "Issue Hook":
            return []
        try:
            data = json.loads(body)
        except ValueError:
            return []
        attrs = data.get("object_attributes") if isinstance(data, dict) else None
        project = (data.get("project") or {}).get("path_with_namespace") if isinstance(data, dict) else None
        if not isinstance(attrs, dict) or "iid" not in attrs:
            return []
        if project and str(project).lower() != self.path.lower():
            return []
        return [TicketEvent(external_id=str(attrs["iid"]), action=str(attrs.get("action") or ""),
                            delivery_id=lower.get("x-gitlab-event-uuid"))]
