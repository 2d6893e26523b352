"""A real vendor CLI driven by Optio: repo tasks run the real `claude` CLI (installed from npm by
`scripts/install-vendor-clis.sh`) against `tests.support.model_server.ModelServer`, a local HTTP server that
speaks the Anthropic Messages API, since the vendor API cannot be reached from tests.

The scripted model makes the CLI write a file with its own Write tool; Optio commits, pushes, opens the PR
and merges it, and records the session id, tokens and cost from the CLI's real stream output. A lasting 429
makes the task back off and retry; an invalid key fails it at once with a message naming the secret.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.e2e.test_repo_loop import END, events, show, wait_task
from tests.support.git_remote import make_remote
from tests.support.model_server import ModelServer, ToolCall, Turn
from tests.support.optio_server import OptioServer

ROOT = Path(__file__).resolve().parents[2]
CLI_BIN = Path(os.environ.get("OPTIO_VENDOR_CLI_BIN") or ROOT / ".cache" / "vendor-clis" / "node_modules" / ".bin")
MODEL = "claude-sonnet-4-5"

pytestmark = pytest.mark.slow


def claude_cli() -> str:
    path = CLI_BIN / "claude"
    if path.exists():
        return str(path)
    if os.environ.get("CI") == "true":
        pytest.fail(f"claude CLI not installed in {CLI_BIN}")
    pytest.skip(f"claude CLI not installed in {CLI_BIN}; run scripts/install-vendor-clis.sh")


def start_server(tmp_path: Path, secret: str = "sk-ant-test") -> OptioServer:
    server = OptioServer(tmp_path / "data").start()
    server.cli("secret", "set", "ANTHROPIC_API_KEY", "--value", secret, check=True)
    return server


def add_repo_and_task(server: OptioServer, remote: Path, model_url: str, *, max_retries: int = 1) -> int:
    server.cli("repo", "add", str(remote), "--name", "claude", "--secret", "ANTHROPIC_API_KEY", check=True)
    resp = server.api("POST", "/api/repo-tasks", json={
        "repo": "claude", "title": "Add hello.txt", "prompt": "Create hello.txt saying hello.",
        "agent_type": "claude-code", "max_retries": max_retries,
        "agent_config": {"cli": claude_cli(), "base_url": model_url, "model": MODEL, "max_turns": 5},
    })
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def test_claude_code_task_opens_and_merges_a_pr_with_usage_recorded(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    server = start_server(tmp_path)
    try:
        target = server.data_dir / "worktrees" / "task-1" / "hello.txt"
        turns = [
            Turn(text="Writing the file.", tool_calls=(ToolCall("Write", {"file_path": str(target),
                                                                          "content": "hello from claude\n"}),)),
            Turn(text="Done: wrote hello.txt."),
        ]
        with ModelServer(turns) as model:
            task_id = add_repo_and_task(server, remote, model.url)
            final = wait_task(server, task_id, END, timeout=180)
        assert final["state"] == "completed", (final, server.log()[-3000:])
        assert show(remote, "hello.txt") == "hello from claude\n"
        assert final["pr_state"] == "merged"
        assert final["agent_session_id"] and len(final["agent_session_id"]) == 36
        assert (final["input_tokens"], final["output_tokens"]) == (2400, 160)
        assert final["cost_usd"] == pytest.approx(0.0096) and not final["cost_imputed"]
        logs = server.api("GET", f"/api/repo-tasks/{task_id}/logs").json()["items"]
        assert not any("sk-ant-test" in line["text"] for line in logs)
        kinds = {json.loads(line["text"])["type"] for line in logs if line["stream"] == "event"}
        assert {"text", "tool_use", "tool_result", "usage", "session", "result"} <= kinds
        shown = server.cli("task", "logs", str(task_id), check=True).stdout
        assert "→ Write" in shown and "Done: wrote hello.txt." in shown and '{"type"' not in shown
    finally:
        server.stop()


def test_lasting_429_backs_off_and_retries_instead_of_failing(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    server = start_server(tmp_path)
    try:
        target = server.data_dir / "worktrees" / "task-1" / "hello.txt"
        turns = [
            Turn(text="Writing.", tool_calls=(ToolCall("Write", {"file_path": str(target), "content": "hi\n"}),)),
            Turn(text="Done."),
        ]
        with ModelServer(turns) as model:
            model.fail_next(429, times=3, retry_after=1)  # more than the CLI's own retries: the attempt fails
            task_id = add_repo_and_task(server, remote, model.url, max_retries=0)
            final = wait_task(server, task_id, END, timeout=180)
        assert final["state"] == "completed", (final, server.log()[-3000:])
        names = events(server, task_id)
        assert "retry_scheduled" in names
        reasons = [e["reason"] for e in server.api("GET", f"/api/repo-tasks/{task_id}/events").json()
                   if e["event"] == "retry_scheduled"]
        assert any("rate limited" in r for r in reasons), reasons
        assert final["attempts"] == 2
    finally:
        server.stop()


def test_invalid_key_fails_fast_naming_the_secret(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    server = start_server(tmp_path, secret="sk-ant-wrong")
    try:
        with ModelServer([Turn(text="never")]) as model:
            model.fail_next(401, times=50)
            task_id = add_repo_and_task(server, remote, model.url, max_retries=3)
            final = wait_task(server, task_id, END, timeout=120)
        assert final["state"] == "failed", final
        assert final["attempts"] == 1
        assert "ANTHROPIC_API_KEY" in final["error"]
    finally:
        server.stop()


def test_codex_task_through_optio_imputes_cost(tmp_path: Path) -> None:
    """Codex (`@openai/codex`) against the model server's OpenAI Responses API: it reports tokens but no
    cost, so Optio imputes the cost from its price table and marks it as imputed."""
    codex = CLI_BIN / "codex"
    if not codex.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"codex CLI not installed in {CLI_BIN}")
        pytest.skip("codex CLI not installed")
    remote = make_remote(tmp_path)
    server = OptioServer(tmp_path / "data").start()
    try:
        server.cli("secret", "set", "OPENAI_API_KEY", "--value", "sk-openai-test", check=True)
        server.cli("repo", "add", str(remote), "--name", "codex", "--secret", "OPENAI_API_KEY", check=True)
        turns = [
            Turn(tool_calls=(ToolCall("exec_command", {"cmd": "printf 'hello from codex\\n' > hello.txt"}),)),
            Turn(text="Done: wrote hello.txt."),
        ]
        with ModelServer(turns) as model:
            resp = server.api("POST", "/api/repo-tasks", json={
                "repo": "codex", "title": "Add hello.txt", "prompt": "Create hello.txt.", "agent_type": "codex",
                "agent_config": {"cli": str(codex), "base_url": model.openai_url, "model": "gpt-5.5"},
            })
            assert resp.status_code == 201, resp.text
            final = wait_task(server, resp.json()["id"], END, timeout=180)
        assert final["state"] == "completed", (final, server.log()[-3000:])
        assert show(remote, "hello.txt") == "hello from codex\n"
        assert (final["input_tokens"], final["output_tokens"]) == (2400, 160)
        assert final["cost_usd"] > 0 and final["cost_imputed"]
        assert final["agent_session_id"]
    finally:
        server.stop()
