"""MCP servers, skills and messages to a running agent, end to end through `optio serve` and the CLI.

The Claude Code tests run the real `claude` CLI (from `scripts/install-vendor-clis.sh`) against
`tests.support.model_server.ModelServer`, in the run's sandbox as Optio always runs it. The MCP server is a
small stdio server written here (standard library Python, given to the CLI as `python3 -c SOURCE` so the
sandbox shows it); its one tool writes a file, the side effect the test looks for. The message tests that
need no vendor CLI use the script agent.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from tests.e2e.test_repo_loop import END, events, log_texts, new_task, show, task_json, wait_task
from tests.support.git_remote import make_remote
from tests.support.model_server import ModelServer, ToolCall, Turn
from tests.support.optio_server import OptioServer

ROOT = Path(__file__).resolve().parents[2]
CLI_BIN = Path(os.environ.get("OPTIO_VENDOR_CLI_BIN") or ROOT / ".cache" / "vendor-clis" / "node_modules" / ".bin")
MODEL = "claude-sonnet-4-5"
PROBE_TOKEN = "probe-token-0123456789abcdef"
SKILL_BODY = "HOUSE-STYLE-MARKER: every file this repo gets ends with a newline."
RELEASE_BODY = "RELEASE-SKILL-MARKER: tag the release with the date.\n"

MCP_SERVER = r'''
import hashlib, json, os, sys
def reply(i, result):
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": i, "result": result}) + "\n")
    sys.stdout.flush()
for line in sys.stdin:
    msg = json.loads(line)
    method, i = msg.get("method"), msg.get("id")
    if method == "initialize":
        version = msg.get("params", {}).get("protocolVersion", "2024-11-05")
        reply(i, {"protocolVersion": version, "capabilities": {"tools": {}},
                  "serverInfo": {"name": "probe", "version": "1.0"}})
    elif method == "tools/list":
        schema = {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                  "required": ["path", "content"]}
        reply(i, {"tools": [{"name": "touch", "description": "Write a file", "inputSchema": schema}]})
    elif method == "tools/call":
        args = msg["params"]["arguments"]
        token = hashlib.sha256(os.environ.get("PROBE_TOKEN", "").encode()).hexdigest()[:12]
        with open(args["path"], "w") as fh:
            fh.write(args["content"] + " " + token + "\n")
        reply(i, {"content": [{"type": "text", "text": "wrote " + args["path"]}]})
    elif i is not None:
        reply(i, {})
'''


def claude_cli() -> str:
    path = CLI_BIN / "claude"
    if path.exists():
        return str(path)
    if os.environ.get("CI") == "true":
        pytest.fail(f"claude CLI not installed in {CLI_BIN}")
    pytest.skip(f"claude CLI not installed in {CLI_BIN}; run scripts/install-vendor-clis.sh")


def claude_task(server: OptioServer, model_url: str, prompt: str) -> int:
    resp = server.api("POST", "/api/repo-tasks", json={
        "repo": "claude", "title": "Tools", "prompt": prompt, "agent_type": "claude-code", "max_retries": 0,
        "agent_config": {"cli": claude_cli(), "base_url": model_url, "model": MODEL, "max_turns": 8},
    })
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def bodies(model: ModelServer) -> list[str]:
    return [json.dumps(r.body) for r in model.model_requests()]


@pytest.mark.slow
def test_claude_code_calls_a_users_mcp_server_and_reads_a_users_skill(tmp_path: Path) -> None:
    claude_cli()
    remote = make_remote(tmp_path, files={"README.md": "demo\n", "release-skill.md": RELEASE_BODY})
    server = OptioServer(tmp_path / "data").start()
    try:
        server.cli("secret", "set", "ANTHROPIC_API_KEY", "--value", "sk-ant-test", check=True)
        server.cli("secret", "set", "PROBE_TOKEN", "--value", PROBE_TOKEN, check=True)
        server.cli("repo", "add", str(remote), "--name", "claude", "--secret", "ANTHROPIC_API_KEY", check=True)
        server.cli("mcp", "add", "probe", "--repo", "claude", "--command", "/usr/bin/python3", "--arg=-c",
                   f"--arg={MCP_SERVER}", "--env", "PROBE_TOKEN=secret:PROBE_TOKEN", check=True)
        server.cli("skill", "add", "house-style", "--text", SKILL_BODY, "--description",
                   "How files in this repo are written", check=True)
        server.cli("skill", "add", "release", "--repo-path", "claude:release-skill.md", "--repo", "claude",
                   "--description", "How releases are cut", check=True)
        listed = json.loads(server.cli("mcp", "list", "--json", check=True).stdout)
        assert [(m["name"], m["scope"], m["env"]) for m in listed] == [
            ("probe", "repo", {"PROBE_TOKEN": "secret:PROBE_TOKEN"})]
        target = server.data_dir / "worktrees" / "task-1" / "probe.txt"
        turns = [
            Turn(text="Using the probe.", tool_calls=(ToolCall("mcp__probe__touch",
                                                               {"path": str(target), "content": "from mcp"}),)),
            Turn(text="Reading the house style.", tool_calls=(ToolCall("Skill", {"skill": "house-style"}),)),
            Turn(text="And the release notes.", tool_calls=(ToolCall("Skill", {"skill": "release"}),)),
            Turn(text="Done."),
        ]
        with ModelServer(turns) as model:
            task_id = claude_task(server, model.url, "Write probe.txt with the probe tool.")
            final = wait_task(server, task_id, END, timeout=180)
            seen = bodies(model)
        assert final["state"] == "completed", (final, server.log()[-3000:])
        # the MCP tool ran (in the sandbox, started by the CLI) with the secret from the env
        token_hash = hashlib.sha256(PROBE_TOKEN.encode()).hexdigest()[:12]
        assert show(remote, "probe.txt") == f"from mcp {token_hash}\n"
        assert any("mcp__probe__touch" in b for b in seen[:1])  # offered to the model as a tool
        # the skill is listed for the model, and its text reaches it once the model picks it
        assert "How files in this repo are written" in seen[0] and SKILL_BODY not in seen[0]
        assert any(SKILL_BODY in b for b in seen[1:])
        # a repo-path skill is read from the run's checkout when it starts
        assert "How releases are cut" in seen[0] and any(RELEASE_BODY.strip() in b for b in seen[1:])
        logs = log_texts(server, task_id)
        assert not any(PROBE_TOKEN in text for text in logs)
        written = [p for p in (server.data_dir / "runs").rglob("*") if p.is_file()]
        assert written and not any(PROBE_TOKEN.encode() in p.read_bytes() for p in written)  # not on disk either
        audit = server.api("GET", "/api/audit", params={"action": "secret.inject"}).json()
        items = audit["items"] if isinstance(audit, dict) else audit
        assert any(a.get("target_id") == "PROBE_TOKEN" for a in items), items
    finally:
        server.stop()


@pytest.mark.slow
def test_a_message_reaches_a_running_claude_code_agent_within_the_same_attempt(tmp_path: Path) -> None:
    claude_cli()
    remote = make_remote(tmp_path)
    server = OptioServer(tmp_path / "data").start()
    try:
        server.cli("secret", "set", "ANTHROPIC_API_KEY", "--value", "sk-ant-test", check=True)
        server.cli("repo", "add", str(remote), "--name", "claude", "--secret", "ANTHROPIC_API_KEY", check=True)
        target = server.data_dir / "worktrees" / "task-1" / "hello.txt"
        turns = [
            Turn(text="Thinking it over.", tool_calls=(ToolCall("Bash", {"command": "sleep 6",
                                                                         "description": "wait"}),)),
            Turn(text="Writing.", tool_calls=(ToolCall("Write", {"file_path": str(target), "content": "hi\n"}),)),
            Turn(text="Done."),
        ]
        with ModelServer(turns) as model:
            task_id = claude_task(server, model.url, "Create hello.txt.")
            deadline = time.monotonic() + 90
            while not model.model_requests():  # the agent is up and working on its first step
                assert time.monotonic() < deadline, server.log()[-3000:]
                time.sleep(0.1)
            out = server.cli("task", "message", str(task_id), "PERSON-SAYS: keep it short", check=True).stdout
            assert "sent to the running agent" in out
            final = wait_task(server, task_id, END, timeout=180)
            seen = bodies(model)
        assert final["state"] == "completed", (final, server.log()[-3000:])
        assert final["attempts"] == 1
        assert "PERSON-SAYS" not in seen[0] and any("PERSON-SAYS" in b for b in seen[1:])
        messages = server.api("GET", f"/api/repo-tasks/{task_id}/messages").json()
        assert [(m["status"], m["delivered_via"], m["delivered_attempt"]) for m in messages] == [
            ("delivered", "live", 1)]
        assert {"message", "message_delivered"} <= set(events(server, task_id))
        shown = server.cli("task", "logs", str(task_id), check=True).stdout
        assert "» PERSON-SAYS: keep it short" in shown
    finally:
        server.stop()


def test_a_queued_message_is_given_in_the_next_resume_prompt(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "manual", "--require-approval", "--no-auto-merge",
                     check=True)
    agent = 'cat "$OPTIO_PROMPT_FILE"; echo "attempt $OPTIO_ATTEMPT" >> attempts.txt'
    task = new_task(optio_server, "--repo", "manual", "--title", "T", "--prompt", "do it", "--command", agent)
    wait_task(optio_server, task["id"], {"pr_opened"})
    out = optio_server.cli("task", "message", str(task["id"]), "QUEUED-NOTE: rename it", check=True).stdout
    assert "queued for the agent's next start" in out
    assert not any("QUEUED-NOTE" in t for t in log_texts(optio_server, task["id"]))
    optio_server.cli("task", "resume", str(task["id"]), check=True)
    deadline = time.monotonic() + 60
    while task_json(optio_server, task["id"])["attempts"] < 2 or task_json(optio_server, task["id"])["state"] != (
            "pr_opened"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    texts = log_texts(optio_server, task["id"])
    assert any("QUEUED-NOTE: rename it" in t for t in texts), texts
    messages = optio_server.api("GET", f"/api/repo-tasks/{task['id']}/messages").json()
    assert [(m["status"], m["delivered_via"], m["delivered_attempt"]) for m in messages] == [
        ("delivered", "prompt", 2)]


def test_interrupt_stops_the_attempt_and_resumes_at_once_with_the_message(
    optio_server: OptioServer, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "r", "--require-approval", "--no-auto-merge", check=True)
    agent = ('cat "$OPTIO_PROMPT_FILE"; echo; echo "attempt $OPTIO_ATTEMPT" > attempt.txt; '
             'if [ "$OPTIO_ATTEMPT" = 1 ]; then sleep 120; fi')
    task = new_task(optio_server, "--repo", "r", "--title", "T", "--prompt", "do it", "--command", agent)
    task_id = task["id"]
    deadline = time.monotonic() + 60
    while not any("do it" in t for t in log_texts(optio_server, task_id)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    started = time.monotonic()
    out = optio_server.cli("task", "message", str(task_id), "STOP-AND-LISTEN", "--interrupt", check=True).stdout
    assert "resumed with it now" in out
    final = wait_task(optio_server, task_id, {"pr_opened", *END}, timeout=60)
    assert time.monotonic() - started < 30  # not the 120 s the first attempt would have taken
    assert final["state"] == "pr_opened", final
    shown = task_json(optio_server, task_id)
    assert shown["attempts"] == 2 and shown["human_resumes"] == 1 and shown["resume_count"] == 0
    names = events(optio_server, task_id)
    assert names.count("interrupted") == 1
    assert names.index("message") < names.index("interrupted") < names.index("resumed")
    with sqlite3.connect(optio_server.data_dir / "optio.db") as db:
        reasons = [r[0] for r in db.execute(
            "SELECT exit_reason FROM agent_processes WHERE run_id=? ORDER BY attempt", (task_id,))]
        prompt_lines = [r[0] for r in db.execute(
            "SELECT text FROM run_logs WHERE run_id=? AND attempt=2", (task_id,))]
    assert reasons == ["killed", "exited"]
    assert any("STOP-AND-LISTEN" in line for line in prompt_lines)
    messages = optio_server.api("GET", f"/api/repo-tasks/{task_id}/messages").json()
    assert [(m["interrupt"], m["delivered_via"], m["delivered_attempt"]) for m in messages] == [(True, "prompt", 2)]


def test_bad_definitions_and_messages_are_refused_naming_the_field(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "r", check=True)
    cases = [
        ("/api/mcp-servers", {"name": "x", "command": "srv", "env": {"TOKEN": "plain-value"}}, "env"),
        ("/api/mcp-servers", {"name": "x"}, "command"),
        ("/api/mcp-servers", {"name": "x", "url": "ftp://host/mcp"}, "url"),
        ("/api/mcp-servers", {"name": "Bad Name", "command": "srv"}, "name"),
        ("/api/skills", {"name": "s"}, "text"),
        ("/api/skills", {"name": "s", "repo_path": "nope:SKILL.md"}, "repo_path"),
        ("/api/skills", {"name": "s", "repo_path": "r:../etc/passwd"}, "repo_path"),
    ]
    for path, body, field in cases:
        resp = optio_server.api("POST", path, json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["error"]["field"] == field, (body, resp.json())
    ok = optio_server.api("POST", "/api/skills", json={"name": "s", "repo_path": "r:docs/SKILL.md", "repo": "r"})
    assert ok.status_code == 201 and ok.json()["repo_path"] == "r:docs/SKILL.md" and ok.json()["scope"] == "repo"
    again = optio_server.api("POST", "/api/skills", json={"name": "s", "text": "t", "repo": "r"})
    assert again.status_code == 409
    optio_server.cli("skill", "remove", "s", "--repo", "r", check=True)
    assert optio_server.api("GET", "/api/skills").json() == []
    missing = optio_server.api("POST", "/api/repo-tasks/999/messages", json={"text": "hi"})
    assert missing.status_code == 404
    task = new_task(optio_server, "--repo", "r", "--title", "T", "--prompt", "p", "--command", "true")
    wait_task(optio_server, task["id"], END)
    refused = optio_server.api("POST", f"/api/repo-tasks/{task['id']}/messages", json={"text": "x", "interrupt": True})
    assert refused.status_code == 409 and refused.json()["error"]["field"] == "interrupt"


def test_vendor_models_are_listed_and_checked_when_saved(optio_server: OptioServer, tmp_path: Path) -> None:
    listed = json.loads(optio_server.cli("agents", "models", "claude-code", "--json", check=True).stdout)
    names = [m["model"] for m in listed["models"]]
    assert "claude-sonnet-4" in names and "high" in listed["reasoning_efforts"]
    assert next(m for m in listed["models"] if m["model"] == "claude-sonnet-4")["output_per_mtok"] == 15.0
    assert optio_server.api("GET", "/api/agents/models", params={"vendor": "codex"}).json()["models"]
    assert optio_server.api("GET", "/api/agents/models", params={"vendor": "nope"}).status_code == 404
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "r", check=True)
    bad_job = optio_server.api("POST", "/api/jobs", json={
        "name": "j", "prompt_template": "p", "agent_type": "codex", "agent_config": {"model": "claude-opus-4"}})
    assert bad_job.status_code == 422 and bad_job.json()["error"]["field"] == "agent_config.model"
    assert "gpt-5" in bad_job.json()["error"]["message"]
    bad_repo = optio_server.api("PATCH", "/api/repos/r", json={"agent_config": {
        "command": "true", "vendors": {"codex": {"reasoning_effort": "extreme"}}}})
    assert bad_repo.status_code == 422
    assert bad_repo.json()["error"]["field"] == "agent_config.vendors.codex.reasoning_effort"
    ok_repo = optio_server.api("PATCH", "/api/repos/r", json={"agent_config": {
        "command": "true", "vendors": {"claude-code": {"model": "claude-opus-4-5", "reasoning_effort": "high",
                                                       "max_turns": 30}}}})
    assert ok_repo.status_code == 200, ok_repo.text
    bad_task = optio_server.api("POST", "/api/repo-tasks", json={
        "repo": "r", "title": "t", "prompt": "p", "agent_type": "claude-code", "agent_config": {"max_turns": 0}})
    assert bad_task.status_code == 422 and bad_task.json()["error"]["field"] == "agent_config.max_turns"
