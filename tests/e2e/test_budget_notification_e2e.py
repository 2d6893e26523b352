"""A run stopped for spending its cost budget tells the receivers that asked for `budget.exceeded`: a real
server, a script agent that reports a cost over its job's budget, and a real receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow


class Receiver:
    """Answers 200 and keeps every request (path, headers, body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.arrived = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with owner.arrived:
                    owner.requests.append((self.path, dict(self.headers), body))
                    owner.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, path: str, event: str, timeout: float = 30) -> tuple[dict[str, str], bytes]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for p, headers, body in self.requests:
                    if p == path and headers.get("X-Optio-Event") == event:
                        return headers, body
                left = deadline - time.monotonic()
                assert left > 0, f"no {event} at {path}: {[(p, h.get('X-Optio-Event')) for p, h, _ in self.requests]}"
                self.arrived.wait(left)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_a_run_over_its_budget_is_stopped_and_budget_exceeded_is_delivered(tmp_path: Path,
                                                                           receiver: Receiver) -> None:
    server = OptioServer(tmp_path / "data", env={"OPTIO_OUTBOUND_ALLOWLIST": "127.0.0.1",
                                                 "OPTIO_NOTIFY_BACKOFF_S": "0.3"}).start()
    try:
        budget_hook = json.loads(server.cli("webhook", "create", "--url", receiver.url + "/budget", "--event",
                                            "budget.exceeded", "--json", check=True).stdout)
        finished_hook = server.api("POST", "/api/notifications/webhooks", json={
            "url": receiver.url + "/finished", "events": ["job_run.finished"]}).json()
        # Reports $0.75 of usage, then would work on for a minute: the budget stops it first.
        usage = '{"type":"usage","input_tokens":10,"output_tokens":5,"cost_usd":0.75}'
        server.api("POST", "/api/jobs", json={
            "name": "spender", "prompt_template": "spend", "budget_usd": 0.5,
            "agent_config": {"command": f"echo '{usage}'; sleep 60"}}).raise_for_status()
        run = server.api("POST", "/api/jobs/spender/runs", json={}).json()
        done = server.wait_state(f"/api/runs/{run['id']}", {"completed", "failed"}, timeout=40)
        assert done["state"] == "failed" and "budget exceeded" in (done["error"] or ""), done

        headers, body = receiver.wait_for("/budget", "budget.exceeded")
        payload = json.loads(body)
        assert payload["event"] == "budget.exceeded"
        assert (payload["kind"], payload["id"], payload["state"]) == ("job_run", run["id"], "failed")
        assert payload["spent_usd"] == pytest.approx(0.75) and payload["budget_usd"] == pytest.approx(0.5)
        assert "budget exceeded" in payload["reason"]
        ts = headers["X-Optio-Timestamp"]
        expected = hmac.new(budget_hook["secret"].encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert headers["X-Optio-Signature"] == f"sha256={expected}"

        # The receiver of finished runs hears that the run finished, not the budget event it did not ask for.
        receiver.wait_for("/finished", "job_run.finished")
        assert not [r for r in receiver.requests if r[0] == "/finished" and r[1]["X-Optio-Event"] != "job_run.finished"]
        assert not [r for r in receiver.requests if r[0] == "/budget" and r[1]["X-Optio-Event"] != "budget.exceeded"]
        log = json.loads(server.cli("webhook", "deliveries", str(budget_hook["id"]), "--json", check=True).stdout)
        assert [(d["event"], d["state"]) for d in log] == [("budget.exceeded", "delivered")]
        assert finished_hook["id"] != budget_hook["id"]
    finally:
        server.stop()
