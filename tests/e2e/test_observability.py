"""Prometheus metrics and OpenTelemetry traces from a real `optio serve`: a real job and a real repo loop
(red CI, resume, merge on the local forge) move the counters; spans reach a real OTLP/HTTP receiver on
127.0.0.1 that decodes them with OpenTelemetry's own protobuf messages."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.git_remote import make_remote
from tests.support.optio_server import OptioServer

TOKEN = "scrape-token-0123456789"
CI_NEEDS_OK = (
    'c=$(cat fixed.txt 2>/dev/null); if [ "$c" = ok ]; then echo pass; else echo "EXPECTED ok GOT $c"; exit 1; fi'
)
AGENT_READS_CI = 'if grep -q "EXPECTED ok" "$OPTIO_PROMPT_FILE"; then echo ok > fixed.txt; else echo no > fixed.txt; fi'


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of `name` over every sample whose labels include `labels`."""
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OptioServer]:
    srv = OptioServer(tmp_path / "data", env={"OPTIO_METRICS_TOKEN": TOKEN}).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_metrics_need_the_token_or_an_admin_key(server: OptioServer) -> None:
    assert server.api("GET", "/metrics", token="").status_code == 401
    assert server.api("GET", "/metrics", token="not-the-token").status_code == 401
    ok = server.api("GET", "/metrics", token=TOKEN)
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain")
    assert server.api("GET", "/metrics").status_code == 200  # the bootstrap admin's key
    server.api("PUT", "/api/members/viewer1", json={"role": "viewer", "create_api_key": True})
    viewer = server.api("PUT", "/api/members/viewer2", json={"role": "viewer", "create_api_key": True}).json()
    assert server.api("GET", "/metrics", token=viewer["api_key"]).status_code == 403


def test_a_job_and_a_repo_loop_move_the_counters(server: OptioServer, tmp_path: Path) -> None:
    server.cli("job", "create", "--name", "three", "--prompt", "p", "--command", "echo a; echo b; echo c", check=True)
    run = json.loads(server.cli("job", "run", "three", "--wait", "--json", check=True).stdout)
    assert run["state"] == "completed"
    remote = make_remote(tmp_path)
    server.cli("repo", "add", str(remote), "--name", "demo", "--ci-command", CI_NEEDS_OK, check=True)
    res = server.cli("task", "new", "--repo", "demo", "--title", "green", "--prompt", "fix", "--command",
                     AGENT_READS_CI, "--wait", "--json", timeout=120)
    task = json.loads(res.stdout)
    assert task["state"] == "completed", (task, server.log()[-3000:])

    found = samples(server.api("GET", "/metrics", token=TOKEN).text)
    assert value(found, "optio_runs", kind="job_run", state="completed") == 1
    assert value(found, "optio_runs", kind="repo_task", state="completed") == 1
    assert value(found, "optio_agent_attempts_total", kind="job_run") == 1
    assert value(found, "optio_agent_attempts_total", kind="repo_task") == 2
    assert value(found, "optio_resumes_total", kind="repo_task") == 1
    assert value(found, "optio_agent_exits_total", kind="job_run", classification="success") == 1
    assert value(found, "optio_log_lines_ingested_total") >= 3
    assert value(found, "optio_decisions_total", kind="job_run", action="start", outcome="applied") == 1
    assert value(found, "optio_decisions_total", kind="repo_task", outcome="applied") >= 4
    assert value(found, "optio_ci_seconds_count", result="failing") == 1
    assert value(found, "optio_ci_seconds_count", result="passing") == 1
    assert value(found, "optio_merge_seconds_count", forge="local") == 1
    assert ("optio_queue_depth", ()) in found and ("optio_queue_oldest_due_age_seconds", ()) in found


class _Receiver(BaseHTTPRequestHandler):
    spans: list[tuple[str, dict[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                service = {a.key: a.value.string_value for a in resource.resource.attributes}
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        attrs = {a.key: (a.value.string_value or str(a.value.int_value)) for a in span.attributes}
                        type(self).spans.append((span.name, {**service, **attrs}))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_traces_reach_an_otlp_receiver(tmp_path: Path) -> None:
    _Receiver.spans = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    server = OptioServer(tmp_path / "data", env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                                                 "OTEL_BSP_SCHEDULE_DELAY": "100",
                                                 "OTEL_SERVICE_NAME": "optio-test"}).start()
    try:
        server.cli("job", "create", "--name", "traced", "--prompt", "p", "--command", "echo hi", check=True)
        run = json.loads(server.cli("job", "run", "traced", "--wait", "--json", check=True).stdout)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            names = {name for name, _ in _Receiver.spans}
            if "reconcile" in names and any("/api/jobs" in name for name in names):
                break
            time.sleep(0.2)
        spans = list(_Receiver.spans)
    finally:
        server.stop()
        receiver.shutdown()
    reconciles = [attrs for name, attrs in spans if name == "reconcile"]
    assert any(a.get("optio.run.kind") == "job_run" and a.get("optio.run.id") == str(run["id"]) for a in reconciles)
    assert all(a.get("service.name") == "optio-test" for _, a in spans)
    assert any(name.startswith("POST /api/jobs") for name, _ in spans), sorted({n for n, _ in spans})
    assert not any("/api/health" in name for name, _ in spans)
