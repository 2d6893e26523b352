"""Schemathesis over the whole OpenAPI spec against a live, authenticated `optio serve`.

Checks: no 5xx, every status code documented, every body matching its schema, content types as
documented. Path parameters are pinned to real resources (a job and its run, a repo with a task whose
PR is open, a ticket) so the cases reach the handlers instead of stopping at 404; everything else is generated.
The number of operations and cases is printed (run with -s to see it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.git_remote import make_remote
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
MAX_EXAMPLES = int(os.environ.get("OPTIO_FUZZ_EXAMPLES", "40"))


def seed(server: OptioServer, tmp: Path) -> dict[str, str]:
    job = server.api("POST", "/api/jobs", json={"name": "fuzzjob", "prompt_template": "p",
                                                "agent_config": {"command": "echo hi"}}).json()
    run = server.api("POST", "/api/jobs/fuzzjob/runs", json={}).json()
    server.wait_state(f"/api/runs/{run['id']}", {"completed"})
    repo = server.api("POST", "/api/repos", json={"remote_url": str(make_remote(tmp)), "name": "fuzzrepo",
                                                  "require_approval": True}).json()
    task = server.api("POST", "/api/repo-tasks", json={"repo": "fuzzrepo", "title": "t", "prompt": "p",
                                                       "agent_config": {"command": "echo x > x.txt"}}).json()
    opened = server.wait_state(f"/api/repo-tasks/{task['id']}", {"pr_opened", "failed"}, timeout=90)
    assert opened["state"] == "pr_opened", opened
    server.api("PUT", "/api/secrets/FUZZ_SECRET", json={"value": "fuzz-secret-value"}).raise_for_status()
    ticket = server.api("POST", "/api/tickets", json={"title": "fuzz ticket", "repo": "fuzzrepo"}).json()
    return {"job_ref": str(job["id"]), "run_id": str(run["id"]), "repo_ref": str(repo["id"]),
            "task_id": str(task["id"]), "pr_id": str(opened["pr_id"]), "number": str(ticket["number"])}


def test_whole_spec_has_no_server_errors_and_matches_its_schema(tmp_path: Path) -> None:
    server = OptioServer(tmp_path / "data").start()
    try:
        params = seed(server, tmp_path)
        config = tmp_path / "schemathesis.toml"
        config.write_text("[parameters]\n" + "".join(f'"path.{k}" = {json.dumps(v)}\n' for k, v in params.items()))
        report = tmp_path / "report.json"
        env = dict(os.environ, SCHEMATHESIS_HOOKS="tests.support.schemathesis_hooks", OPTIO_FUZZ_KEY_ID="1",
                   OPTIO_FUZZ_USERNAME="admin", PYTHONPATH=str(Path(__file__).parents[2]))
        res = subprocess.run(
            [SCHEMATHESIS, "--config-file", str(config), "run", server.url + "/openapi.json",
             "-H", f"Authorization: Bearer {server.admin_key}",
             "-c", "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
             "-n", str(MAX_EXAMPLES), "--phases", "examples,coverage,fuzzing", "--seed", "20261124", "-w", "1",
             "--request-timeout", "20", "--report", "json", "--report-json-path", str(report)],
            env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )
        summary = [line for line in res.stdout.splitlines() if "generated" in line or "Tested:" in line]
        print("\n".join(summary))
        assert res.returncode == 0, res.stdout[-15000:] + res.stderr[-3000:] + server.log()[-3000:]
        assert "Tested: " in res.stdout and "Traceback" not in server.log()
    finally:
        server.stop()
