"""Ticket-intake harnesses for the hosted trackers without a forge of their own: Linear, Jira Cloud and Notion,
each on its stateful fake (see tests/support/ticket_harness.py for the protocol and the end-to-end test that
runs every entry of `TICKET_HARNESSES`).

The fake is pointed at the source's webhook URL and signs with the secret Optio generated for the source, as
an operator does when registering the webhook with the tracker (Jira takes a chosen secret; for Linear and
Notion the fake stands in for pasting the tracker's secret into Optio).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from tests.support.fake_jira import FakeJira
from tests.support.fake_linear import FakeLinear
from tests.support.fake_notion import FakeNotion
from tests.support.linear_schema import published_schema
from tests.support.optio_server import OptioServer
from tests.support.saas_http import post_webhook
from tests.support.saas_models import package

ALLOW_FAKES = {"OPTIO_OUTBOUND_ALLOWLIST": "127.0.0.1"}


def _add(server: OptioServer, name: str, kind: str, url: str, credential: str, options: dict[str, str]
         ) -> dict[str, Any]:
    secret_name = f"{kind.upper()}_TOKEN"
    server.cli("secret", "set", secret_name, "--value", credential, check=True)
    args = [x for key, value in options.items() for x in ("--option", f"{key}={value}")]
    res = server.cli("ticket-source", "add", name, "--kind", kind, "--api-url", url, *args,
                     "--credential-secret", secret_name, "--json", check=True)
    source: dict[str, Any] = json.loads(res.stdout)
    return source


class _FakeTracker(ABC):
    """What the three harnesses do alike: the fake keeps each ticket by its external id, and signs and sends its
    deliveries (with the source's secret, or a wrong one)."""

    kind: str
    env = ALLOW_FAKES
    fake: Any

    @abstractmethod
    def _item(self, external_id: str) -> Any:
        """The fake's record of the ticket (a Linear or Jira issue, a Notion page)."""

    def relabel(self, external_id: str, labels: list[str]) -> None:
        self.fake.set_labels(self._item(external_id), labels)

    def redeliver(self, external_id: str) -> int:
        assert self.fake.webhook_url
        return post_webhook(self.fake.webhook_url, *self.fake.delivery(self._item(external_id))).status_code

    def forged(self, external_id: str) -> int:
        assert self.fake.webhook_url
        return post_webhook(self.fake.webhook_url, *self.fake.delivery(self._item(external_id),
                                                                        secret="not-the-secret")).status_code

    def close(self) -> None:
        self.fake.close()


class LinearTickets(_FakeTracker):
    kind = "linear"

    def __init__(self, tmp: Path) -> None:
        pkg = package("@linear/sdk")
        self.fake = FakeLinear(published_schema=published_schema(pkg) if pkg else None)
        self.team = self.fake.create_team("ENG")

    def add_source(self, server: OptioServer, name: str) -> dict[str, Any]:
        source = _add(server, name, "linear", self.fake.url, self.fake.api_key, {"team": "ENG"})
        self.fake.webhook_secret, self.fake.webhook_url = source["webhook_secret"], source["webhook_url"]
        return source

    def create_issue(self, title: str, body: str, labels: list[str]) -> str:
        return self.fake.create_issue(self.team, title, body, labels=labels).id

    def _item(self, external_id: str) -> Any:
        return self.fake.issues[external_id]

    def comments(self, external_id: str) -> list[str]:
        return list(self._item(external_id).comments)

    def state(self, external_id: str) -> str:
        return "closed" if self._item(external_id).state["type"] in ("completed", "canceled") else "open"

    def close(self) -> None:
        assert self.fake.refused == [], "Linear's published schema refused a query Optio sent"
        super().close()


class JiraTickets(_FakeTracker):
    kind = "jira"

    def __init__(self, tmp: Path) -> None:
        self.fake = FakeJira()

    def add_source(self, server: OptioServer, name: str) -> dict[str, Any]:
        source = _add(server, name, "jira", self.fake.url, self.fake.api_token,
                      {"project": "PROJ", "email": self.fake.email})
        self.fake.webhook_secret, self.fake.webhook_url = source["webhook_secret"], source["webhook_url"]
        return source

    def create_issue(self, title: str, body: str, labels: list[str]) -> str:
        return self.fake.create_issue("PROJ", title, body, labels=labels).id

    def _item(self, external_id: str) -> Any:
        return self.fake.issues[external_id]

    def comments(self, external_id: str) -> list[str]:
        return self._item(external_id).comment_texts()

    def state(self, external_id: str) -> str:
        return "closed" if self.fake.status_name(self._item(external_id)) == "Done" else "open"


class NotionTickets(_FakeTracker):
    kind = "notion"

    def __init__(self, tmp: Path) -> None:
        self.fake = FakeNotion()

    def add_source(self, server: OptioServer, name: str) -> dict[str, Any]:
        source = _add(server, name, "notion", self.fake.url, self.fake.token,
                      {"database_id": self.fake.database_id})
        self.fake.verification_token, self.fake.webhook_url = source["webhook_secret"], source["webhook_url"]
        return source

    def create_issue(self, title: str, body: str, labels: list[str]) -> str:
        return self.fake.create_page(title, body, labels=labels).id

    def _item(self, external_id: str) -> Any:
        return self.fake.pages[external_id]

    def comments(self, external_id: str) -> list[str]:
        return list(self._item(external_id).comments)

    def state(self, external_id: str) -> str:
        return "closed" if self._item(external_id).status == "Done" else "open"
