"""Where each adapter puts a run's skills, how it takes live input and its reasoning effort."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from optio.agents.base import AgentConfigError, AgentRequest
from optio.agents.claude_code import ClaudeCodeAgent, user_message
from optio.agents.codex import CodexAgent
from optio.agents.events import UserMessageEvent
from optio.agents.opencode import OpenCodeAgent

SKILLS = {"house-style": "Use tabs.\nAlways.", "review": "---\nname: review\ndescription: d\n---\nCheck it."}


def request(tmp_path: Path, **kwargs: Any) -> AgentRequest:
    env = {"HOME": str(tmp_path / "home"), **kwargs.pop("env", {})}
    return AgentRequest(prompt="Fix the bug", prompt_file=tmp_path / "run" / "prompt.md", workdir=tmp_path / "work",
                        env=env, **kwargs)


def test_claude_code_skills_go_to_its_config_dir_outside_the_worktree(tmp_path: Path) -> None:
    spec = ClaudeCodeAgent().build_command(request(tmp_path, env={"ANTHROPIC_API_KEY": "k"}, skills=SKILLS))
    doc = spec.files[str(tmp_path / "home" / ".claude" / "skills" / "house-style" / "SKILL.md")]
    assert doc.startswith("---\nname: house-style\ndescription: \"Use tabs.\"\n---\n") and "Always." in doc
    assert spec.files[str(tmp_path / "home" / ".claude" / "skills" / "review" / "SKILL.md")] == SKILLS["review"]
    assert not any(str(tmp_path / "work") in path for path in spec.files)


def test_skills_without_a_home_are_a_config_error(tmp_path: Path) -> None:
    req = AgentRequest(prompt="p", prompt_file=tmp_path / "prompt.md", workdir=tmp_path, env={"ANTHROPIC_API_KEY": "k"},
                       skills=SKILLS)
    with pytest.raises(AgentConfigError, match="HOME"):
        ClaudeCodeAgent().build_command(req)


def test_codex_skills_are_global_instructions_in_its_home(tmp_path: Path) -> None:
    spec = CodexAgent().build_command(request(tmp_path, env={"OPENAI_API_KEY": "k"}, skills=SKILLS))
    text = spec.files[str(tmp_path / "home" / ".codex" / "AGENTS.md")]
    assert "## Skill: house-style" in text and "Use tabs." in text and "Check it." in text


def test_opencode_skills_are_an_instructions_file_beside_the_prompt(tmp_path: Path) -> None:
    spec = OpenCodeAgent().build_command(request(tmp_path, env={"OPENAI_API_KEY": "k"}, skills=SKILLS))
    config = json.loads(spec.env["OPENCODE_CONFIG_CONTENT"])
    (path,) = config["instructions"]
    assert Path(path).parent == tmp_path / "run" and "Use tabs." in spec.files[path]


def test_claude_code_live_input_starts_with_the_prompt_as_a_stream_json_message(tmp_path: Path) -> None:
    plain = ClaudeCodeAgent().build_command(request(tmp_path, env={"ANTHROPIC_API_KEY": "k"}))
    assert "--input-format" not in plain.argv and not plain.live_input
    spec = ClaudeCodeAgent().build_command(request(tmp_path, env={"ANTHROPIC_API_KEY": "k"}, live_input=True))
    assert spec.live_input and spec.argv[spec.argv.index("--input-format") + 1] == "stream-json"
    assert "--replay-user-messages" in spec.argv
    assert spec.stdin_path is not None and spec.files[str(spec.stdin_path)] == user_message("Fix the bug")
    assert json.loads(user_message("hi"))["message"]["content"] == [{"type": "text", "text": "hi"}]


def test_other_vendors_ignore_live_input(tmp_path: Path) -> None:
    spec = CodexAgent().build_command(request(tmp_path, env={"OPENAI_API_KEY": "k"}, live_input=True))
    assert not spec.live_input


def test_a_replayed_user_message_is_a_user_message_event() -> None:
    line = json.dumps({"type": "user", "isReplay": True,
                       "message": {"role": "user", "content": [{"type": "text", "text": "keep it short"}]}})
    assert ClaudeCodeAgent().parse_line(line) == [UserMessageEvent(text="keep it short")]


def test_reasoning_effort_reaches_each_cli(tmp_path: Path) -> None:
    config = {"reasoning_effort": "high"}
    claude = ClaudeCodeAgent().build_command(request(tmp_path, env={"ANTHROPIC_API_KEY": "k"}, config=config))
    assert claude.argv[claude.argv.index("--effort") + 1] == "high"
    codex = CodexAgent().build_command(request(tmp_path, env={"OPENAI_API_KEY": "k"}, config=config))
    assert 'model_reasoning_effort="high"' in codex.argv
    opencode = OpenCodeAgent().build_command(request(tmp_path, env={"OPENAI_API_KEY": "k"}, config=config))
    assert opencode.argv[opencode.argv.index("--variant") + 1] == "high"
