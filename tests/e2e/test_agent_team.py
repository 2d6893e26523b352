"""The example team (examples/agent-team) on a real server, offline, with authentication and the sandbox on.

`optio agent apply -f team/*.json` sets up three script agents; one person's message to the planner turns,
through agent-to-agent messages sent with `optio agent-msg` from inside their turns, into the reporter
writing the expected sum. Every agent ends idle with an empty inbox, and each turn's prompt holds exactly
the messages that turn drained, each processed by exactly one turn.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.optio_server import OptioServer

from optio.domain.agent_messages import parse_envelopes

pytestmark = pytest.mark.slow

TEAM_DIR = Path(__file__).resolve().parents[2] / "examples" / "agent-team"
SLUGS = ("adder", "planner", "reporter")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OptioServer]:
    # The sandbox shows the team's scripts read-only (as README's example section says to).
    srv = OptioServer(tmp_path_factory.mktemp("team") / "data",
                      env={"OPTIO_SANDBOX_READONLY_PATHS": str(TEAM_DIR)}).start()
    yield srv
    srv.stop()


def agent(server: OptioServer, slug: str) -> dict[str, Any]:
    return dict(server.api("GET", f"/api/agents/{slug}").json())


def wait_for(what: str, check: Any, server: OptioServer, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    states = {s: (agent(server, s).get("state"), agent(server, s).get("pending_messages")) for s in SLUGS}
    raise AssertionError(f"{what} did not happen in {timeout}s; agents: {states}\n{server.log()[-3000:]}")


def workspace_of(server: OptioServer, slug: str) -> Path:
    return server.data_dir / "agents" / str(agent(server, slug)["id"]) / "workspace"


def test_a_message_to_the_planner_ends_in_the_reporters_result(server: OptioServer) -> None:
    files = sorted(str(p) for p in (TEAM_DIR / "team").glob("*.json"))
    applied = server.cli("agent", "apply", "-f", *files, check=True)
    assert sorted(applied.stdout.split("\n")[:3]) == [f"agent {s} created" for s in SLUGS], applied.stdout
    again = server.cli("agent", "apply", "-f", *files, check=True)
    assert all(line.endswith("unchanged") for line in again.stdout.strip().splitlines()), again.stdout

    sent = server.cli("agent", "send", "planner", "sum: 1 2 3 4 5 6 7", check=True)
    assert sent.returncode == 0
    job = server.api("GET", "/api/agents/planner/messages").json()[0]["id"]
    result = workspace_of(server, "reporter") / "result.txt"
    text = wait_for("the reporter's result", lambda: result.exists() and result.read_text(), server)
    assert text == f"job {job}: total 28\n"

    def settled() -> bool:
        rows = [agent(server, s) for s in SLUGS]
        return all(r["state"] == "idle" and r["pending_messages"] == 0 and r["current_turn"] is None for r in rows)

    wait_for("every agent back to idle", settled, server)

    every_message: dict[int, dict[str, Any]] = {}
    for slug in SLUGS:
        messages = server.api("GET", f"/api/agents/{slug}/messages").json()
        every_message.update({m["id"]: m for m in messages})
        turns = server.api("GET", f"/api/agents/{slug}/turns").json()
        assert turns and all(t["outcome"] == "succeeded" for t in turns), (slug, turns)
        drained: list[int] = []
        for turn in turns:
            detail = server.api("GET", f"/api/agents/{slug}/turns/{turn['number']}").json()
            envelopes = parse_envelopes(detail["prompt"])
            # The prompt holds exactly the messages the turn drained, oldest first, as the inbox has them.
            assert [e["id"] for e in envelopes] == turn["message_ids"], (slug, turn, envelopes)
            for envelope in envelopes:
                stored = next(m for m in messages if m["id"] == envelope["id"])
                assert (envelope["from"], envelope["body"]) == (stored["sender"], stored["body"])
                assert stored["processed_by_turn"] == turn["id"]
            drained += turn["message_ids"]
        # Each message of the agent was processed by exactly one turn.
        assert sorted(drained) == sorted(m["id"] for m in messages), slug

    senders = {m["sender"] for m in every_message.values()}
    assert senders == {"user:1", "agent:default/planner", "agent:default/adder"}
    adder_in = server.api("GET", "/api/agents/adder/messages").json()
    assert sorted(m["body"] for m in adder_in) == [f"add {job} 1 2 3", f"add {job} 4 5 6", f"add {job} 7"]
    reporter_in = server.api("GET", "/api/agents/reporter/messages").json()
    assert sorted(m["body"] for m in reporter_in) == sorted([f"expect {job} 3", f"part {job} 6", f"part {job} 15",
                                                            f"part {job} 7"])
    # The reporter is sticky: its memory file outlived its turns.
    memory = json.loads((workspace_of(server, "reporter") / "memory.json").read_text())
    assert memory[str(job)]["done"] is True


def test_an_agent_round_trips_through_export_and_apply(server: OptioServer, tmp_path: Path) -> None:
    server.cli("agent", "apply", "-f", str(TEAM_DIR / "team" / "adder.json"), check=True)
    exported = json.loads(server.cli("agent", "export", "adder", check=True).stdout)
    assert exported["format"] == "optio-agent/1" and exported["slug"] == "adder"
    assert exported["agent_config"]["command"] == f"python3 {TEAM_DIR / 'team'}/../adder.py"
    assert "state" not in exported and "turn_count" not in exported
    exported["name"] = "Adder, renamed"
    exported["slug"] = "adder-two"
    path = tmp_path / "adder-two.json"
    path.write_text(json.dumps(exported))
    created = server.cli("agent", "apply", "-f", str(path), check=True)
    assert created.stdout.strip() == "agent adder-two created"
    exported["name"] = "Adder two"
    path.write_text(json.dumps(exported))
    assert server.cli("agent", "apply", "-f", str(path), check=True).stdout.strip() == "agent adder-two updated"
    assert agent(server, "adder-two")["name"] == "Adder two"
    assert agent(server, "adder-two")["operator_manual"] == agent(server, "adder")["operator_manual"]

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"slug": "x", "colour": "red"}))
    res = server.cli("agent", "apply", "-f", str(path), str(bad))
    assert res.returncode == 1 and "colour" in res.stderr and "agent adder-two" not in res.stdout
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"slug": "y", "lifecycle": "sometimes"}))
    res = server.cli("agent", "apply", "-f", str(invalid))
    assert res.returncode == 1 and "lifecycle" in res.stderr


def test_a_turns_token_works_in_the_sandbox_and_dies_with_its_turn(server: OptioServer) -> None:
    call = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"peers","arguments":{}}}'
    command = ('printf %s "$OPTIO_AGENT_TOKEN" > token.txt; printf %s "$OPTIO_API_URL" > url.txt; '
               "optio agent-msg peers --json > peers.json; "
               # An MCP server a vendor CLI starts may get a filtered environment: the turn file under HOME serves.
               f"echo '{call}' | env -u OPTIO_AGENT_TOKEN -u OPTIO_API_URL optio agent-msg mcp > mcp.json")
    server.api("POST", "/api/agents", json={"slug": "spy", "agent_config": {"command": command},
                                            "lifecycle": "sticky"}).raise_for_status()
    server.api("POST", "/api/agents", json={"slug": "spy-peer", "agent_config": {"command": "true"}}
               ).raise_for_status()
    server.cli("agent", "send", "spy", "look around", check=True)
    wait_for("the spy's turn to end", lambda: agent(server, "spy")["state"] == "idle"
             and agent(server, "spy")["turn_count"] == 1, server)
    ws = workspace_of(server, "spy")
    assert "spy-peer" in {p["slug"] for p in json.loads((ws / "peers.json").read_text())["peers"]}
    tool = json.loads((ws / "mcp.json").read_text())["result"]
    assert tool["isError"] is False and "spy-peer" in {p["slug"] for p in tool["structuredContent"]["peers"]}
    token, url = (ws / "token.txt").read_text(), (ws / "url.txt").read_text()
    assert url == server.url and token.startswith("optio-agent.")
    # The turn is over: its token is refused, although it has not expired.
    res = httpx.get(url + "/api/agent-msg/peers", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert res.status_code == 401, res.text
    res = httpx.post(url + "/api/agent-msg/send", headers={"Authorization": f"Bearer {token}"},
                     json={"to": "spy-peer", "body": "late"}, timeout=10)
    assert res.status_code == 401
    assert server.api("GET", "/api/agents/spy-peer/messages").json() == []


def test_the_dashboard_lists_agents_shows_inbox_and_turns_and_sends_a_message(server: OptioServer) -> None:
    import re

    server.api("POST", "/api/agents", json={"slug": "echo", "name": "Echo", "lifecycle": "sticky",
                                            "agent_config": {"command": "echo heard it"}}).raise_for_status()
    assert server.api("PUT", "/api/me/password", json={"password": "team-admin-password"}).status_code == 204
    browser = httpx.Client(base_url=server.url, timeout=30)
    csrf = re.search(r"name='csrf_token' value='([^']+)'", browser.get("/login").text).group(1)  # type: ignore[union-attr]
    assert browser.post("/login", data={"username": "admin", "password": "team-admin-password",
                                        "csrf_token": csrf}).status_code == 303
    listing = browser.get("/agents")
    assert listing.status_code == 200 and '<a href="/agents/echo">echo</a>' in listing.text
    detail = browser.get("/agents/echo")
    assert detail.status_code == 200 and "No turns yet" in detail.text
    page_csrf = re.search(r'name="csrf_token" value="([^"]+)"', detail.text).group(1)  # type: ignore[union-attr]
    # Without the CSRF token the chat box is refused and nothing is sent.
    assert browser.post("/agents/echo/messages", data={"body": "no token"}).status_code == 403
    sent = browser.post("/agents/echo/messages", data={"body": "hello from the page", "csrf_token": page_csrf})
    assert sent.status_code == 303 and sent.headers["location"] == "/agents/echo"
    assert browser.post("/agents/echo/messages", data={"body": "", "csrf_token": page_csrf}).status_code == 422
    assert browser.post("/agents/nobody/messages", data={"body": "x", "csrf_token": page_csrf}).status_code == 404
    wait_for("echo's turn", lambda: agent(server, "echo")["turn_count"] == 1
             and agent(server, "echo")["state"] == "idle", server)
    html = browser.get("/agents/echo").text
    assert "hello from the page" in html and "by turn" in html
    assert 'data-log-url="/api/agents/echo/turns/1/logs"' in html
    assert browser.get("/agents/echo", params={"turn": 9}).status_code == 404
    assert browser.get("/agents/nobody").status_code == 404
    messages = server.api("GET", "/api/agents/echo/messages").json()
    assert [(m["sender"], m["body"]) for m in messages] == [("user:1", "hello from the page")]
    browser.close()
