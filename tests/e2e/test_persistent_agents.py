"""Persistent agents end to end on a real server: the script agent, real processes, the real CLI and API.

The script agents record what they saw in their own workspace directory (which sticky and always-on agents
keep across turns), written by the agent process itself rather than read back from Optio's records: the
start and end time of every turn, and the message ids of the envelopes in every prompt.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.support.optio_server import OptioServer

from optio.domain.agent_messages import parse_envelopes
from optio.services import persistent_agents as svc
from optio.store.db import Database

pytestmark = pytest.mark.slow

# Records the turn's start and end (ns) and the ids of the envelopes between the markers of its prompt.
RECORD_IDS = ("sed -n '/^=== BEGIN OPTIO MESSAGES/,/^=== END OPTIO MESSAGES/p' \"$OPTIO_PROMPT_FILE\" "
              "| grep -o '\"id\": [0-9]*' | cut -d' ' -f2 | sed \"s/^/$OPTIO_AGENT_TURN /\" >> ids.log")
RECORDER = (f"echo \"start $(date +%s%N)\" >> times.log; {RECORD_IDS}; sleep 0.1; "
            "echo \"end $(date +%s%N)\" >> times.log")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OptioServer]:
    srv = OptioServer(tmp_path / "data").start()
    try:
        yield srv
    finally:
        srv.stop()


def agent(server: OptioServer, slug: str) -> dict[str, Any]:
    res = server.api("GET", f"/api/agents/{slug}")
    assert res.status_code == 200, res.text
    return dict(res.json())


def wait_for(server: OptioServer, slug: str, check: Any, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = agent(server, slug)
        if check(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"agent {slug} never got there; last: {last}\n{server.log()[-4000:]}")


def settled(a: dict[str, Any]) -> bool:
    return a["state"] == "idle" and a["pending_messages"] == 0 and a["control_intent"] is None


def workspace_of(server: OptioServer, slug: str) -> Path:
    return server.data_dir / "agents" / str(agent(server, slug)["id"]) / "workspace"


def turns(server: OptioServer, slug: str) -> list[dict[str, Any]]:
    rows = server.api("GET", f"/api/agents/{slug}/turns", params={"limit": 500}).json()
    return sorted(rows, key=lambda t: t["number"])


def messages(server: OptioServer, slug: str) -> list[dict[str, Any]]:
    return list(server.api("GET", f"/api/agents/{slug}/messages", params={"limit": 500}).json())


def create(server: OptioServer, slug: str, command: str, *extra: str) -> None:
    res = server.cli("agent", "create", "--slug", slug, "--agent", "script", "--command", command, *extra)
    assert res.returncode == 0, res.stdout + res.stderr


def check_prompts_hold_exactly_what_they_drained(server: OptioServer, slug: str) -> None:
    for t in turns(server, slug):
        detail = server.api("GET", f"/api/agents/{slug}/turns/{t['number']}").json()
        assert [e["id"] for e in parse_envelopes(detail["prompt"])] == t["message_ids"], t


def test_a_hundred_concurrent_messages_are_each_processed_once_in_turns_that_never_overlap(
        server: OptioServer) -> None:
    create(server, "inbox", RECORDER, "--lifecycle", "always-on")

    def send(i: int) -> int:
        res = server.api("POST", "/api/agents/inbox/messages", json={"body": f"message {i}"})
        assert res.status_code == 201, res.text
        return int(res.json()["id"])

    with ThreadPoolExecutor(max_workers=10) as pool:
        sent = list(pool.map(send, range(100)))
    assert len(set(sent)) == 100
    final = wait_for(server, "inbox", settled, timeout=180)

    inbox = messages(server, "inbox")
    assert sorted(m["id"] for m in inbox) == sorted(sent)
    assert all(m["processed_by_turn"] is not None for m in inbox)
    done = turns(server, "inbox")
    assert final["turn_count"] == len(done) and all(t["outcome"] == "succeeded" for t in done)
    drained = [i for t in done for i in t["message_ids"]]
    assert sorted(drained) == sorted(sent)  # every message in exactly one turn
    by_id = {t["id"]: t for t in done}
    assert all(m["id"] in by_id[m["processed_by_turn"]]["message_ids"] for m in inbox)
    check_prompts_hold_exactly_what_they_drained(server, "inbox")

    # What the agent process itself saw: each id once, in the turn that drained it, oldest first.
    work = workspace_of(server, "inbox")
    seen = [line.split() for line in (work / "ids.log").read_text().splitlines()]
    assert Counter(int(i) for _, i in seen) == Counter(sent)
    for t in done:
        assert [int(i) for n, i in seen if int(n) == t["number"]] == t["message_ids"]
        assert t["message_ids"] == sorted(t["message_ids"])
    # Turns never overlap: each one ended before the next began.
    marks = [line.split() for line in (work / "times.log").read_text().splitlines()]
    assert [m[0] for m in marks] == ["start", "end"] * len(done)
    spans = [(int(marks[i][1]), int(marks[i + 1][1])) for i in range(0, len(marks), 2)]
    assert all(end_a < start_b for (_, end_a), (start_b, _) in itertools.pairwise(spans))


def test_three_failed_turns_fail_the_agent_and_resume_brings_it_back(server: OptioServer) -> None:
    create(server, "flaky", "cat > /dev/null; exit 3", "--lifecycle", "on-demand")
    first = server.cli("agent", "send", "flaky", "first")
    assert first.returncode == 0, first.stderr
    server.cli("agent", "send", "flaky", "second", check=True)
    failed = wait_for(server, "flaky", lambda a: a["state"] == "failed", timeout=120)
    assert failed["consecutive_failures"] == 3 and failed["pending_messages"] == 2
    shown = json.loads(server.cli("agent", "show", "flaky", "--json", check=True).stdout)
    assert {k: shown[k] for k in ("state", "turn_count", "pending_messages", "consecutive_failures")} == {
        "state": "failed", "turn_count": 3, "pending_messages": 2, "consecutive_failures": 3}
    done = turns(server, "flaky")
    assert [t["outcome"] for t in done] == ["failed"] * 3
    assert all(m["processed_by_turn"] is None for m in messages(server, "flaky"))
    # Failed stays failed: a new message or a restart does not move it; only resume does.
    server.cli("agent", "send", "flaky", "third", check=True)
    server.cli("agent", "restart", "flaky", check=True)
    time.sleep(1.5)
    assert agent(server, "flaky")["state"] == "failed" and agent(server, "flaky")["turn_count"] == 3

    server.cli("agent", "update", "flaky", "--command", RECORDER, check=True)
    assert agent(server, "flaky")["agent_config"] == {"command": RECORDER}
    server.cli("agent", "resume", "flaky", check=True)
    back = wait_for(server, "flaky", settled)
    assert back["consecutive_failures"] == 0
    last = turns(server, "flaky")[-1]
    assert last["outcome"] == "succeeded" and len(last["message_ids"]) == 3
    assert all(m["processed_by_turn"] == last["id"] for m in messages(server, "flaky"))
    check_prompts_hold_exactly_what_they_drained(server, "flaky")
    listed = server.cli("agent", "turns", "flaky", check=True).stdout
    assert "succeeded" in listed and "failed" in listed


def test_a_server_killed_during_a_turn_loses_no_message_and_processes_none_twice(tmp_path: Path) -> None:
    srv = OptioServer(tmp_path / "data").start()
    try:
        # The turn waits for a file the test writes only after the server was killed and restarted.
        create(srv, "durable", f"echo $OPTIO_AGENT_TURN >> started.log; "
                               f"while [ ! -f release ]; do sleep 0.05; done; {RECORD_IDS}", "--lifecycle", "sticky")
        sent = [srv.api("POST", "/api/agents/durable/messages", json={"body": f"m{i}"}).json()["id"]
                for i in range(3)]
        work = workspace_of(srv, "durable")
        deadline = time.monotonic() + 60
        while not (work / "started.log").exists():
            assert time.monotonic() < deadline, srv.log()[-3000:]
            time.sleep(0.05)
        assert agent(srv, "durable")["state"] == "running"
        srv.kill9()
        srv.start()
        more = srv.api("POST", "/api/agents/durable/messages", json={"body": "after the restart"}).json()["id"]
        (work / "release").write_text("go")
        wait_for(srv, "durable", settled, timeout=120)
        inbox = messages(srv, "durable")
        assert sorted(m["id"] for m in inbox) == sorted([*sent, more])
        assert all(m["processed_by_turn"] is not None for m in inbox)
        seen = Counter(int(line.split()[1]) for line in (work / "ids.log").read_text().splitlines())
        assert seen == Counter([*sent, more])  # each processed exactly once by the agent itself
        done = turns(srv, "durable")
        assert all(t["state"] in ("succeeded", "failed") for t in done)
        check_prompts_hold_exactly_what_they_drained(srv, "durable")
    finally:
        srv.stop()


def test_a_daily_budget_pauses_the_agent_and_tells_the_agent_that_sent_the_work(server: OptioServer) -> None:
    # Turn 1 spends under the budget. Turn 2 reports a cost over it while it still runs: the budget stops it
    # there (its message stays pending), pauses the agent and tells the agent that sent that message.
    usage = ('cat > /dev/null; if [ "$OPTIO_AGENT_TURN" = 1 ]; then c=0.004; else c=0.02; fi; '
             'echo "{\\"type\\": \\"usage\\", \\"input_tokens\\": 10, \\"output_tokens\\": 5, \\"cost_usd\\": $c}"; '
             'if [ "$OPTIO_AGENT_TURN" = 2 ]; then sleep 60; fi')
    create(server, "pricey", usage, "--max-cost-usd", "0.01", "--lifecycle", "on-demand")
    create(server, "boss", "cat > /dev/null")
    hook = server.api("POST", "/api/notifications/webhooks", json={
        "url": "http://93.184.216.34/optio-budget", "events": ["budget.exceeded"]}).json()
    server.cli("agent", "send", "pricey", "first job", check=True)
    first = wait_for(server, "pricey", lambda a: a["turn_count"] == 1 and a["state"] == "idle")
    assert first["cost_usd"] == pytest.approx(0.004) and first["pending_messages"] == 0
    assert turns(server, "pricey")[0]["cost_usd"] == pytest.approx(0.004)
    db = Database(f"sqlite:///{server.data_dir / 'optio.db'}")
    try:
        svc.send_from_agent(db, 1, "boss", "pricey", "one more, please")
    finally:
        db.engine.dispose()
    paused = wait_for(server, "pricey", lambda a: a["state"] == "paused")
    assert paused["paused_reason"] == "budget_exceeded" and paused["pending_messages"] == 1
    assert paused["turn_count"] == 2 and paused["cost_usd"] == pytest.approx(0.024)
    told = wait_for(server, "boss", lambda a: a["turn_count"] >= 1 and settled(a))
    assert told["state"] == "idle"
    note = [m for m in messages(server, "boss") if m["sender"] == "system:budget"]
    assert len(note) == 1 and "pricey" in note[0]["body"]
    events = [e["event"] for e in server.api("GET", "/api/agents/pricey/events").json()]
    assert "budget_exceeded" in events
    deliveries = server.api("GET", f"/api/notifications/webhooks/{hook['id']}/deliveries").json()
    assert [d["event"] for d in deliveries] == ["budget.exceeded"]
    # A bigger budget and a resume: the waiting message is handled.
    server.api("PATCH", "/api/agents/pricey", json={"max_cost_usd": 1.0}).raise_for_status()
    server.cli("agent", "resume", "pricey", check=True)
    done = wait_for(server, "pricey", lambda a: a["turn_count"] == 3 and settled(a))
    assert done["pending_messages"] == 0


def test_sticky_agents_keep_their_memory_and_on_demand_agents_start_cold(server: OptioServer) -> None:
    # Each turn names a session (as a vendor CLI would) and notes the one it was asked to resume.
    remember = ("cat > /dev/null; echo turn-$OPTIO_AGENT_TURN >> memory.md; cat memory.md; "
                "echo \"resumed:${OPTIO_AGENT_RESUME_SESSION:-none}\" > resumed.txt; "
                "echo '{\"type\": \"session\", \"session_id\": \"s-'$OPTIO_AGENT_TURN'\"}'")
    create(server, "sticky", remember, "--lifecycle", "sticky")
    create(server, "cold", remember, "--lifecycle", "on-demand")
    for slug in ("sticky", "cold"):
        for i in range(2):
            server.cli("agent", "send", slug, f"note {i}", check=True)
            wait_for(server, slug, lambda a, n=i + 1: a["turn_count"] == n and settled(a))
    assert (workspace_of(server, "sticky") / "memory.md").read_text().split() == ["turn-1", "turn-2"]
    assert (workspace_of(server, "cold") / "memory.md").read_text().split() == ["turn-2"]
    # Sessions: the sticky agent's second turn resumed the first one's; the on-demand one started afresh.
    assert (workspace_of(server, "sticky") / "resumed.txt").read_text().strip() == "resumed:s-1"
    assert (workspace_of(server, "cold") / "resumed.txt").read_text().strip() == "resumed:none"
    sticky_turns, cold_turns = turns(server, "sticky"), turns(server, "cold")
    assert [(t["session_id"], t["resumed_session_id"]) for t in sticky_turns] == [("s-1", None), ("s-2", "s-1")]
    assert [(t["session_id"], t["resumed_session_id"]) for t in cold_turns] == [("s-1", None), ("s-2", None)]
    assert agent(server, "sticky")["session_id"] == "s-2"
    page = server.api("GET", "/api/agents/sticky/turns/2/logs").json()
    assert page["done"] and [line["text"] for line in page["items"] if line["stream"] == "stdout"] == [
        "turn-1", "turn-2"]
    streamed = server.cli("agent", "logs", "sticky", "2", "--follow", check=True).stdout.split("\n")
    assert streamed[:2] == ["turn-1", "turn-2"] and "session s-2" in streamed[2]


def test_named_secrets_reach_every_turn_and_never_its_logs(server: OptioServer) -> None:
    token = "agent-tok-51c0ffee9d"
    server.cli("secret", "set", "AGENT_TOKEN", "--value", token, check=True)
    server.cli("secret", "set", "OTHER_SECRET", "--value", "other-val-77aa", check=True)
    create(server, "keyed", "cat > /dev/null; echo \"token=$AGENT_TOKEN other=${OTHER_SECRET:-unset}\"; "
                            "printf %s \"$AGENT_TOKEN\" | rev > reversed.txt", "--secret", "AGENT_TOKEN",
           "--lifecycle", "sticky")
    refused = server.cli("agent", "create", "--slug", "nokey", "--command", "true", "--secret", "MISSING")
    assert refused.returncode != 0 and "MISSING" in refused.stdout + refused.stderr
    for i in range(2):
        server.cli("agent", "send", "keyed", f"go {i}", check=True)
        wait_for(server, "keyed", lambda a, n=i + 1: a["turn_count"] == n and settled(a))
    assert (workspace_of(server, "keyed") / "reversed.txt").read_text() == token[::-1]
    for n in (1, 2):
        lines = [x["text"] for x in server.api("GET", f"/api/agents/keyed/turns/{n}/logs").json()["items"]]
        assert lines and all(token not in line for line in lines), lines
        assert any("other=unset" in line for line in lines)  # only the secret the agent names
