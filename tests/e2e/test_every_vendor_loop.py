"""Every vendor CLI driven by Optio against the local model server, as a user runs them.

Gemini (`@google/gemini-cli`) speaks Gemini's streamGenerateContent to `tests.support.model_server`,
Copilot (`@github/copilot`) OpenAI chat completions in its offline provider mode; both write a file with
their own tool in a repo task whose PR Optio opens and merges, recording session id, tokens and an imputed
cost. A bad key fails at once naming the secret; a lasting 429 backs off without using up the attempts.

Native resume, for all five vendors: the first attempt's PR fails CI, Optio resumes the stored session
with the CI output, and the model server sees the first attempt's turns in the resumed conversation.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.test_repo_loop import END, show, wait_task
from tests.support.git_remote import make_remote
from tests.support.model_server import ModelServer, ToolCall, Turn
from tests.support.optio_server import OptioServer

ROOT = Path(__file__).resolve().parents[2]
CLI_BIN = Path(os.environ.get("OPTIO_VENDOR_CLI_BIN") or ROOT / ".cache" / "vendor-clis" / "node_modules" / ".bin")

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Vendor:
    agent_type: str
    cli: str
    secret: str
    model: str
    openai: bool  # OpenAI-shaped base URL (``/v1``) rather than the server root

    def write(self, path: Path, content: str) -> ToolCall:
        """The scripted model's call of this CLI's own file-writing tool."""
        if self.agent_type == "claude-code":
            return ToolCall("Write", {"file_path": str(path), "content": content})
        if self.agent_type == "codex":
            return ToolCall("exec_command", {"cmd": f"printf '{content}' > {path.name}"})
        if self.agent_type == "opencode":
            return ToolCall("write", {"filePath": str(path), "content": content})
        if self.agent_type == "gemini":
            return ToolCall("write_file", {"file_path": str(path), "content": content})
        return ToolCall("create", {"path": str(path), "file_text": content})


VENDORS = {
    v.agent_type: v
    for v in (
        Vendor("claude-code", "claude", "ANTHROPIC_API_KEY", "claude-sonnet-4-5", openai=False),
        Vendor("codex", "codex", "OPENAI_API_KEY", "gpt-5.5", openai=True),
        Vendor("opencode", "opencode", "OPENAI_API_KEY", "gpt-4.1", openai=True),
        Vendor("gemini", "gemini", "GEMINI_API_KEY", "gemini-2.5-pro", openai=False),
        Vendor("copilot", "copilot", "COPILOT_PROVIDER_API_KEY", "gpt-4.1", openai=True),
    )
}


def cli_path(vendor: Vendor) -> str:
    path = CLI_BIN / vendor.cli
    if path.exists():
        return str(path)
    if os.environ.get("CI") == "true":
        pytest.fail(f"{vendor.cli} CLI not installed in {CLI_BIN}")
    pytest.skip(f"{vendor.cli} CLI not installed in {CLI_BIN}; run scripts/install-vendor-clis.sh")


def start(tmp_path: Path, vendor: Vendor, *, key: str = "test-key", ci: str | None = None) -> tuple[OptioServer, Path]:
    remote = make_remote(tmp_path)
    server = OptioServer(tmp_path / "data").start()
    server.cli("secret", "set", vendor.secret, "--value", key, check=True)
    args = ["repo", "add", str(remote), "--name", "r", "--secret", vendor.secret]
    if ci is not None:
        args += ["--ci-command", ci]
    server.cli(*args, check=True)
    return server, remote


def new_task(server: OptioServer, vendor: Vendor, model: ModelServer, *, max_retries: int = 1,
             prompt: str = "Create hello.txt saying hello.") -> int:
    config: dict[str, Any] = {"cli": cli_path(vendor), "model": vendor.model,
                              "base_url": model.openai_url if vendor.openai else model.url}
    if vendor.agent_type in ("claude-code", "gemini"):
        config["max_turns"] = 8
    resp = server.api("POST", "/api/repo-tasks", json={
        "repo": "r", "title": "Add hello.txt", "prompt": prompt, "agent_type": vendor.agent_type,
        "max_retries": max_retries, "agent_config": config,
    })
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def hello_turns(server: OptioServer, vendor: Vendor) -> list[Turn]:
    target = server.data_dir / "worktrees" / "task-1" / "hello.txt"
    return [
        Turn(text="Writing the file.", tool_calls=(vendor.write(target, f"hello from {vendor.agent_type}\n"),)),
        Turn(text="Done: wrote hello.txt."),
    ]


def retry_reasons(server: OptioServer, task_id: int) -> list[str]:
    return [e["reason"] for e in server.api("GET", f"/api/repo-tasks/{task_id}/events").json()
            if e["event"] == "retry_scheduled"]


@pytest.mark.parametrize("agent_type", ["gemini", "copilot"])
def test_task_opens_and_merges_a_pr_written_by_the_clis_own_tool(tmp_path: Path, agent_type: str) -> None:
    vendor = VENDORS[agent_type]
    server, remote = start(tmp_path, vendor, key=f"{agent_type}-secret-key")
    try:
        with ModelServer(hello_turns(server, vendor)) as model:
            task_id = new_task(server, vendor, model)
            final = wait_task(server, task_id, END, timeout=240)
            calls = model.model_requests()
        assert final["state"] == "completed", (final, server.log()[-3000:])
        assert show(remote, "hello.txt") == f"hello from {agent_type}\n"
        assert final["pr_state"] == "merged"
        assert final["agent_session_id"] and len(final["agent_session_id"]) == 36
        assert (final["input_tokens"], final["output_tokens"]) == (2400, 160)
        assert final["cost_usd"] > 0 and final["cost_imputed"]  # neither CLI reports a cost
        auth = calls[0].headers.get("x-goog-api-key") or calls[0].headers.get("authorization")
        assert auth in (f"{agent_type}-secret-key", f"Bearer {agent_type}-secret-key")
        logs = server.api("GET", f"/api/repo-tasks/{task_id}/logs").json()["items"]
        assert not any(f"{agent_type}-secret-key" in line["text"] for line in logs)
        shown = server.cli("task", "logs", str(task_id), check=True).stdout
        assert "Done: wrote hello.txt." in shown
        if agent_type == "copilot":  # its ~235 MB package is unpacked once per workspace, not once per run
            assert any((server.data_dir / "cache" / "cli").glob("workspace-*/copilot-pkg/*/*/app.js"))
    finally:
        server.stop()


@pytest.mark.parametrize("agent_type", ["gemini", "copilot"])
def test_invalid_key_fails_fast_naming_the_secret(tmp_path: Path, agent_type: str) -> None:
    vendor = VENDORS[agent_type]
    server, _ = start(tmp_path, vendor, key="wrong-key-123")
    try:
        with ModelServer([Turn(text="never")]) as model:
            model.fail_next(401, times=50)
            task_id = new_task(server, vendor, model, max_retries=3)
            final = wait_task(server, task_id, END, timeout=180)
        assert final["state"] == "failed", final
        assert final["attempts"] == 1
        assert vendor.secret in final["error"], final["error"]
    finally:
        server.stop()


# How many 429s one attempt of the CLI takes before it gives up: Gemini tries twice (general.maxAttempts,
# bounded by the adapter), Copilot six times (its own fixed retries, about six seconds).
CLI_TRIES = {"gemini": 2, "copilot": 6}


@pytest.mark.parametrize("agent_type", ["gemini", "copilot"])
def test_lasting_429_backs_off_and_retries_without_using_up_attempts(tmp_path: Path, agent_type: str) -> None:
    vendor = VENDORS[agent_type]
    server, remote = start(tmp_path, vendor)
    try:
        with ModelServer(hello_turns(server, vendor)) as model:
            model.fail_next(429, times=CLI_TRIES[agent_type], retry_after=1)  # all of the first attempt's tries
            task_id = new_task(server, vendor, model, max_retries=0)
            final = wait_task(server, task_id, END, timeout=240)
        assert final["state"] == "completed", (final, server.log()[-3000:])
        assert show(remote, "hello.txt") == f"hello from {agent_type}\n"
        reasons = retry_reasons(server, task_id)
        assert any("rate limited" in r for r in reasons), reasons
        assert final["attempts"] == 2  # max_retries 0: the rate limit did not count against the task
    finally:
        server.stop()


@pytest.mark.parametrize("agent_type", list(VENDORS))
def test_red_ci_resumes_the_stored_session_natively(tmp_path: Path, agent_type: str) -> None:
    vendor = VENDORS[agent_type]
    ci = 'if [ -f second.txt ]; then echo green; else echo "CI-NEEDS-SECOND-TXT"; exit 1; fi'
    server, remote = start(tmp_path, vendor, ci=ci)
    try:
        second = server.data_dir / "worktrees" / "task-1" / "second.txt"
        turns = [*hello_turns(server, vendor),
                 Turn(text="Adding second.txt.", tool_calls=(vendor.write(second, "2\n"),)),
                 Turn(text="Done: wrote second.txt.")]
        with ModelServer(turns) as model:
            task_id = new_task(server, vendor, model, prompt="Create hello.txt (ORIGINAL-ASK).")
            final = wait_task(server, task_id, END, timeout=300)
            resumed = [r for r in model.model_requests() if "CI-NEEDS-SECOND-TXT" in repr(r.body)]
        assert final["state"] == "completed", (final, server.log()[-3000:])
        assert show(remote, "second.txt") == "2\n" and show(remote, "hello.txt")
        assert final["resume_count"] == 1 and final["attempts"] == 2
        assert resumed, "the resumed attempt was told about the red CI"
        # the resumed conversation carries the first attempt's turns: the CLI continued its session
        earlier = repr(resumed[0].body)
        assert "ORIGINAL-ASK" in earlier and "Done: wrote hello.txt." in earlier
    finally:
        server.stop()


def log_texts(server: OptioServer, task_id: int) -> str:
    return "\n".join(line["text"] for line in server.api("GET", f"/api/repo-tasks/{task_id}/logs").json()["items"])


@pytest.mark.parametrize("agent_type", ["gemini", "claude-code"])
def test_vendor_review_agent_requests_changes_through_review_json(tmp_path: Path, agent_type: str) -> None:
    """The review agent is a real CLI whose own file tool writes review.json; Optio posts it on the PR, and
    the coding agent's resume prompt holds the line comment as `path:line: text`."""
    vendor = VENDORS[agent_type]
    remote = make_remote(tmp_path, files={"README.md": "demo\n"})
    server = OptioServer(tmp_path / "data").start()
    try:
        server.cli("secret", "set", vendor.secret, "--value", "review-key-123", check=True)
        report = {"verdict": "request_changes", "summary": "Almost: out.txt needs a header.",
                  "comments": [{"path": "out.txt", "line": 1, "body": "START-WITH-A-HEADER please"}]}
        review_file = server.data_dir / "worktrees" / "review-1-1" / "base" / "review.json"
        turns = [Turn(text="Writing my review.", tool_calls=(vendor.write(review_file, json.dumps(report)),)),
                 Turn(text="Review written.")]
        with ModelServer(turns) as model:
            resp = server.api("POST", "/api/repos", json={
                "remote_url": str(remote), "name": "r", "secret_names": [vendor.secret],
                "review_agent_type": agent_type, "review_prompt": "Check out.txt.",
                "review_agent_config": {"cli": cli_path(vendor), "model": vendor.model,
                                        "base_url": model.openai_url if vendor.openai else model.url},
            })
            assert resp.status_code == 201, resp.text
            agent = 'cat "$OPTIO_PROMPT_FILE"; echo "attempt $OPTIO_ATTEMPT" >> out.txt'
            resp = server.api("POST", "/api/repo-tasks", json={
                "repo": "r", "title": "Write out.txt", "prompt": "write it", "agent_type": "script",
                "agent_config": {"command": agent},
            })
            assert resp.status_code == 201, resp.text
            task_id = int(resp.json()["id"])
            deadline = time.monotonic() + 240
            while "out.txt:1: START-WITH-A-HEADER please" not in log_texts(server, task_id):
                assert time.monotonic() < deadline, (server.api("GET", f"/api/repo-tasks/{task_id}").json(),
                                                     server.log()[-3000:])
                time.sleep(1)
            review_prompts = [r for r in model.model_requests() if "review.json" in repr(r.body)]
        assert review_prompts, "the review prompt told the agent about review.json"
        pr = json.loads(server.cli("pr", "show", "--task", str(task_id), "--json", check=True).stdout)
        first = pr["reviews"][0]
        assert first["verdict"] == "request_changes" and first["author"] == f"review-agent:{agent_type}"
        assert "Almost: out.txt needs a header." in first["comments"]
        assert "out.txt:1: START-WITH-A-HEADER please" in first["comments"]
        assert not (server.data_dir / "worktrees" / "review-1-1").exists()
    finally:
        server.stop()
