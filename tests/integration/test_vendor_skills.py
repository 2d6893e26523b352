"""A skill's text reaches the model through each vendor's real CLI (Codex, OpenCode; Claude Code end to end
in ``tests/e2e/test_agent_tools_and_messages.py``), run as in ``test_vendor_clis``: in the sandbox, against the
local model server, the skills where the adapter puts them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.integration.test_vendor_clis import (  # noqa: F401 - fixtures
    codex_request,
    home,
    opencode_request,
    run_cli,
    workspace,
)
from tests.support.model_server import ModelServer, Turn

from optio.agents.codex import CodexAgent
from optio.agents.opencode import OpenCodeAgent

pytestmark = pytest.mark.slow
SKILLS = {"house-style": "SKILL-TEXT-MARKER: answer in one short sentence."}


def test_codex_gets_the_skills_as_instructions(workspace: Path, home: Path) -> None:  # noqa: F811
    with ModelServer([Turn(text="Noted.")]) as server:
        request = codex_request(workspace, server, "Say hi", env={"HOME": str(home)}, skills=SKILLS)
        run = run_cli(CodexAgent(), request, home)
        seen = [json.dumps(r.body) for r in server.model_requests()]
    assert run.exit_code == 0, run.stderr[-2000:]
    assert seen and "SKILL-TEXT-MARKER" in seen[0]


def test_opencode_gets_the_skills_as_instructions(workspace: Path, home: Path) -> None:  # noqa: F811
    with ModelServer([Turn(text="Noted.")]) as server:
        request = opencode_request(workspace, server, "Say hi", env={"HOME": str(home)}, skills=SKILLS)
        run = run_cli(OpenCodeAgent(), request, home)
        seen = [json.dumps(r.body) for r in server.model_requests()]
    assert run.exit_code == 0, run.stderr[-2000:]
    assert any("SKILL-TEXT-MARKER" in body for body in seen), seen[:1]
