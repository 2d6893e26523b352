"""Triggers end to end: a real `optio serve`, the real CLI, real HTTP: signed webhooks, the params schema on
start, and a schedule whose missed due times fire once when the server comes back."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow


def _signed(secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Optio-Timestamp": stamp, "X-Optio-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def _run_count(server: OptioServer) -> int:
    return len(server.api("GET", "/api/runs").json()["items"])


def test_a_signed_webhook_starts_a_run_and_bad_calls_start_nothing(optio_server: OptioServer) -> None:
    job = optio_server.api("POST", "/api/jobs", json={
        "name": "pager", "agent_config": {"command": "echo paged"},
        "prompt_template": "page {{HOST}} about {{payload.alert.name}}{{#if payload.urgent}} NOW{{/if}}",
        "params_schema": {"HOST": {"description": "who is on fire"}}})
    assert job.status_code == 201, job.text
    res = optio_server.cli("trigger", "create", "--target-type", "job", "--target", "pager", "--type", "webhook",
                           "--map", "HOST=$.host", "--json", check=True)
    created = json.loads(res.stdout)
    assert set(created) >= {"id", "url", "secret"}
    assert created["url"] == f"{optio_server.url}/api/hooks/{created['id']}"
    # The secret is shown once: never again in a listing or a read.
    assert created["secret"] not in optio_server.cli("trigger", "list", "--json", check=True).stdout
    assert "secret" not in optio_server.api("GET", f"/api/triggers/{created['id']}").json()

    body = json.dumps({"host": "db-1", "alert": {"name": "disk {{HOST}} full"}, "urgent": True}).encode()
    ok = httpx.post(created["url"], content=body, headers=_signed(created["secret"], body), timeout=30)
    assert ok.status_code == 202, ok.text
    run = optio_server.wait_state(f"/api/runs/{ok.json()['run_id']}", {"completed", "failed"})
    assert run["state"] == "completed"
    assert run["prompt"] == "page db-1 about disk {{HOST}} full NOW"

    wrong = httpx.post(created["url"], content=body, headers=_signed("whsec_not-the-secret", body), timeout=30)
    old = httpx.post(created["url"], content=body,
                     headers=_signed(created["secret"], body, ts=int(time.time()) - 600), timeout=30)
    unsigned = httpx.post(created["url"], content=body, timeout=30)
    big = b'{"host": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    huge = httpx.post(created["url"], content=big, headers=_signed(created["secret"], big), timeout=30)
    assert [wrong.status_code, old.status_code, unsigned.status_code, huge.status_code] == [401, 401, 401, 413]
    assert _run_count(optio_server) == 1
    fires = optio_server.api("GET", f"/api/triggers/{created['id']}/fires").json()
    assert [(f["source"], f["run_id"]) for f in fires] == [("webhook", run["id"])]


def test_manual_trigger_pause_resume_delete_through_the_cli(optio_server: OptioServer) -> None:
    optio_server.cli("job", "create", "--name", "report", "--command", "true", "--prompt", "{{N}} lines",
                     "--params-schema", '{"N": {"type": "integer", "default": 5}}', check=True)
    assert optio_server.api("GET", "/api/jobs/report").json()["params_schema"] == {"N": {"type": "integer",
                                                                                        "default": 5,
                                                                                        "description": ""}}
    created = json.loads(optio_server.cli("trigger", "create", "--target", "report", "--type", "manual",
                                          "-p", "N=7", "--json", check=True).stdout)
    assert created["params"] == {"N": 7}
    fired = json.loads(optio_server.cli("trigger", "fire", str(created["id"]), "--json", check=True).stdout)
    assert optio_server.api("GET", f"/api/runs/{fired['run_id']}").json()["prompt"] == "7 lines"
    optio_server.cli("trigger", "pause", str(created["id"]), check=True)
    refused = optio_server.cli("trigger", "fire", str(created["id"]))
    assert refused.returncode != 0 and "paused" in (refused.stdout + refused.stderr)
    optio_server.cli("trigger", "resume", str(created["id"]), check=True)
    bad = optio_server.cli("trigger", "fire", str(created["id"]), "-p", "N=many")
    assert bad.returncode != 0 and "N" in (bad.stdout + bad.stderr)
    optio_server.cli("trigger", "delete", str(created["id"]), check=True)
    assert optio_server.api("GET", "/api/triggers").json() == []
    assert _run_count(optio_server) == 1


def test_the_params_schema_is_checked_on_save_and_on_every_start(optio_server: OptioServer) -> None:
    undeclared = optio_server.api("POST", "/api/jobs", json={
        "name": "x", "prompt_template": "{{A}} and {{B}}", "params_schema": {"A": {}},
        "agent_config": {"command": "true"}})
    assert undeclared.status_code == 422
    assert undeclared.json()["error"]["field"] == "prompt_template"
    bad_default = optio_server.api("POST", "/api/jobs", json={
        "name": "x", "prompt_template": "{{A}}", "params_schema": {"A": {"type": "integer", "default": "ten"}},
        "agent_config": {"command": "true"}})
    assert (bad_default.status_code, bad_default.json()["error"]["field"]) == (422, "params_schema.A.default")
    optio_server.api("POST", "/api/jobs", json={
        "name": "typed", "agent_config": {"command": "true"},
        "prompt_template": "{{N}} {{#if DRY}}dry {{/if}}{{LEVEL}}",
        "params_schema": {"N": {"type": "integer"}, "DRY": {"type": "boolean", "default": False},
                          "LEVEL": {"type": "enum", "choices": ["low", "high"], "default": "low"}}}).raise_for_status()
    for params, field in [({"N": "ten"}, "params.N"), ({"N": 1, "DRY": "perhaps"}, "params.DRY"),
                          ({"N": 1, "LEVEL": "mid"}, "params.LEVEL"), ({}, "params.N"), ({"N": 1, "X": 1}, "params.X")]:
        res = optio_server.api("POST", "/api/jobs/typed/runs", json={"params": params})
        assert res.status_code == 422, (params, res.text)
        assert res.json()["error"]["field"] == field, params
    ok = optio_server.api("POST", "/api/jobs/typed/runs", json={"params": {"N": 3, "DRY": True}})
    assert ok.status_code == 201 and ok.json()["prompt"] == "3 dry low"
    via_cli = optio_server.cli("job", "run", "typed", "-p", "N=4", "-p", "DRY=false", "--json", check=True)
    assert json.loads(via_cli.stdout)["prompt"] == "4 low"
    assert _run_count(optio_server) == 2


def test_due_times_missed_while_down_fire_once_on_start(tmp_path: Path) -> None:
    server = OptioServer(tmp_path / "data", env={"OPTIO_TRIGGER_TICK_S": "0.2"}).start()
    try:
        server.api("POST", "/api/jobs", json={"name": "tick", "agent_config": {"command": "true"},
                                               "prompt_template": "tick"}).raise_for_status()
        created = server.api("POST", "/api/triggers", json={"type": "schedule", "target": "tick",
                                                            "cron": "0 3 * * *", "timezone": "Asia/Tokyo"}).json()
        assert created["next_due_at"] is not None
        server.stop()
        # While the server was down, ten days of 03:00 Tokyo passed.
        ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).replace(tzinfo=None).isoformat(" ")
        with sqlite3.connect(tmp_path / "data" / "optio.db") as db:
            db.execute("UPDATE triggers SET last_due_at = ? WHERE id = ?", (ten_days_ago, created["id"]))
        server.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _run_count(server) == 0:
            time.sleep(0.2)
        time.sleep(1.5)  # several more ticks: none may fire again
        assert _run_count(server) == 1
        server.restart()
        time.sleep(1.5)
        assert _run_count(server) == 1
    finally:
        server.stop()


def test_jobs_update_clone_and_delete(optio_server: OptioServer) -> None:
    optio_server.cli("job", "create", "--name", "base", "--command", "true", "--prompt", "hello {{WHO}}", check=True)
    first = optio_server.api("POST", "/api/jobs/base/runs", json={"params": {"WHO": "a"}}).json()
    # A template reading a name its schema does not declare is refused on update too.
    bad = optio_server.api("PATCH", "/api/jobs/base", json={"prompt_template": "{{WHO}} {{WHEN}}"})
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "prompt_template")
    res = optio_server.cli("job", "update", "base", "--prompt", "hi {{WHO}} at {{WHEN}}", "--params-schema",
                           '{"WHO": {}, "WHEN": {"default": "noon"}}', "--json", check=True)
    assert json.loads(res.stdout)["prompt_template"] == "hi {{WHO}} at {{WHEN}}"
    again = optio_server.api("POST", "/api/jobs/base/runs", json={"params": {"WHO": "b"}}).json()
    assert again["prompt"] == "hi b at noon"
    assert optio_server.api("GET", f"/api/runs/{first['id']}").json()["prompt"] == "hello a"

    clone = json.loads(optio_server.cli("job", "clone", "base", "--name", "copy", "--json", check=True).stdout)
    assert clone["prompt_template"] == "hi {{WHO}} at {{WHEN}}" and clone["id"] != json.loads(res.stdout)["id"]
    taken = optio_server.api("POST", "/api/jobs/base/clone", json={"name": "copy"})
    assert taken.status_code == 409
    renamed = optio_server.api("PATCH", "/api/jobs/copy", json={"name": "base"})
    assert renamed.status_code == 409

    optio_server.wait_state(f"/api/runs/{again['id']}", {"completed"})
    optio_server.api("POST", "/api/triggers", json={"type": "manual", "target": "base"}).raise_for_status()
    optio_server.cli("job", "delete", "base", check=True)
    assert [j["name"] for j in optio_server.api("GET", "/api/jobs").json()] == ["copy"]
    assert optio_server.api("GET", "/api/triggers").json() == []
    assert optio_server.api("GET", "/api/jobs/base").status_code == 404


def test_a_job_with_an_unfinished_run_is_not_deleted(optio_server: OptioServer) -> None:
    optio_server.api("POST", "/api/jobs", json={"name": "slow", "prompt_template": "p",
                                                 "agent_config": {"command": "sleep 30"}}).raise_for_status()
    run = optio_server.api("POST", "/api/jobs/slow/runs", json={}).json()
    res = optio_server.api("DELETE", "/api/jobs/slow")
    assert res.status_code == 409 and "unfinished" in res.json()["error"]["message"]
    optio_server.api("POST", f"/api/runs/{run['id']}/cancel").raise_for_status()
