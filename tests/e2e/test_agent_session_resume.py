"""A persistent agent on the real Claude Code CLI resumes its own session natively from one turn to the next.

The CLI (installed by scripts/install-vendor-clis.sh) talks to `tests.support.model_server.ModelServer`, a local
server speaking the Anthropic Messages API. The first turn's session id is kept on the agent; the second turn
starts the CLI with `--resume` on it, so the model's second request carries the first turn's conversation,
which only the CLI's own session store (in the sticky agent's HOME) could have supplied.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.test_vendor_agent_loop import MODEL, claude_cli
from tests.support.model_server import ModelServer, Turn
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow


def wait_turns(server: OptioServer, slug: str, count: int, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = server.api("GET", f"/api/agents/{slug}").json()
        if shown["turn_count"] >= count and shown["state"] in ("idle", "failed", "paused"):
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{slug} did not finish turn {count}: {shown}\n{server.log()[-3000:]}")


def test_the_second_turn_resumes_the_first_turns_session(tmp_path: Path) -> None:
    cli = claude_cli()
    server = OptioServer(tmp_path / "data").start()
    try:
        server.cli("secret", "set", "ANTHROPIC_API_KEY", "--value", "sk-ant-test", check=True)
        turns = [Turn(text="Noted: the codeword is PLUM-7731."), Turn(text="The codeword was PLUM-7731.")]
        with ModelServer(turns) as model:
            res = server.api("POST", "/api/agents", json={
                "slug": "claude", "agent_type": "claude-code", "lifecycle": "sticky", "idle_timeout_s": 3600,
                "secret_names": ["ANTHROPIC_API_KEY"],
                "agent_config": {"cli": cli, "base_url": model.url, "model": MODEL, "max_turns": 3}})
            assert res.status_code == 201, res.text
            server.cli("agent", "send", "claude", "Remember the codeword PLUM-7731.", check=True)
            first = wait_turns(server, "claude", 1)
            assert first["state"] == "idle", (first, server.log()[-3000:])
            session = first["session_id"]
            assert session and len(session) == 36

            server.cli("agent", "send", "claude", "What was the codeword?", check=True)
            second = wait_turns(server, "claude", 2)
            assert second["state"] == "idle", second
            requests = [r for r in model.model_requests() if r.body.get("tools")]

        listed = {t["number"]: t for t in server.api("GET", "/api/agents/claude/turns").json()}
        assert listed[1]["outcome"] == listed[2]["outcome"] == "succeeded"
        assert listed[1]["session_id"] == session and listed[1]["resumed_session_id"] is None
        assert listed[2]["resumed_session_id"] == session  # started with --resume on the first turn's session
        # The model's last request holds the first turn's exchange: the CLI loaded it from its own session.
        last = requests[-1].body["messages"]
        text = repr(last)
        assert "Remember the codeword PLUM-7731." in text and "Noted: the codeword is PLUM-7731." in text
        assert "What was the codeword?" in text
        assert sum(1 for m in last if m.get("role") == "assistant") >= 1
        # The first turn's request knew nothing of the second.
        assert "What was the codeword?" not in repr(requests[0].body["messages"])
    finally:
        server.stop()
