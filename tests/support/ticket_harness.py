"""One ticket-intake scenario, any tracker: what a test needs of a tracker to file a labelled ticket, deliver
its webhooks (again, and forged), and read back its comments and state.

`TICKET_HARNESSES` maps a source kind to a harness class built with the test's temporary directory. A harness
starts its tracker's fake (the local tracker needs none), `add_source` registers the tracker with a running
Optio (secrets, `optio ticket-source add`) and points the fake's webhooks at the source's URL. A new provider
adds its class and its kind here; the end-to-end test (tests/e2e/test_ticket_intake.py) runs every entry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tests.support import http_client
from tests.support.fake_github import FakeGitHub
from tests.support.fake_gitlab import FakeGitLab
from tests.support.optio_server import OptioServer
from tests.support.saas_ticket_harness import JiraTickets, LinearTickets, NotionTickets

from optio.security import signatures


class TicketHarness(Protocol):
    kind: str
    # Extra environment for `optio serve` (e.g. the outbound allowlist a fake on 127.0.0.1 needs).
    env: dict[str, str]

    def add_source(self, server: OptioServer, name: str) -> dict[str, Any]:
        """Register the tracker as ticket source `name`; returns `optio ticket-source add --json`'s output."""
        ...

    def create_issue(self, title: str, body: str, labels: list[str]) -> str:
        """File a ticket (its webhook, where the tracker sends one, goes out); returns its external id."""
        ...

    def relabel(self, external_id: str, labels: list[str]) -> None:
        """Replace the ticket's labels (its webhook goes out)."""
        ...

    def redeliver(self, external_id: str) -> int:
        """Send the ticket's webhook again, correctly signed; returns Optio's status."""
        ...

    def forged(self, external_id: str) -> int:
        """Send the ticket's webhook with a wrong signature or token; returns Optio's status."""
        ...

    def comments(self, external_id: str) -> list[str]:
        ...

    def state(self, external_id: str) -> str:
        """`open` or `closed`."""
        ...

    def close(self) -> None:
        ...


def optio_signed(secret: str, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    return {"Content-Type": "application/json", "X-Optio-Timestamp": ts,
            "X-Optio-Signature": signatures.sign(secret, ts.encode() + b"." + body)}


class LocalTickets:
    """The local tracker: tickets through the CLI, its webhook is Optio's own signed form."""

    kind = "local"
    env: dict[str, str] = {}

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.server: OptioServer | None = None
        self.source: dict[str, Any] = {}

    def _server(self) -> OptioServer:
        assert self.server is not None, "add_source first"
        return self.server

    def add_source(self, server: OptioServer, name: str) -> dict[str, Any]:
        self.server = server
        res = server.cli("ticket-source", "add", name, "--kind", "local", "--json", check=True)
        self.source = json.loads(res.stdout)
        return self.source

    def create_issue(self, title: str, body: str, labels: list[str]) -> str:
        args = [x for label in labels for x in ("--label", label)]
        res = self._server().cli("ticket", "new", "--title", title, "--body", body, *args, "--json", check=True)
        return str(json.loads(res.stdout)["number"])

    def relabel(self, external_id: str, labels: list[str]) -> None:
        server = self._server()
        current = server.api("GET", f"/api/tickets/{external_id}").json()["labels"]
        server.api("POST", f"/api/tickets/{external_id}/labels",
                   json={"add": labels, "remove": [x for x in current if x not in labels]}).raise_for_status()

    def _hook(self, external_id: str, secret: str) -> int:
        body = json.dumps({"number": int(external_id), "action": "labeled"}).encode()
        return http_client.post(self.source["webhook_url"], content=body, headers=optio_signed(secret, body),
                          timeout=30).status_code

    def redeliver(self, external_id: str) -> int:
        return self._hook(external_id, self.source["webhook_secret"])

    def forged(self, external_id: str) -> int:
        return self._hook(external_id, "whsec_not-the-secret")

    def comments(self, external_id: str) -> list[str]:
        return [c["body"] for c in self._server().api("GET", f"/api/tickets/{external_id}/comments").json()]

    def state(self, external_id: str) -> str:
        return str(self._server().api("GET", f"/api/tickets/{external_id}").json()["state"])

    def close(self) -> None:
        pass


class GitHubTickets:
    """GitHub Issues on `FakeGitHub`: issues filed and relabelled there send signed `issues` events."""

    kind = "github"
    env = {"OPTIO_OUTBOUND_ALLOWLIST": "127.0.0.1"}
    TOKEN = "ghp_optio_token_7f3a9c"

    def __init__(self, tmp: Path) -> None:
        self.fake = FakeGitHub(tmp / "github-issues").__enter__()
        self.repo = self.fake.create_repo("acme", "tracker")

    def add_source(self, server: OptioServer, name: str) -> dict[str, Any]:
        server.cli("secret", "set", "GITHUB_ISSUES_TOKEN", "--value", self.TOKEN, check=True)
        res = server.cli("ticket-source", "add", name, "--kind", "github", "--api-url", self.fake.api_url,
                         "--repo", self.repo.full_name, "--credential-secret", "GITHUB_ISSUES_TOKEN", "--json",
                         check=True)
        source: dict[str, Any] = json.loads(res.stdout)
        self.fake.issue_hook(self.repo, source["webhook_url"], source["webhook_secret"])
        return source

    def create_issue(self, title: str, body: str, labels: list[str]) -> str:
        return str(self.fake.create_issue(self.repo, title, body=body, labels=labels))

    def relabel(self, external_id: str, labels: list[str]) -> None:
        self.fake.set_labels(self.repo, int(external_id), labels)

    def redeliver(self, external_id: str) -> int:
        return self.fake.deliver_issue(self.repo, int(external_id), "labeled", label="optio")[0]

    def forged(self, external_id: str) -> int:
        return self.fake.deliver_issue(self.repo, int(external_id), "labeled", label="optio", secret="not-it")[0]

    def comments(self, external_id: str) -> list[str]:
        return [c["body"] for c in self.repo.issues[int(external_id)]["comments"]]

    def state(self, external_id: str) -> str:
        return str(self.repo.issues[int(external_id)]["state"])

    def close(self) -> None:
        self.fake.__exit__()


class GitLabTickets:
    """GitLab Issues on `FakeGitLab`: issues filed and relabelled there send `Issue Hook`s with the token."""

    kind = "gitlab"
    env = {"OPTIO_OUTBOUND_ALLOWLIST": "127.0.0.1"}

    def __init__(self, tmp: Path) -> None:
        self.fake = FakeGitLab(tmp / "gitlab-issues").__enter__()
        self.project = self.fake.create_project("acme/tracker")

    def add_source(self, server: OptioServer, name: str) -> dict[str, Any]:
        server.cli("secret", "set", "GITLAB_ISSUES_TOKEN", "--value", self.fake.bot.token, check=True)
        res = server.cli("ticket-source", "add", name, "--kind", "gitlab", "--api-url", self.fake.base_url,
                         "--project", self.project.path, "--credential-secret", "GITLAB_ISSUES_TOKEN", "--json",
                         check=True)
        source: dict[str, Any] = json.loads(res.stdout)
        self.fake.add_hook(self.project, source["webhook_url"], source["webhook_secret"])
        return source

    def create_issue(self, title: str, body: str, labels: list[str]) -> str:
        return str(self.fake.create_issue(self.project, title, description=body, labels=labels).iid)

    def relabel(self, external_id: str, labels: list[str]) -> None:
        self.fake.set_labels(self.project, self.project.issues[int(external_id)], labels)

    def redeliver(self, external_id: str) -> int:
        return self.fake.send_issue_hook(self.project, self.project.issues[int(external_id)], "update")[0]

    def forged(self, external_id: str) -> int:
        return self.fake.send_issue_hook(self.project, self.project.issues[int(external_id)], "update",
                                         token="not-the-token")[0]

    def comments(self, external_id: str) -> list[str]:
        return [str(n["body"]) for n in self.project.issues[int(external_id)].notes]

    def state(self, external_id: str) -> str:
        return "closed" if self.project.issues[int(external_id)].state == "closed" else "open"

    def close(self) -> None:
        self.fake.__exit__()


TICKET_HARNESSES: dict[str, Callable[[Path], TicketHarness]] = {
    "local": LocalTickets,
    "github": GitHubTickets,
    "gitlab": GitLabTickets,
    "jira": JiraTickets,
    "linear": LinearTickets,
    "notion": NotionTickets,
}
