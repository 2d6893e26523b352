"""Schemathesis over the whole OpenAPI spec against a live, authenticated `optio serve`.

Checks: no 5xx, every status code documented, every body matching its schema, content types as
documented, no control character accepted in free text that reaches git or a shell, no loosely written
integer accepted (see `tests/support/schemathesis_hooks.py`). Path parameters are pinned to real resources
(a job and its run, a repo with a task whose PR is open, a ticket) so the cases reach the handlers instead of
stopping at 404; everything else is generated. The number of operations and cases is printed (run with -s).

Two spec-driven sweeps make the input rules exact rather than left to chance: every integer path and query
parameter of every route, written as `"1 "`, `"+1"`, `"1.0"`, `true`..., is a 422 naming it (and acts on
nothing); every free-text field of every body that reaches git or a shell refuses a NUL (and single-line
fields a newline) with a 422 naming the field.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tests.support.git_remote import make_remote
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
# Generated cases per operation in the fuzzing phase. The coverage phase already sends each operation's
# boundary and invalid values (about 4,600 of the run's 5,300 cases at 5); raise it for a longer hunt.
MAX_EXAMPLES = int(os.environ.get("OPTIO_FUZZ_EXAMPLES", "5"))


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
    server.api("POST", "/api/agents", json={"slug": "fuzzagent", "agent_config": {"command": "cat"}}).raise_for_status()
    server.api("POST", "/api/agents/fuzzagent/messages", json={"body": "hello"}).raise_for_status()
    server.wait_state("/api/agents/fuzzagent/turns/1", {"succeeded", "failed"})
    # Paused, generated messages wait in its inbox instead of each starting a turn (a process) mid-sweep.
    server.api("POST", "/api/agents/fuzzagent/pause").raise_for_status()
    server.wait_state("/api/agents/fuzzagent", {"paused"})
    return {"job_ref": str(job["id"]), "run_id": str(run["id"]), "repo_ref": str(repo["id"]),
            "task_id": str(task["id"]), "pr_id": str(opened["pr_id"]), "number": str(ticket["number"]),
            "slug": "fuzzagent", "turn": "1"}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OptioServer, dict[str, str], Path]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    server = OptioServer(tmp / "data").start()
    try:
        yield server, seed(server, tmp), tmp
    finally:
        server.stop()


BAD_INTEGERS = ("{v} ", " {v}", "+{v}", "{v}.0", "{v}e0", "0x{v}", "true", "-{v}", "{v}\u0661", "9223372036854775808")
# A valid body per request schema: each sweep case breaks exactly one field of it.
BODIES: dict[str, dict[str, Any]] = {
    "JobCreate": {"name": "sweep", "prompt_template": "p", "agent_config": {"command": "true"}},
    "RunCreate": {"params": {}},
    "JobUpdate": {"description": "d"},
    "JobClone": {"name": "sweep-clone"},
    "BlueprintCreate": {"name": "sweep", "repo": "fuzzrepo", "title_template": "t", "prompt_template": "p",
                        "agent_config": {"command": "true"}},
    "BlueprintRun": {"params": {}},
    "RepoCreate": {"remote_url": "REMOTE", "name": "sweep"},
    "RepoUpdate": {"require_approval": True},
    "RepoTaskCreate": {"repo": "fuzzrepo", "title": "t", "prompt": "p", "agent_config": {"command": "true"}},
    "JobRunTaskCreate": {"type": "job_run", "job": "fuzzjob", "params": {}},
    "RepoTaskTaskCreate": {"type": "repo_task", "repo": "fuzzrepo", "title": "t", "prompt": "p",
                           "agent_config": {"command": "true"}},
    "TicketCreate": {"title": "t"},
    "TicketWork": {"repo": "fuzzrepo", "agent_config": {"command": "true"}},
    "TicketLabels": {"add": ["sweep"]},
    "ReviewIn": {"comment": "c"},
    "MergeIn": {"force": False},
    "TaskMessageCreate": {"text": "hello"},
    "PersistentAgentCreate": {"slug": "sweep", "agent_config": {"command": "true"}},
    "PersistentAgentUpdate": {"name": "n"},
    "MessageIn": {"body": "hello"},
}
TEXT_ROUTES = ("/api/jobs", "/api/repos", "/api/repo-tasks", "/api/tasks", "/api/tickets", "/api/prs", "/api/runs",
               "/api/blueprints", "/api/agents")
MULTILINE = {"prompt", "prompt_template", "description", "body", "ci_command", "review_prompt", "comment", "text",
             "system_prompt", "operator_manual"}


def operations(server: OptioServer) -> list[tuple[str, str, dict[str, Any]]]:
    spec = server.api("GET", "/openapi.json").json()
    return [(method.upper(), path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def fill(path: str, values: dict[str, str], override: dict[str, str] | None = None) -> str:
    for name, value in {**values, **(override or {})}.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


def test_integer_parameters_take_plain_digits_only(seeded: tuple[OptioServer, dict[str, str], Path]) -> None:
    server, params, _tmp = seeded
    victim = server.api("POST", "/api/apikeys", json={"name": "victim"}).json()
    values = {**params, "key_id": str(victim["id"]), "name": "FUZZ_SECRET", "username": "nobody"}
    checked = 0
    for method, path, op in operations(server):
        for param in op.get("parameters", []):
            if (param.get("schema") or {}).get("type") != "integer":
                continue
            real = values.get(param["name"], "1")
            for bad in BAD_INTEGERS:
                text = bad.format(v=real)
                if param["in"] == "path":
                    res = server.api(method, fill(path, values, {param["name"]: text}))
                else:
                    res = server.api(method, fill(path, values), params={param["name"]: text})
                assert res.status_code == 422, (method, path, param["name"], text, res.status_code, res.text[:200])
                assert res.json()["error"]["field"] == param["name"], (method, path, text, res.text[:200])
                checked += 1
    assert checked > 100
    # DELETE /api/apikeys/<id>%20 and friends acted on nothing: the key still works.
    keys = {k["id"]: k for k in server.api("GET", "/api/apikeys").json()}
    assert keys[victim["id"]]["revoked_at"] is None
    assert server.api("GET", "/api/me", token=victim["key"]).status_code == 200


def body_cases(spec: dict[str, Any], op: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(schema name, resolved schema) of each body variant an operation takes."""
    schema = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema", {})
    refs = [schema.get("$ref")] + [s.get("$ref") for key in ("anyOf", "oneOf") for s in schema.get(key, [])]
    names = [r.rsplit("/", 1)[1] for r in refs if r]
    return [(name, spec["components"]["schemas"][name]) for name in names]


def test_free_text_that_reaches_git_or_a_shell_refuses_control_characters(
        seeded: tuple[OptioServer, dict[str, str], Path]) -> None:
    server, params, tmp = seeded
    spec = server.api("GET", "/openapi.json").json()
    remote = str(make_remote(tmp, "sweep.git"))
    checked = 0
    for method, path, op in operations(server):
        if not path.startswith(TEXT_ROUTES):
            continue
        for name, schema in body_cases(spec, op):
            assert name in BODIES, f"add a valid {name} body for {method} {path}"
            base = json.loads(json.dumps(BODIES[name]).replace("REMOTE", remote))
            for field, prop in schema.get("properties", {}).items():
                variants = [prop, *prop.get("anyOf", [])]
                if field == "type" or not any(v.get("type") == "string" for v in variants):
                    if field in ("agent_config", "review_agent_config"):
                        cases = [{"command": "echo \x00"}, {"model\x1b": "x"}]
                    elif field == "params":
                        cases = [{"WHO": "a\x00b"}, {"WHO\n": "x"}]
                    else:
                        continue
                else:
                    cases = ["a\x00b", "a\x1b[31mb", "a\x7fb", "a\u0085b"]
                    if field not in MULTILINE:
                        cases += ["a\nb", "a\tb"]
                for value in cases:
                    res = server.api(method, fill(path, params), json={**base, field: value})
                    assert res.status_code == 422, (method, path, field, value, res.status_code, res.text[:200])
                    named = res.json()["error"]["field"] or ""
                    assert named == field or named.startswith(field + "."), (method, path, field, res.text[:200])
                    checked += 1
            if name in ("JobCreate", "RepoTaskCreate", "TicketCreate"):
                for n, field in enumerate(sorted(MULTILINE & set(schema.get("properties", {})))):
                    unique = {"name": f"multi{n}"} if "name" in base else {}
                    res = server.api(method, fill(path, params),
                                     json={**base, **unique, field: "line one\n\tline two"})
                    assert res.status_code in (200, 201), (method, path, field, res.text[:300])
    assert checked > 100


@pytest.mark.timeout(950)  # the schemathesis run itself may take up to 850 s (its subprocess timeout)
def test_whole_spec_has_no_server_errors_and_matches_its_schema(
        seeded: tuple[OptioServer, dict[str, str], Path]) -> None:
    server, params, tmp_path = seeded
    config = tmp_path / "schemathesis.toml"
    config.write_text("[parameters]\n" + "".join(f'"path.{k}" = {json.dumps(v)}\n' for k, v in params.items()))
    report = tmp_path / "report.json"
    env = dict(os.environ, SCHEMATHESIS_HOOKS="tests.support.schemathesis_hooks", OPTIO_FUZZ_KEY_ID="1",
               OPTIO_FUZZ_USERNAME="admin", PYTHONPATH=str(Path(__file__).parents[2]))
    res = subprocess.run(
        [SCHEMATHESIS, "--config-file", str(config), "run", server.url + "/openapi.json",
         "-H", f"Authorization: Bearer {server.admin_key}",
         "-c", "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance,"
               "control_characters_refused,strict_integers",
         "-n", str(MAX_EXAMPLES), "--phases", "examples,coverage,fuzzing", "--seed", "20261124", "-w", "1",
         # The workspace event stream never ends by itself (tests/e2e/test_event_stream.py covers it).
         "--exclude-path", "/api/events/stream",
         "--request-timeout", "20", "--report", "json", "--report-json-path", str(report)],
        env=env, capture_output=True, text=True, timeout=850, cwd=tmp_path,
    )
    summary = [line for line in res.stdout.splitlines() if "generated" in line or "Tested:" in line]
    print("\n".join(summary))
    assert res.returncode == 0, res.stdout[-15000:] + res.stderr[-3000:] + server.log()[-3000:]
    assert "Tested: " in res.stdout and "Traceback" not in server.log()
