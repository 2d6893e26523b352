"""Blueprints end to end: saved repo-task definitions run by hand and by a signed webhook, on a real server
with a real git remote."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import httpx
import pytest
from tests.support.git_remote import make_remote
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow


def test_a_blueprint_spawns_repo_tasks_by_hand_and_from_a_webhook(optio_server: OptioServer,
                                                                   tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.api("POST", "/api/repos", json={"remote_url": str(remote), "name": "app"}).raise_for_status()
    undeclared = optio_server.api("POST", "/api/blueprints", json={
        "name": "bp", "repo": "app", "title_template": "Fix {{ISSUE}}", "prompt_template": "{{OTHER}}",
        "params_schema": {"ISSUE": {}}, "agent_config": {"command": "true"}})
    assert (undeclared.status_code, undeclared.json()["error"]["field"]) == (422, "prompt_template")
    created = optio_server.cli(
        "blueprint", "create", "--name", "bump", "--repo", "app", "--title", "Bump {{DEP}} to {{VERSION}}",
        "--prompt", "Bump {{DEP}}.{{#if payload.reason}} Why: {{payload.reason}}{{/if}}",
        "--command", "echo bumped > bump.txt", "--params-schema",
        '{"DEP": {}, "VERSION": {"default": "latest"}}', "--json", check=True)
    assert json.loads(created.stdout)["repo"] == "app"
    assert [b["name"] for b in json.loads(optio_server.cli("blueprint", "list", "--json", check=True).stdout)] == [
        "bump"]

    missing = optio_server.cli("blueprint", "run", "bump")
    assert missing.returncode != 0 and "DEP" in (missing.stdout + missing.stderr)
    task = json.loads(optio_server.cli("blueprint", "run", "bump", "-p", "DEP=httpx", "--json", check=True).stdout)
    assert (task["title"], task["prompt"]) == ("Bump httpx to latest", "Bump httpx.")
    opened = optio_server.wait_state(f"/api/repo-tasks/{task['id']}", {"pr_opened", "completed", "failed"},
                                     timeout=90)
    assert opened["state"] in ("pr_opened", "completed"), opened

    hook = json.loads(optio_server.cli("trigger", "create", "--target-type", "blueprint", "--target", "bump",
                                       "--type", "webhook", "--map", "DEP=$.package.name", "--map",
                                       "VERSION=$.package.version", "--json", check=True).stdout)
    body = json.dumps({"package": {"name": "rich", "version": "14.0"}, "reason": "CVE\nfix"}).encode()
    ts = str(int(time.time()))
    sig = hmac.new(hook["secret"].encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    res = httpx.post(hook["url"], content=body, timeout=30,
                     headers={"X-Optio-Timestamp": ts, "X-Optio-Signature": f"sha256={sig}"})
    assert res.status_code == 202, res.text
    assert res.json()["run_kind"] == "repo_task"
    spawned = optio_server.api("GET", f"/api/repo-tasks/{res.json()['run_id']}").json()
    assert spawned["title"] == "Bump rich to 14.0"
    assert spawned["prompt"] == "Bump rich. Why: CVE\nfix"

    optio_server.cli("blueprint", "delete", "bump", check=True)
    assert optio_server.api("GET", "/api/blueprints").json() == []
    assert optio_server.api("GET", "/api/triggers").json() == []
    assert optio_server.api("GET", f"/api/repo-tasks/{task['id']}").status_code == 200
