"""`/api/events/stream`: the caller's workspace only, live, resumable from `Last-Event-ID` exactly once."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest
from tests.support.optio_server import OPTIO, OptioServer

pytestmark = pytest.mark.slow


def read_events(server: OptioServer, token: str, *, until: Any, headers: dict[str, str] | None = None,
                params: dict[str, Any] | None = None, timeout: float = 60.0) -> list[tuple[str, str | None, dict]]:
    """(event, id, data) from the stream until `until(collected)` is true."""
    out: list[tuple[str, str | None, dict]] = []
    hdrs = {"Authorization": f"Bearer {token}", **(headers or {})}
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", server.url + "/api/events/stream", headers=hdrs, params=params,
                      timeout=httpx.Timeout(10.0, read=timeout)) as res:
        assert res.status_code == 200, res.read()
        event, ident, data = "message", None, ""
        for line in res.iter_lines():
            if not line:
                if data:
                    out.append((event, ident, json.loads(data)))
                    if until(out):
                        return out
                event, ident, data = "message", None, ""
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("id:"):
                ident = line[3:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            assert time.monotonic() < deadline, out
    return out


def run_events(events: list[tuple[str, str | None, dict]], run_id: int) -> list[dict]:
    return [d for e, _i, d in events if e in ("state", "event") and d["kind"] == "job_run" and d["run_id"] == run_id]


def finished(run_id: int):
    return lambda out: any(d.get("to_state") == "completed" for d in run_events(out, run_id))


def test_stream_is_per_workspace_live_and_resumable(optio_server: OptioServer) -> None:
    s = optio_server
    s.api("POST", "/api/workspaces", json={"slug": "b"}).raise_for_status()
    bob = s.api("PUT", "/api/members/bob", headers={"X-Optio-Workspace": "b"},
                json={"role": "admin", "create_api_key": True}).json()["api_key"]
    job = {"name": "talk", "prompt_template": "p",
           "agent_config": {"command": "for i in 1 2 3; do echo line $i; sleep 0.2; done"}}
    s.api("POST", "/api/jobs", json=job).raise_for_status()
    s.api("POST", "/api/jobs", json=job, token=bob).raise_for_status()

    # Listen in workspace A from "now", while a run starts in B and then one in A.
    got: dict[str, Any] = {}

    def listen() -> None:
        got["a"] = read_events(s, s.admin_key, until=lambda out: "a_run" in got and finished(got["a_run"])(out))

    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(1.0)
    b_run = s.api("POST", "/api/jobs/talk/runs", json={}, token=bob).json()["id"]
    got["a_run"] = a_run = s.api("POST", "/api/jobs/talk/runs", json={}).json()["id"]
    listener.join(60)
    events = got["a"]
    assert events[0][0] == "hello"
    mine = run_events(events, a_run)
    assert [d["to_state"] for d in mine if d["from_state"] != d["to_state"]][-1] == "completed"
    assert any(e == "log" and d["run_id"] == a_run for e, _i, d in events), events
    # Nothing of workspace B, although B's run has the same kind and ran at the same time.
    b_ids = {d["event_id"] for d in run_events(read_events(s, bob, params={"after": 0},
                                                           until=lambda out: out[-1][0] == "live"), b_run)}
    assert b_ids, "workspace B's own stream shows its run"
    assert not [d for e, _i, d in events if e in ("state", "event") and d["event_id"] in b_ids]
    assert not [d for e, _i, d in events if e == "log" and d["run_id"] == b_run]

    # Resume: reconnect after the second event of A's run gets every later event exactly once, in order.
    all_a = [d["event_id"] for e, _i, d in read_events(s, s.admin_key, params={"after": 0},
                                                       until=lambda out: out[-1][0] == "live")
             if e in ("state", "event")]
    assert all_a == sorted(all_a) and len(all_a) == len(set(all_a))
    assert not set(all_a) & b_ids
    ids = [d["event_id"] for d in mine]
    cut = ids[1]
    resumed = read_events(s, s.admin_key, headers={"Last-Event-ID": str(cut)},
                          until=lambda out: out[-1][0] == "live")
    resumed_ids = [int(i) for e, i, _d in resumed if i is not None]
    assert resumed_ids == [i for i in all_a if i > cut]
    bad = s.api("GET", "/api/events/stream", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "Last-Event-ID"


def test_cli_events_replays_then_exits_and_follows(optio_server: OptioServer) -> None:
    s = optio_server
    s.cli("job", "create", "--name", "quick", "--prompt", "p", "--command", "echo hi", check=True)
    run = s.api("POST", "/api/jobs/quick/runs", json={}).json()["id"]
    s.wait_state(f"/api/runs/{run}", {"completed"})
    out = s.cli("events", "--after", "0", check=True).stdout
    assert f"job_run {run}  queued → running" in out
    assert "→ completed" in out
    as_json = [json.loads(line) for line in s.cli("events", "--after", "0", "--json", check=True).stdout.splitlines()]
    assert as_json and all(item["id"] for item in as_json if item["event"] in ("state", "event"))
    # --follow keeps streaming: it prints a run that starts after it connected. It is asked to replay the last
    # event first, so the line that replay prints says it is connected (a CLI slow to start misses nothing).
    ids = sorted(int(item["id"]) for item in as_json if item.get("id"))
    proc = subprocess.Popen([*OPTIO, "--url", s.url, "events", "--follow", "--no-activity", "--after", str(ids[-2])],
                            env=s.env(), stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True).start()
    try:
        lines.get(timeout=60)  # the replayed event
        second = s.api("POST", "/api/jobs/quick/runs", json={}).json()["id"]
        deadline = time.monotonic() + 30
        seen = ""
        while time.monotonic() < deadline and f"job_run {second}" not in seen:
            try:
                seen += lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
        assert f"job_run {second}" in seen, seen
    finally:
        proc.terminate()
        proc.wait(10)
