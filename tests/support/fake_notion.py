"""A stateful Notion double: a test stand-in for Notion's hosted API, which tests cannot reach.

It serves on 127.0.0.1, with an integration token as a bearer and a `Notion-Version` header, the calls a
database-as-tracker needs in Notion's 2025-09-03 data model: retrieve a database (which lists its data
sources), retrieve a data source (its property schema), query a data source with a compound property filter
(`multi_select.contains`, `status`/`select` `equals`/`does_not_equal`, `people.contains`, under `and`/`or`)
and sorts, retrieve and update a page's properties, list a page's child blocks, and create a comment. A
database has one data source with the properties Name (title), Status (status: Not started, In progress,
Done), Labels (multi-select), Assignee (people) and ID (unique id, prefix TASK).

Every request and response is recorded; tests/integration/test_notion_fake_schema.py checks them against the
TypeScript models the official JavaScript SDK (`@notionhq/client`) publishes. Webhook deliveries are made as
Notion makes them: `X-Notion-Signature: sha256=<hex HMAC-SHA256 of the body with the verification token>`
and an event body (`id`, `timestamp`, `type` such as `page.properties_updated`, `entity`, `data`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.support.saas_http import HttpError, SaasFake, hmac_hex, post_webhook

_STATUS_OPTIONS = (("Not started", "default", "to_do"), ("In progress", "blue", "in_progress"),
                   ("Done", "green", "complete"))
_ANNOTATIONS = {"bold": False, "italic": False, "strikethrough": False, "underline": False, "code": False,
                "color": "default"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rich(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": text, "link": None}, "annotations": dict(_ANNOTATIONS),
             "plain_text": text, "href": None}] if text else []


def _option(name: str, color: str = "default") -> dict[str, Any]:
    return {"id": uuid.uuid5(uuid.NAMESPACE_OID, name).hex[:4], "name": name, "color": color}


@dataclass
class NotionPage:
    id: str
    number: int
    title: str
    body: list[str]
    status: str = "Not started"
    labels: list[str] = field(default_factory=list)
    assignee: dict[str, Any] | None = None
    last_edited: str = field(default_factory=_now)
    created: str = field(default_factory=_now)
    comments: list[str] = field(default_factory=list)


class FakeNotion(SaasFake):
    name = "notion"

    def __init__(self, token: str = "ntn_fake_token") -> None:
        self.token = token
        self.database_id = str(uuid.uuid4())
        self.data_source_id = str(uuid.uuid4())
        self.bot_id = str(uuid.uuid4())
        self.pages: dict[str, NotionPage] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.verification_token = "secret_" + uuid.uuid4().hex
        self.webhook_url: str | None = None
        self.versions: set[str] = set()
        super().__init__()

    # --- arranging ------------------------------------------------------------------------------

    def create_user(self, email: str, name: str) -> dict[str, Any]:
        user = {"object": "user", "id": str(uuid.uuid4()), "name": name, "avatar_url": None, "type": "person",
                "person": {"email": email}}
        self.users[user["id"]] = user
        return user

    def create_page(self, title: str, body: str = "", *, labels: Sequence[str] = (),
                    assignee: dict[str, Any] | None = None, status: str = "Not started") -> NotionPage:
        with self.lock:
            page = NotionPage(str(uuid.uuid4()), len(self.pages) + 1, title, body.splitlines(), status,
                              list(labels), assignee)
            self.pages[page.id] = page
        self.notify(page, "page.created")
        return page

    def set_labels(self, page: NotionPage, labels: list[str]) -> None:
        with self.lock:
            page.labels = list(labels)
            page.last_edited = _now()
        self.notify(page, "page.properties_updated")

    # --- webhooks -------------------------------------------------------------------------------

    def delivery(self, page: NotionPage, event: str = "page.properties_updated", *, secret: str | None = None,
                 timestamp: str | None = None) -> tuple[dict[str, str], bytes]:
        payload = {"id": str(uuid.uuid4()), "timestamp": timestamp or _now(), "workspace_id": str(uuid.uuid4()),
                   "workspace_name": "Acme", "subscription_id": str(uuid.uuid4()),
                   "integration_id": str(uuid.uuid4()), "type": event, "attempt_number": 1,
                   "api_version": "2025-09-03",
                   "authors": [{"id": self.bot_id, "type": "bot"}],
                   "entity": {"id": page.id, "type": "page"},
                   "data": {"parent": {"id": self.database_id, "type": "database",
                                       "data_source_id": self.data_source_id}, "updated_properties": ["Labels"]}}
        body = json.dumps(payload).encode()
        return {"X-Notion-Signature": "sha256=" + hmac_hex(secret or self.verification_token, body)}, body

    def notify(self, page: NotionPage, event: str) -> None:
        if self.webhook_url:
            post_webhook(self.webhook_url, *self.delivery(page, event))

    # --- serving --------------------------------------------------------------------------------

    def authorized(self, headers: dict[str, str]) -> bool:
        if headers.get("notion-version"):
            self.versions.add(headers["notion-version"])
        return headers.get("authorization") == f"Bearer {self.token}" and bool(headers.get("notion-version"))

    def failure_body(self, status: int) -> Any:
        code = {429: "rate_limited", 401: "unauthorized", 503: "service_unavailable"}.get(status,
                                                                                         "internal_server_error")
        return {"object": "error", "status": status, "code": code, "message": f"fake notion: HTTP {status}"}

    def _error(self, status: int, code: str, message: str) -> HttpError:
        return HttpError(status, {"object": "error", "status": status, "code": code, "message": message})

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if method == "GET" and path == f"/v1/databases/{self.database_id}":
            return 200, self._database()
        if method == "GET" and path == f"/v1/data_sources/{self.data_source_id}":
            return 200, self._data_source()
        if method == "POST" and path == f"/v1/data_sources/{self.data_source_id}/query":
            return 200, self._query(body or {})
        if method == "POST" and path == "/v1/comments":
            return 200, self._comment(body or {})
        m = re.fullmatch(r"/v1/(pages|blocks)/([0-9a-f-]+)(/children)?", path)
        if not m:
            raise self._error(404, "object_not_found", f"Could not find {path}.")
        page = self.pages.get(m.group(2))
        if page is None:
            raise self._error(404, "object_not_found", f"Could not find page with ID: {m.group(2)}.")
        if m.group(1) == "pages" and not m.group(3) and method == "GET":
            return 200, self._page(page)
        if m.group(1) == "pages" and not m.group(3) and method == "PATCH":
            self._update(page, (body or {}).get("properties") or {})
            return 200, self._page(page)
        if m.group(1) == "blocks" and m.group(3) and method == "GET":
            return 200, {"object": "list", "type": "block", "block": {}, "next_cursor": None, "has_more": False,
                         "results": [self._block(page, i, line) for i, line in enumerate(page.body)]}
        raise self._error(405, "invalid_request", "method not allowed")

    def _update(self, page: NotionPage, properties: dict[str, Any]) -> None:
        for name, value in properties.items():
            if name != "Status" or set(value) != {"status"}:
                raise self._error(400, "validation_error", f"fake notion updates only Status, not {name}")
            wanted = (value["status"] or {}).get("name")
            if wanted not in {o[0] for o in _STATUS_OPTIONS}:
                raise self._error(400, "validation_error", f"Invalid status option: {wanted}")
            with self.lock:
                page.status = wanted
                page.last_edited = _now()

    def _comment(self, body: dict[str, Any]) -> dict[str, Any]:
        page_id = (body.get("parent") or {}).get("page_id")
        page = self.pages.get(str(page_id))
        rich = body.get("rich_text")
        if page is None or not isinstance(rich, list) or not rich:
            raise self._error(400, "validation_error", "body.parent.page_id and body.rich_text are required")
        text = "".join(str((r.get("text") or {}).get("content") or "") for r in rich)
        with self.lock:
            page.comments.append(text)
        return {"object": "comment", "id": str(uuid.uuid4()), "parent": {"type": "page_id", "page_id": page.id},
                "discussion_id": str(uuid.uuid4()), "created_time": _now(), "last_edited_time": _now(),
                "created_by": {"object": "user", "id": self.bot_id}, "rich_text": _rich(text),
                "display_name": {"type": "integration", "resolved_name": "Optio"}}

    def _query(self, body: dict[str, Any]) -> dict[str, Any]:
        flt = body.get("filter")
        found = [p for p in self.pages.values() if flt is None or self._holds(p, flt)]
        found.sort(key=lambda p: p.last_edited, reverse=True)
        start = int(body.get("start_cursor") or 0) if str(body.get("start_cursor") or "0").isdigit() else 0
        size = int(body.get("page_size") or 100)
        chunk = found[start:start + size]
        more = start + size < len(found)
        return {"object": "list", "type": "page_or_data_source", "page_or_data_source": {},
                "next_cursor": str(start + size) if more else None, "has_more": more,
                "results": [self._page(p) for p in chunk]}

    def _holds(self, page: NotionPage, flt: dict[str, Any]) -> bool:
        if "and" in flt:
            return all(self._holds(page, f) for f in flt["and"])
        if "or" in flt:
            return any(self._holds(page, f) for f in flt["or"])
        prop = flt.get("property")
        if prop == "Labels" and "multi_select" in flt:
            cond = flt["multi_select"]
            if "contains" in cond:
                return cond["contains"] in page.labels
            return cond["does_not_contain"] not in page.labels
        if prop == "Status" and "status" in flt:
            cond = flt["status"]
            return page.status == cond["equals"] if "equals" in cond else page.status != cond["does_not_equal"]
        if prop == "Assignee" and "people" in flt:
            return page.assignee is not None and page.assignee["id"] == flt["people"]["contains"]
        raise self._error(400, "validation_error", f"fake notion cannot filter by {flt!r}")

    # --- shapes ---------------------------------------------------------------------------------

    def _parent(self) -> dict[str, Any]:
        return {"type": "data_source_id", "data_source_id": self.data_source_id, "database_id": self.database_id}

    def _user_ref(self) -> dict[str, Any]:
        return {"object": "user", "id": self.bot_id}

    def _database(self) -> dict[str, Any]:
        return {"object": "database", "id": self.database_id, "title": _rich("Tickets"), "description": [],
                "parent": {"type": "workspace", "workspace": True}, "is_inline": False, "in_trash": False,
                "archived": False, "is_locked": False, "created_time": _now(), "last_edited_time": _now(),
                "data_sources": [{"id": self.data_source_id, "name": "Tickets"}], "icon": None, "cover": None,
                "url": f"{self.url}/{self.database_id.replace('-', '')}", "public_url": None}

    def _data_source(self) -> dict[str, Any]:
        status_options = [dict(_option(n, c), description=None) for n, c, _ in _STATUS_OPTIONS]
        groups = [{"id": uuid.uuid5(uuid.NAMESPACE_OID, g).hex[:4], "name": g.replace("_", " ").title(),
                   "color": "default", "option_ids": [o["id"] for o, (_, _, og) in zip(status_options, _STATUS_OPTIONS,
                                                                                     strict=True) if og == g]}
                  for g in ("to_do", "in_progress", "complete")]
        return {"object": "data_source", "id": self.data_source_id,
                "properties": {
                    "Name": {"id": "title", "name": "Name", "type": "title", "title": {}, "description": None},
                    "Status": {"id": "stat", "name": "Status", "type": "status", "description": None,
                               "status": {"options": status_options, "groups": groups}},
                    "Labels": {"id": "labl", "name": "Labels", "type": "multi_select", "description": None,
                               "multi_select": {"options": []}},
                    "Assignee": {"id": "asgn", "name": "Assignee", "type": "people", "people": {},
                                 "description": None},
                    "ID": {"id": "uniq", "name": "ID", "type": "unique_id", "description": None,
                           "unique_id": {"prefix": "TASK"}}},
                "title": _rich("Tickets"), "description": [], "parent": {"type": "database_id",
                                                                          "database_id": self.database_id},
                "database_parent": {"type": "workspace", "workspace": True}, "is_inline": False,
                "in_trash": False, "archived": False, "created_time": _now(), "last_edited_time": _now(),
                "created_by": self._user_ref(), "last_edited_by": self._user_ref(), "icon": None, "cover": None,
                "url": f"{self.url}/{self.data_source_id.replace('-', '')}", "public_url": None}

    def _page(self, page: NotionPage) -> dict[str, Any]:
        status_color = next(c for n, c, _ in _STATUS_OPTIONS if n == page.status)
        return {
            "object": "page", "id": page.id, "created_time": page.created, "last_edited_time": page.last_edited,
            "in_trash": False, "archived": False, "is_archived": False, "is_locked": False,
            "url": f"{self.url}/{re.sub(r'[^A-Za-z0-9]+', '-', page.title)}-{page.id.replace('-', '')}",
            "public_url": None, "parent": self._parent(), "icon": None, "cover": None,
            "created_by": self._user_ref(), "last_edited_by": self._user_ref(),
            "properties": {
                "Name": {"id": "title", "type": "title", "title": _rich(page.title)},
                "Status": {"id": "stat", "type": "status", "status": _option(page.status, status_color)},
                "Labels": {"id": "labl", "type": "multi_select", "multi_select": [_option(n) for n in page.labels]},
                "Assignee": {"id": "asgn", "type": "people", "people": [page.assignee] if page.assignee else []},
                "ID": {"id": "uniq", "type": "unique_id", "unique_id": {"prefix": "TASK", "number": page.number}},
            },
        }

    def _block(self, page: NotionPage, index: int, line: str) -> dict[str, Any]:
        return {"object": "block", "id": str(uuid.uuid5(uuid.UUID(page.id), str(index))), "type": "paragraph",
                "paragraph": {"rich_text": _rich(line), "color": "default", "icon": None},
                "parent": {"type": "page_id", "page_id": page.id}, "created_time": page.created,
                "created_by": self._user_ref(), "last_edited_time": page.last_edited,
                "last_edited_by": self._user_ref(), "has_children": False, "in_trash": False, "archived": False}
