"""Ticket intake end to end, for every tracker in `TICKET_HARNESSES`: a ticket labelled `optio` becomes a repo
task through a blueprint, the task's PR merges, and the ticket is closed with comments linking the task and
the PR; a duplicate webhook, a relabel and a server restart spawn nothing more; a forged webhook is a 401 and a
body over the limit a 413. A real `optio serve`, real git, and each tracker's stateful fake."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.git_remote import make_remote
from tests.support.optio_server import OptioServer
from tests.support.ticket_harness import TICKET_HARNESSES

pytestmark = pytest.mark.slow

BLUEPRINT_SCHEMA = json.dumps({"title": {}, "body": {"default": ""}, "number": {}, "url": {"default": ""}})


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.mark.parametrize("kind", sorted(TICKET_HARNESSES))
def test_a_labelled_ticket_becomes_one_task_whose_merge_closes_it(kind: str, tmp_path: Path) -> None:
    harness = TICKET_HARNESSES[kind](tmp_path)
    server = OptioServer(tmp_path / "data", env={"OPTIO_OUTBOUND_ALLOWLIST": "127.0.0.1",
                                                 "OPTIO_TICKET_POLL_INTERVAL_S": "1", **harness.env}).start()
    try:
        remote = make_remote(tmp_path)
        server.cli("repo", "add", str(remote), "--name", "app", check=True)
        server.cli("blueprint", "create", "--name", "fix-ticket", "--repo", "app", "--title", "{{title}}",
                   "--prompt", "Fix {{number}} ({{url}}): {{body}}", "--command", "echo fixed > fixed.txt",
                   "--params-schema", BLUEPRINT_SCHEMA, check=True)
        source = harness.add_source(server, "tracker")
        assert source["webhook_url"].endswith(f"/api/ticket-hooks/{source['id']}") and source["webhook_secret"]
        assert "webhook_secret" not in server.api("GET", "/api/ticket-sources/tracker").json()
        trigger = json.loads(server.cli("trigger", "create", "--type", "ticket", "--source", "tracker", "--label",
                                        "optio", "--target-type", "blueprint", "--target", "fix-ticket", "--json",
                                        check=True).stdout)
        assert trigger["type"] == "ticket" and trigger["ticket_filter"]["label"] == "optio"

        ignored = harness.create_issue("Not for the agent", "leave me", ["question"])
        issue = harness.create_issue("Crash on empty input", "The parser crashes on ''.", ["bug", "optio"])

        def links() -> list[dict[str, Any]]:
            return list(server.api("GET", "/api/ticket-links").json())

        link = wait_for("the ticket's task", lambda: [x for x in links() if x["external_id"] == issue])[0]
        task_id = link["task_id"]
        task = server.api("GET", f"/api/repo-tasks/{task_id}").json()
        assert task["title"] == "Crash on empty input"
        assert task["prompt"].startswith(f"Fix {link['key']} (") and "The parser crashes on ''." in task["prompt"]

        # Whatever arrives again while the ticket is open spawns nothing more.
        assert harness.redeliver(issue) == 202
        harness.relabel(issue, ["bug"])
        harness.relabel(issue, ["bug", "optio"])
        assert harness.redeliver(issue) == 202
        assert harness.forged(issue) == 401
        too_big = httpx.post(source["webhook_url"], content=b"x" * (2 * 1024 * 1024), timeout=30)
        assert too_big.status_code == 413

        done = server.wait_state(f"/api/repo-tasks/{task_id}", {"completed", "failed", "needs_attention"},
                                 timeout=120)
        assert done["state"] == "completed", done
        wait_for("the ticket to close", lambda: harness.state(issue) == "closed")
        notes = wait_for("the merge note", lambda: (lambda n: n if any("merged" in x for x in n) else None)(
            harness.comments(issue)))
        assert any(f"/tasks/{task_id}" in n and "picked this up" in n for n in notes), notes
        assert any("pull request" in n and "/prs/" in n for n in notes), notes
        assert any("merged" in n for n in notes), notes
        assert harness.state(ignored) == "open"
        posted = wait_for("every note recorded", lambda: [x for x in links() if set(x["posted"]) >= {
            "picked_up", "pr_opened", "merged"}])
        assert [x["external_id"] for x in posted] == [issue]

        server.restart()
        started = time.time()
        wait_for("a poll after the restart", lambda: any(
            s["last_polled_at"] and _ts(s["last_polled_at"]) > started
            for s in server.api("GET", "/api/ticket-sources").json()), timeout=30)
        assert len(links()) == 1
        assert [t["id"] for t in server.api("GET", "/api/repo-tasks").json()["items"]] == [task_id]
    finally:
        server.stop()
        harness.close()


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
