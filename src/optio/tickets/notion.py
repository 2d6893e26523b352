"""A Notion database as a ticket tracker, through the official Python SDK (`notion-client`).

Each page of the database is a ticket. Since Notion's API version 2025-09-03 a database holds one or more
data sources and pages are queried per data source: the provider uses `options["data_source_id"]`, or the
database's (`options["database_id"]`) first data source. The source's options name the properties that carry
a tracker's fields (defaults in brackets): `title_property` [Name], `status_property` [Status, a status or
select property], `labels_property` [Labels, multi-select], `assignee_property` [Assignee, people]; and
`done_status` [Done], the status value that means closed (closing sets it). The filter becomes Notion's
property filter (a label is a multi-select option named as spelled there); people filters take a user id,
so an assignee given as an e-mail is matched after the query (a ticket's assignee is the person's e-mail, or
the user id when Notion shows none). A page's body is its blocks' plain text, one block a line.

Notion signs webhook deliveries with the subscription's verification token: `X-Notion-Signature:
sha256=<hex HMAC-SHA256 of the raw body>`. A delivery whose `timestamp` is more than five minutes away is
refused (polling picks the change up).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx
from notion_client import Client
from notion_client.errors import APIResponseError, HTTPResponseError, NotionClientErrorBase, RequestTimeoutError

from optio.security.ssrf import Allowlist, UnsafeURLError
from optio.tickets import net, webhook_auth
from optio.tickets.base import (
    Ticket,
    TicketEvent,
    TicketFilter,
    TicketProviderError,
    TicketSourceConfig,
)

__all__ = ["WEBHOOK_TOLERANCE_S", "NotionProvider"]

DEFAULT_API = "https://api.notion.com"
WEBHOOK_TOLERANCE_S = 300.0
_RICH_TEXT_LIMIT = 2000  # characters per rich-text object, Notion's limit


def _plain(rich: Any) -> str:
    return "".join(str(part.get("plain_text") or (part.get("text") or {}).get("content") or "")
                   for part in rich or ())


def _rich(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": text[i:i + _RICH_TEXT_LIMIT]}}
            for i in range(0, max(len(text), 1), _RICH_TEXT_LIMIT)]


class NotionProvider:
    kind = "notion"

    def __init__(self, config: TicketSourceConfig, token: str | None, *,
                 allowlist: Sequence[str] | Allowlist | None = None, clock: Callable[[], float] = time.time,
                 timeout_s: float = net.TIMEOUT_S) -> None:
        """`allowlist` defaults to the server's outbound allowlist (the registry builds providers that way)."""
        token = net.credential(token, "Notion", "an integration token")
        options = config.options
        self.config = config
        self.database_id = str(options.get("database_id") or "")
        self._data_source_id = str(options.get("data_source_id") or "") or None
        if not self.database_id and not self._data_source_id:
            raise TicketProviderError("a Notion source needs options.database_id (or data_source_id)")
        self.title_property = str(options.get("title_property") or "Name")
        self.status_property = str(options.get("status_property") or "Status")
        self.labels_property = str(options.get("labels_property") or "Labels")
        self.assignee_property = str(options.get("assignee_property") or "Assignee")
        self.done_status = str(options.get("done_status") or "Done")
        self._clock = clock
        base = (config.api_url or DEFAULT_API).rstrip("/")
        guard = net.guarded(base, allowlist)
        # the SDK's own retries are off: a 429/5xx is reported as retryable and the caller decides when
        self._notion = Client(client=httpx.Client(event_hooks={"request": [guard]}, trust_env=False),
                              auth=token, base_url=base, timeout_ms=int(timeout_s * 1000), retry=False)
        self._status_kind: str | None = None

    # --- reading --------------------------------------------------------------------------------

    def data_source_id(self) -> str:
        if self._data_source_id is None:
            database = self._call(self._notion.databases.retrieve, database_id=self.database_id)
            sources = database.get("data_sources") or []
            if not sources:
                raise TicketProviderError(f"Notion database {self.database_id} has no data source")
            self._data_source_id = str(sources[0]["id"])
        return self._data_source_id

    def _status_filter_kind(self) -> str:
        if self._status_kind is None:
            source = self._call(self._notion.data_sources.retrieve, data_source_id=self.data_source_id())
            prop = (source.get("properties") or {}).get(self.status_property) or {}
            self._status_kind = "select" if prop.get("type") == "select" else "status"
        return self._status_kind

    def list_tickets(self, flt: TicketFilter, *, limit: int = 100) -> list[Ticket]:
        clauses: list[dict[str, Any]] = []
        if flt.label:
            clauses.append({"property": self.labels_property, "multi_select": {"contains": flt.label}})
        kind = self._status_filter_kind() if flt.state in ("open", "closed") else "status"
        if flt.state == "open":
            clauses.append({"property": self.status_property, kind: {"does_not_equal": self.done_status}})
        elif flt.state == "closed":
            clauses.append({"property": self.status_property, kind: {"equals": self.done_status}})
        if flt.assignee and "@" not in flt.assignee:
            clauses.append({"property": self.assignee_property, "people": {"contains": flt.assignee}})
        body: dict[str, Any] = {"sorts": [{"timestamp": "last_edited_time", "direction": "descending"}],
                                "page_size": max(1, min(limit, 100))}
        if clauses:
            body["filter"] = {"and": clauses}
        pages: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(pages) < limit:
            if cursor:
                body["start_cursor"] = cursor
            found = self._call(self._notion.data_sources.query, data_source_id=self.data_source_id(), **body)
            pages += [p for p in found.get("results") or () if p.get("object") == "page"]
            cursor = found.get("next_cursor")
            if not found.get("has_more") or not cursor:
                break
        loose = replace(flt, assignee=None, project=None)
        chosen = [p for p in pages[:limit]
                  if self._ticket(p, body="").matches(loose) and self._assigned(p, flt.assignee)]
        return [self._ticket(page, body=self._body(str(page["id"]))) for page in chosen]

    def get(self, external_id: str) -> Ticket:
        page = self._call(self._notion.pages.retrieve, page_id=external_id)
        return self._ticket(page, body=self._body(external_id))

    def _body(self, page_id: str) -> str:
        lines: list[str] = []
        cursor: str | None = None
        while True:
            kwargs: dict[str, Any] = {"block_id": page_id, "page_size": 100}
            if cursor:
                kwargs["start_cursor"] = cursor
            found = self._call(self._notion.blocks.children.list, **kwargs)
            for block in found.get("results") or ():
                content = block.get(block.get("type") or "") or {}
                if isinstance(content, dict) and "rich_text" in content:
                    lines.append(_plain(content["rich_text"]))
            cursor = found.get("next_cursor")
            if not found.get("has_more") or not cursor:
                return "\n".join(lines)

    # --- writing --------------------------------------------------------------------------------

    def comment(self, external_id: str, text: str) -> None:
        self._call(self._notion.comments.create, parent={"page_id": external_id}, rich_text=_rich(text))

    def close(self, external_id: str, comment: str | None = None) -> None:
        if comment:
            self.comment(external_id, comment)
        page = self._call(self._notion.pages.retrieve, page_id=external_id)
        prop = (page.get("properties") or {}).get(self.status_property)
        if prop is None:
            raise TicketProviderError(f"Notion page {external_id} has no property {self.status_property!r}")
        kind = "select" if prop.get("type") == "select" else "status"
        if ((prop.get(kind) or {}).get("name")) == self.done_status:
            return
        self._call(self._notion.pages.update, page_id=external_id,
                   properties={self.status_property: {kind: {"name": self.done_status}}})

    # --- webhooks -------------------------------------------------------------------------------

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, secret: str | None) -> list[TicketEvent]:
        lowered = {k.lower(): v for k, v in headers.items()}
        webhook_auth.verify_signature(
            body, secret, lowered.get("x-notion-signature", ""), header="X-Notion-Signature", prefix="sha256=",
            missing="Notion delivery without X-Notion-Signature, or no verification token set")
        payload = webhook_auth.fresh_payload(
            body, tracker="Notion", field="timestamp",
            sent_at=lambda p: datetime.fromisoformat(str(p["timestamp"]).replace("Z", "+00:00")).timestamp(),
            now=self._clock(), tolerance_s=WEBHOOK_TOLERANCE_S, tolerance="five minutes")
        event = str(payload.get("type") or "")
        entity = payload.get("entity") or {}
        delivery = str(payload["id"]) if payload.get("id") else None
        if entity.get("type") == "page" and entity.get("id"):
            action = event.removeprefix("page.")
            return [TicketEvent(str(entity["id"]), "deleted" if action == "deleted" else action, delivery)]
        page_id = (payload.get("data") or {}).get("page_id")
        if event.startswith("comment.") and page_id:
            return [TicketEvent(str(page_id), "comment", delivery)]
        return []

    # --- plumbing -------------------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = method(**kwargs)
        except UnsafeURLError as exc:
            raise TicketProviderError(f"Notion's URL is refused: {exc}") from exc
        except APIResponseError as exc:
            retryable = exc.status == 429 or exc.status >= 500
            raise TicketProviderError(f"Notion answered HTTP {exc.status}: {exc.code}", retryable=retryable) from exc
        except HTTPResponseError as exc:
            retryable = exc.status == 429 or exc.status >= 500
            raise TicketProviderError(f"Notion answered HTTP {exc.status}", retryable=retryable) from exc
        except (RequestTimeoutError, httpx.HTTPError) as exc:
            raise TicketProviderError(f"Notion is unreachable: {type(exc).__name__}", retryable=True) from exc
        except NotionClientErrorBase as exc:
            raise TicketProviderError(f"Notion client refused the call: {exc}") from exc
        return result

    def _people(self, page: Mapping[str, Any]) -> list[dict[str, Any]]:
        prop = (page.get("properties") or {}).get(self.assignee_property) or {}
        return list(prop.get("people") or [])

    def _assigned(self, page: Mapping[str, Any], assignee: str | None) -> bool:
        if assignee is None:
            return True
        wanted = assignee.lower()
        return any(wanted in (str(p.get("id") or "").lower(), str((p.get("person") or {}).get("email") or "").lower())
                   for p in self._people(page))

    def _ticket(self, page: Mapping[str, Any], *, body: str) -> Ticket:
        props = page.get("properties") or {}
        title = _plain((props.get(self.title_property) or {}).get("title"))
        if not title:  # the title property may be named otherwise: there is exactly one
            title = next((_plain(p.get("title")) for p in props.values() if p.get("type") == "title"), "")
        status_prop = props.get(self.status_property) or {}
        status = ((status_prop.get(status_prop.get("type") or "status") or {}).get("name"))
        labels = tuple(str(o["name"]) for o in (props.get(self.labels_property) or {}).get("multi_select") or ())
        people = self._people(page)
        assignee = None
        if people:
            assignee = str((people[0].get("person") or {}).get("email") or people[0].get("id"))
        key = next((f"{u['unique_id'].get('prefix') or ''}-{u['unique_id']['number']}".lstrip("-")
                    for u in props.values() if u.get("type") == "unique_id" and (u.get("unique_id") or {})
                    .get("number") is not None), str(page["id"])[:8])
        edited = page.get("last_edited_time")
        closed = status == self.done_status or bool(page.get("in_trash")) or bool(page.get("archived"))
        return Ticket(
            external_id=str(page["id"]),
            key=key,
            title=title,
            body=body,
            url=str(page.get("url") or ""),
            state="closed" if closed else "open",
            labels=labels,
            assignee=assignee,
            project=None,
            updated_at=datetime.fromisoformat(str(edited).replace("Z", "+00:00")) if edited else None,
        )
