"""Notifications end to end: a real server sends signed events to a real receiver on 127.0.0.1 that answers
500 for a while; deliveries are retried with backoff and logged, and the loop does not wait for them."""

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
    """Answers 500 to the first `failures[path]` requests of a path, then 200; `/slow` sleeps 10 s first.
    Keeps every request."""

    def __init__(self) -> None:
        self.failures: dict[str, int] = {}
        self.requests: list[tuple[str, dict[str, str], bytes, int]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/slow":
                    time.sleep(10)
                left = owner.failures.get(self.path, 0)
                owner.failures[self.path] = left - 1
                status = 500 if left > 0 else 200
                owner.requests.append((self.path, dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_a_failing_receiver_gets_retried_and_logged_without_slowing_the_loop(tmp_path: Path,
                                                                              receiver: Receiver) -> None:
    server = OptioServer(tmp_path / "data", env={"OPTIO_OUTBOUND_ALLOWLIST": "127.0.0.1",
                                                 "OPTIO_NOTIFY_BACKOFF_S": "0.3",
                                                 "OPTIO_NOTIFY_TIMEOUT_S": "30"}).start()
    try:
        metadata = server.api("POST", "/api/notifications/webhooks", json={"url": "http://169.254.169.254/x"})
        assert (metadata.status_code, metadata.json()["error"]["field"]) == (422, "url")
        unknown = server.api("POST", "/api/notifications/webhooks", json={"url": receiver.url, "events": ["x"]})
        assert (unknown.status_code, unknown.json()["error"]["field"]) == (422, "events")
        hook = json.loads(server.cli("webhook", "create", "--url", receiver.url + "/optio", "--event",
                                     "job_run.finished", "--json", check=True).stdout)
        slack = server.api("POST", "/api/notifications/webhooks",
                           json={"url": receiver.url + "/slack", "format": "slack"}).json()
        assert slack["secret"] is None
        server.api("POST", "/api/notifications/webhooks", json={"url": receiver.url + "/slow"}).raise_for_status()
        server.api("POST", "/api/jobs", json={"name": "j", "prompt_template": "p",
                                              "agent_config": {"command": "true"}}).raise_for_status()

        receiver.failures = {"/optio": 3, "/slack": 1}
        started = time.monotonic()
        run = server.api("POST", "/api/jobs/j/runs", json={}).json()
        done = server.wait_state(f"/api/runs/{run['id']}", {"completed", "failed"}, timeout=30)
        loop_s = time.monotonic() - started
        assert done["state"] == "completed"
        # The run finished while its notifications were failing (and one receiver takes 10 s per call).
        assert loop_s < 8, loop_s

        deadline = time.monotonic() + 30
        log: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            log = json.loads(server.cli("webhook", "deliveries", str(hook["id"]), "--json", check=True).stdout)
            if log and log[0]["state"] == "delivered":
                break
            time.sleep(0.3)
        [delivery] = log
        assert delivery["state"] == "delivered" and delivery["event"] == "job_run.finished"
        assert delivery["attempts"] == 4 and delivery["last_status"] == 200
        assert delivery["payload"]["id"] == run["id"] and delivery["payload"]["state"] == "completed"

        optio_calls = [r for r in receiver.requests if r[0] == "/optio"]
        assert [r[3] for r in optio_calls] == [500, 500, 500, 200]
        for _path, headers, body, _status in optio_calls:
            ts = headers["X-Optio-Timestamp"]
            expected = hmac.new(hook["secret"].encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            assert headers["X-Optio-Signature"] == f"sha256={expected}"
            assert headers["X-Optio-Event"] == "job_run.finished"
        slack_bodies = [json.loads(r[2]) for r in receiver.requests if r[0] == "/slack" and r[3] == 200]
        assert slack_bodies and set(slack_bodies[0]) == {"text"} and f"#{run['id']}" in slack_bodies[0]["text"]
        listing = server.cli("webhook", "list", check=True).stdout
        assert receiver.url in listing
    finally:
        server.stop()
