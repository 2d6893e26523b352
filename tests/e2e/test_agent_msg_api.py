"""The inter-agent API on a real server with authentication on: a turn's token speaks for its agent while the
turn is open, only in its workspace; `optio agent-msg` and its MCP server reach peers through it.

Turns are opened here directly in the server's database (as the turn handler does) for paused agents, which
take messages but start no turns of their own, so each rule is checked on its own; tests/e2e/test_agent_team.py
runs the same verbs from inside real turns, where a message also wakes its target.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.optio_server import OPTIO, OptioServer

from optio.security import agent_tokens
from optio.services import persistent_agents as agents
from optio.store import persistent_agents as store
from optio.store.db import Database
from optio.store.models import AgentMessage, Workspace
from optio.store.types import utcnow

SECRET = "agent-msg-test-session-secret"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OptioServer]:
    srv = OptioServer(tmp_path_factory.mktemp("agentmsg") / "data", env={"OPTIO_SESSION_SECRET": SECRET}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def db(server: OptioServer) -> Database:
    db = Database(f"sqlite:///{server.data_dir / 'optio.db'}")
    with db.write() as s:
        s.add(Workspace(slug="beta", name="Beta"))
    for ws, slug in ((1, "alpha"), (1, "bravo"), (1, "gone"), (2, "delta"), (2, "bravo")):
        agents.create_agent(db, ws, {"slug": slug, "agent_type": "script", "agent_config": {"command": "true"}})
    # Paused agents take messages but start no turns: the reconciler stays out of the turns this test opens.
    with db.write() as s:
        for agent in [*store.list_agents(s, 1), *store.list_agents(s, 2)]:
            agent.state = "archived" if agent.slug == "gone" else "paused"
    return db


def open_turn(db: Database, ws: int, slug: str) -> int:
    with db.write() as s:
        agent = store.get(s, ws, slug)
        turn, _ = store.start_turn(s, agent, number=agent.turn_count + 1, now=utcnow(), max_messages=50)
        return turn.id


def close_turn(db: Database, ws: int, slug: str, turn_id: int) -> None:
    with db.write() as s:
        agent = store.get(s, ws, slug)
        store.close_turn(s, agent.id, store.turn_by_id(s, turn_id), outcome="succeeded", error=None,  # type: ignore[arg-type]
                         now=utcnow())


def token_for(db: Database, ws: int, slug: str, turn_id: int, ttl: float = 600) -> str:
    with db.read() as s:
        agent_id = store.get(s, ws, slug).id
    return agent_tokens.issue(SECRET, agent_id=agent_id, workspace_id=ws, turn_id=turn_id,
                              expires_at=time.time() + ttl)


def call(server: OptioServer, token: str, method: str, path: str, **kw: Any) -> Any:
    return server.api(method, "/api/agent-msg" + path, token=token, **kw)


def test_a_turn_token_lists_peers_sends_broadcasts_and_reads_its_inbox(server: OptioServer, db: Database) -> None:
    turn = open_turn(db, 1, "alpha")
    token = token_for(db, 1, "alpha", turn)

    peers = call(server, token, "GET", "/peers")
    assert peers.status_code == 200, peers.text
    assert [p["slug"] for p in peers.json()["peers"]] == ["bravo"]  # not itself, not the archived one

    sent = call(server, token, "POST", "/send", json={"to": "bravo", "body": "hello bravo"})
    assert sent.status_code == 201, sent.text
    with db.read() as s:
        message = s.get(AgentMessage, sent.json()["id"])
        bravo = store.get(s, 1, "bravo")
        assert message is not None and message.agent_id == bravo.id
        assert message.sender == "agent:default/alpha" and message.body == "hello bravo"

    out = call(server, token, "POST", "/broadcast", json={"body": "to all", "type": "event"})
    assert out.status_code == 201, out.text
    assert [s["to"] for s in out.json()["sent"]] == ["bravo"]

    agents.send_message(db, 1, "alpha", "for alpha", sender="user:1")
    inbox = call(server, token, "GET", "/inbox", params={"pending": "true"})
    assert inbox.status_code == 200
    assert [(m["sender"], m["body"]) for m in inbox.json()["messages"]][-1] == ("user:1", "for alpha")
    close_turn(db, 1, "alpha", turn)


def test_bad_input_is_a_422_naming_the_field(server: OptioServer, db: Database) -> None:
    turn = open_turn(db, 1, "alpha")
    token = token_for(db, 1, "alpha", turn)
    for body, field in (({"to": "bravo", "body": ""}, "body"), ({"to": "Bad Slug!", "body": "x"}, "to"),
                        ({"to": "bravo", "body": "x", "type": "weird"}, "type"), ({"body": "x"}, "to")):
        res = call(server, token, "POST", "/send", json=body)
        assert res.status_code == 422, (body, res.text)
        assert field in res.text
    assert call(server, token, "POST", "/send", json={"to": "alpha", "body": "me"}).status_code == 422
    assert call(server, token, "POST", "/send", json={"to": "gone", "body": "x"}).status_code == 409
    close_turn(db, 1, "alpha", turn)


def test_a_token_cannot_reach_another_workspace(server: OptioServer, db: Database) -> None:
    turn = open_turn(db, 1, "alpha")
    token = token_for(db, 1, "alpha", turn)
    # delta exists, in workspace beta only: from workspace default it is not found, exactly like a missing slug.
    missing = call(server, token, "POST", "/send", json={"to": "delta", "body": "x"})
    nowhere = call(server, token, "POST", "/send", json={"to": "no-such-agent", "body": "x"})
    assert missing.status_code == nowhere.status_code == 404
    assert missing.json()["error"]["message"] == nowhere.json()["error"]["message"].replace("no-such-agent", "delta")
    # Both workspaces have a bravo: alpha's message lands in its own workspace's.
    res = call(server, token, "POST", "/send", json={"to": "bravo", "body": "same workspace"})
    with db.read() as s:
        assert s.get(AgentMessage, res.json()["id"]).agent_id == store.get(s, 1, "bravo").id  # type: ignore[union-attr]
    # A token claiming another workspace for the same turn does not verify, and one signed by another key neither.
    other_turn = open_turn(db, 2, "delta")
    forged = agent_tokens.issue("another-secret", agent_id=1, workspace_id=2, turn_id=other_turn,
                                expires_at=time.time() + 60)
    assert call(server, forged, "GET", "/peers").status_code == 401
    delta_token = token_for(db, 2, "delta", other_turn)
    assert [p["slug"] for p in call(server, delta_token, "GET", "/peers").json()["peers"]] == ["bravo"]
    with db.read() as s:
        beta_bravo = store.get(s, 2, "bravo").id
    res = call(server, delta_token, "POST", "/send", json={"to": "bravo", "body": "in beta"})
    with db.read() as s:
        assert s.get(AgentMessage, res.json()["id"]).agent_id == beta_bravo  # type: ignore[union-attr]
        assert s.get(AgentMessage, res.json()["id"]).sender == "agent:beta/delta"  # type: ignore[union-attr]
    close_turn(db, 1, "alpha", turn)
    close_turn(db, 2, "delta", other_turn)


def test_a_token_stops_working_when_its_turn_ends(server: OptioServer, db: Database) -> None:
    turn = open_turn(db, 1, "alpha")
    token = token_for(db, 1, "alpha", turn)
    assert call(server, token, "GET", "/peers").status_code == 200
    close_turn(db, 1, "alpha", turn)
    for method, path, body in (("GET", "/peers", None), ("GET", "/inbox", None),
                               ("POST", "/send", {"to": "bravo", "body": "late"}),
                               ("POST", "/broadcast", {"body": "late"})):
        res = call(server, token, method, path, json=body)
        assert res.status_code == 401, (path, res.text)
    # The next turn's token works; an expired one does not, whatever its turn's state.
    turn2 = open_turn(db, 1, "alpha")
    assert call(server, token_for(db, 1, "alpha", turn2), "GET", "/peers").status_code == 200
    assert call(server, token_for(db, 1, "alpha", turn2, ttl=-1), "GET", "/peers").status_code == 401
    close_turn(db, 1, "alpha", turn2)


def test_only_a_turn_token_is_accepted(server: OptioServer, db: Database) -> None:
    assert server.api("GET", "/api/agent-msg/peers", token="").status_code == 401
    assert server.api("GET", "/api/agent-msg/peers").status_code == 401  # the admin's API key is not an agent
    assert server.api("GET", "/api/agent-msg/peers", token="optio-agent.garbage.sig").status_code == 401


def agent_env(server: OptioServer, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIO_")}
    env.update({"OPTIO_API_URL": server.url, "OPTIO_AGENT_TOKEN": token, "OPTIO_CONFIG_DIR": str(server.data_dir)})
    return env


def test_the_cli_and_the_mcp_server_reach_peers_with_the_turn_environment(server: OptioServer,
                                                                          db: Database) -> None:
    turn = open_turn(db, 1, "alpha")
    env = agent_env(server, token_for(db, 1, "alpha", turn))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*OPTIO, "agent-msg", *args], env=env, capture_output=True, text=True, timeout=60)

    peers = cli("peers", "--json")
    assert peers.returncode == 0, peers.stderr
    assert [p["slug"] for p in json.loads(peers.stdout)["peers"]] == ["bravo"]
    sent = cli("send", "bravo", "from the cli")
    assert sent.returncode == 0 and "sent message" in sent.stdout, sent.stderr
    assert cli("broadcast", "cli to all").returncode == 0
    inbox = cli("inbox", "--json")
    assert inbox.returncode == 0 and "messages" in json.loads(inbox.stdout)
    lost = cli("send", "delta", "across workspaces")
    assert lost.returncode == 2 and "not found" in lost.stderr

    proc = subprocess.Popen([*OPTIO, "agent-msg", "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdin is not None and proc.stdout is not None

    def rpc(msg_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}) + "\n")
        proc.stdin.flush()
        return dict(json.loads(proc.stdout.readline()))

    try:
        assert rpc(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                     "clientInfo": {"name": "t", "version": "0"}})["result"]["serverInfo"]
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        tool = rpc(2, "tools/call", {"name": "send", "arguments": {"slug": "bravo", "text": "from mcp"}})["result"]
        assert tool["isError"] is False
        with db.read() as s:
            message = s.get(AgentMessage, tool["structuredContent"]["id"])
            assert message is not None and message.body == "from mcp" and message.sender == "agent:default/alpha"
        listed = rpc(3, "tools/call", {"name": "peers", "arguments": {}})["result"]
        assert [p["slug"] for p in listed["structuredContent"]["peers"]] == ["bravo"]
        close_turn(db, 1, "alpha", turn)
        ended = rpc(4, "tools/call", {"name": "inbox", "arguments": {}})["result"]
        assert ended["isError"] is True and "turn has ended" in ended["content"][0]["text"]
    finally:
        proc.stdin.close()
        proc.wait(10)
