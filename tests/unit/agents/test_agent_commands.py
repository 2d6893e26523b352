"""Command building of each adapter: flags, env and config files, without starting anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from optio.agents.base import AgentConfigError, AgentRequest
from optio.agents.claude_code import ClaudeCodeAgent
from optio.agents.codex import CodexAgent
from optio.agents.copilot import CopilotAgent
from optio.agents.gemini import GeminiAgent
from optio.agents.opencode import OpenCodeAgent
from optio.agents.registry import get_adapter, known_agent_types

MCP = {"docs": {"command": "docs-mcp", "args": ["--stdio"], "env": {"DOCS_TOKEN": "mcp-secret"}}}


def request(tmp_path: Path, **kwargs: Any) -> AgentRequest:
    prompt_file = tmp_path / "run" / "prompt.md"
    return AgentRequest(
        prompt=kwargs.pop("prompt", "Fix the bug"),
        prompt_file=prompt_file,
        workdir=tmp_path / "work",
        **kwargs,
    )


def flag_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_registry_knows_every_vendor() -> None:
    assert known_agent_types() == ["claude-code", "codex", "copilot", "gemini", "opencode", "script"]
    assert isinstance(get_adapter("claude-code"), ClaudeCodeAgent)


@pytest.mark.parametrize(
    ("adapter", "secret"),
    [
        (ClaudeCodeAgent(), "ANTHROPIC_API_KEY"),
        (CodexAgent(), "OPENAI_API_KEY"),
        (GeminiAgent(), "GEMINI_API_KEY"),
        (CopilotAgent(), "COPILOT_GITHUB_TOKEN"),
        (OpenCodeAgent(), "OPENAI_API_KEY"),
    ],
    ids=lambda v: getattr(v, "name", v),
)
def test_a_missing_secret_is_a_config_error_naming_it(tmp_path: Path, adapter: Any, secret: str) -> None:
    with pytest.raises(AgentConfigError, match=secret):
        adapter.build_command(request(tmp_path, model="m"))


@pytest.mark.parametrize(
    ("adapter", "env"),
    [
        (ClaudeCodeAgent(), {"ANTHROPIC_API_KEY": "sk-secret-value"}),
        (CodexAgent(), {"OPENAI_API_KEY": "sk-secret-value"}),
        (GeminiAgent(), {"GEMINI_API_KEY": "sk-secret-value"}),
        (CopilotAgent(), {"COPILOT_GITHUB_TOKEN": "sk-secret-value"}),
        (OpenCodeAgent(), {"OPENAI_API_KEY": "sk-secret-value"}),
    ],
    ids=lambda v: getattr(v, "name", "env"),
)
def test_secrets_never_reach_argv(tmp_path: Path, adapter: Any, env: dict[str, str]) -> None:
    spec = adapter.build_command(request(tmp_path, model="m", env=env, mcp_servers=MCP))
    assert not any("sk-secret-value" in arg or "mcp-secret" in arg for arg in spec.argv)
    assert "sk-secret-value" in spec.env.values()


# -- Claude Code ----------------------------------------------------------------------------------


def test_claude_code_command(tmp_path: Path) -> None:
    spec = ClaudeCodeAgent().build_command(
        request(
            tmp_path,
            model="claude-sonnet-4-5",
            max_turns=12,
            resume_session_id="2e889dc0-d36e-48a6-965a-7dcf75cea40f",
            base_url="http://models.internal:8080",
            env={"ANTHROPIC_API_KEY": "sk-a"},
            mcp_servers=MCP,
            config={"extra_args": ["--add-dir", "/data"]},
        )
    )
    argv = spec.argv
    assert argv[:5] == ["claude", "-p", "--output-format", "stream-json", "--verbose"]
    assert flag_value(argv, "--model") == "claude-sonnet-4-5"
    assert flag_value(argv, "--max-turns") == "12"
    assert flag_value(argv, "--resume") == "2e889dc0-d36e-48a6-965a-7dcf75cea40f"
    assert flag_value(argv, "--permission-mode") == "bypassPermissions"
    assert argv[-2:] == ["--add-dir", "/data"]
    mcp_path = flag_value(argv, "--mcp-config")
    # the secret stays in the env: the file names it for Claude Code to expand
    servers = {"docs": {**MCP["docs"], "env": {"DOCS_TOKEN": "${OPTIO_MCP_DOCS_DOCS_TOKEN}"}}}
    assert json.loads(spec.files[mcp_path]) == {"mcpServers": servers}
    assert spec.env["OPTIO_MCP_DOCS_DOCS_TOKEN"] == "mcp-secret"
    assert Path(mcp_path).parent == tmp_path / "run"
    assert spec.stdin_path == tmp_path / "run" / "prompt.md"
    assert spec.env["ANTHROPIC_BASE_URL"] == "http://models.internal:8080"
    assert spec.env["ANTHROPIC_API_KEY"] == "sk-a"
    assert spec.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert spec.env["DISABLE_AUTOUPDATER"] == "1"


def test_claude_code_minimal_command_has_no_optional_flags(tmp_path: Path) -> None:
    spec = ClaudeCodeAgent().build_command(request(tmp_path, env={"ANTHROPIC_API_KEY": "k"}))
    for flag in ("--model", "--max-turns", "--resume", "--mcp-config"):
        assert flag not in spec.argv
    assert "ANTHROPIC_BASE_URL" not in spec.env and spec.files == {}


def test_claude_code_oauth_and_custom_secret_names(tmp_path: Path) -> None:
    oauth = ClaudeCodeAgent().build_command(
        request(
            tmp_path,
            env={"TEAM_TOKEN": "oat-1", "ANTHROPIC_API_KEY": "stale"},
            config={"auth": "oauth", "oauth_token_secret": "TEAM_TOKEN"},
        )
    )
    assert oauth.env["CLAUDE_CODE_OAUTH_TOKEN"] == "oat-1" and "ANTHROPIC_API_KEY" not in oauth.env
    keyed = ClaudeCodeAgent().build_command(
        request(
            tmp_path,
            env={"TEAM_KEY": "sk-t"},
            config={"api_key_secret": "TEAM_KEY", "model": "opus", "max_turns": 3, "permission_mode": "acceptEdits"},
        )
    )
    assert keyed.env["ANTHROPIC_API_KEY"] == "sk-t"
    assert flag_value(keyed.argv, "--model") == "opus" and flag_value(keyed.argv, "--max-turns") == "3"
    assert flag_value(keyed.argv, "--permission-mode") == "acceptEdits"
    skip = ClaudeCodeAgent().build_command(
        request(tmp_path, env={"ANTHROPIC_API_KEY": "k"}, config={"permission_mode": "dangerously-skip-permissions"})
    )
    assert "--dangerously-skip-permissions" in skip.argv and "--permission-mode" not in skip.argv


def test_config_errors(tmp_path: Path) -> None:
    env = {"ANTHROPIC_API_KEY": "k"}
    with pytest.raises(AgentConfigError, match="max_turns"):
        ClaudeCodeAgent().build_command(request(tmp_path, env=env, config={"max_turns": "many"}))
    with pytest.raises(AgentConfigError, match="auth"):
        ClaudeCodeAgent().build_command(request(tmp_path, env=env, config={"auth": "password"}))
    with pytest.raises(AgentConfigError, match="extra_args"):
        ClaudeCodeAgent().build_command(request(tmp_path, env=env, config={"extra_args": "--foo"}))
    with pytest.raises(AgentConfigError, match="OAuth"):
        GeminiAgent().build_command(request(tmp_path, env={"GEMINI_API_KEY": "k"}, config={"auth": "oauth"}))
    with pytest.raises(AgentConfigError, match="COPILOT_PROVIDER_API_KEY"):
        CopilotAgent().build_command(request(tmp_path, env={"COPILOT_GITHUB_TOKEN": "t"}, base_url="http://x"))
    with pytest.raises(AgentConfigError, match="wire_api"):
        CopilotAgent().build_command(request(tmp_path, env={"COPILOT_PROVIDER_API_KEY": "k"}, base_url="http://x",
                                             config={"wire_api": "grpc"}))
    with pytest.raises(AgentConfigError, match="max_attempts"):
        GeminiAgent().build_command(request(tmp_path, env={"GEMINI_API_KEY": "k"}, config={"max_attempts": 0}))


def test_require_secret_false_allows_a_keyless_local_server(tmp_path: Path) -> None:
    spec = ClaudeCodeAgent().build_command(request(tmp_path, config={"require_secret": False}))
    assert "ANTHROPIC_API_KEY" not in spec.env


# -- Codex ----------------------------------------------------------------------------------------


def overrides(argv: list[str]) -> dict[str, Any]:
    pairs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-c"]
    return {k: json.loads(v) for k, v in (p.split("=", 1) for p in pairs)}


def test_codex_command(tmp_path: Path) -> None:
    spec = CodexAgent().build_command(
        request(
            tmp_path,
            model="gpt-5.5",
            max_turns=7,
            base_url="http://127.0.0.1:9/v1",
            env={"OPENAI_API_KEY": "sk-o"},
            mcp_servers=MCP,
        )
    )
    argv = spec.argv
    assert argv[:3] == ["codex", "exec", "--json"] and argv[-1] == "-"
    assert flag_value(argv, "-m") == "gpt-5.5"
    assert "--dangerously-bypass-approvals-and-sandbox" in argv
    c = overrides(argv)
    assert c["model_provider"] == "optio"
    assert c["model_providers.optio.base_url"] == "http://127.0.0.1:9/v1"
    assert c["model_providers.optio.env_key"] == "OPENAI_API_KEY"
    assert c["model_providers.optio.wire_api"] == "responses"
    assert c["mcp_servers.docs.command"] == "docs-mcp" and c["mcp_servers.docs.args"] == ["--stdio"]
    assert c["mcp_servers.docs.env_vars"] == ["DOCS_TOKEN"] and spec.env["DOCS_TOKEN"] == "mcp-secret"
    assert spec.env["OPENAI_API_KEY"] == "sk-o" and spec.stdin_path is not None
    assert "7" not in argv  # Codex has no turn cap


def test_codex_resume_default_endpoint_and_sandbox_mode(tmp_path: Path) -> None:
    spec = CodexAgent().build_command(
        request(
            tmp_path,
            resume_session_id="01a20fd5-db1a",
            env={"TEAM_KEY": "sk"},
            config={"api_key_secret": "TEAM_KEY", "permission_mode": "workspace-write"},
        )
    )
    assert spec.argv[:4] == ["codex", "exec", "resume", "--json"]
    assert spec.argv[-2:] == ["01a20fd5-db1a", "-"]
    c = overrides(spec.argv)
    assert c["model_providers.optio.base_url"] == "https://api.openai.com/v1"
    assert c["sandbox_mode"] == "workspace-write" and c["approval_policy"] == "never"
    assert spec.env[c["model_providers.optio.env_key"]] == "sk"
    assert "--dangerously-bypass-approvals-and-sandbox" not in spec.argv


def test_codex_oauth_writes_the_login_into_codex_home(tmp_path: Path) -> None:
    spec = CodexAgent().build_command(
        request(tmp_path, env={"CODEX_AUTH_JSON": '{"tokens": {}}', "HOME": "/home/agent"}, config={"auth": "oauth"})
    )
    assert spec.files == {"/home/agent/.codex/auth.json": '{"tokens": {}}'}
    assert "model_provider" not in overrides(spec.argv)


# -- Gemini ---------------------------------------------------------------------------------------


def test_gemini_command_writes_its_settings_into_the_runs_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec = GeminiAgent().build_command(
        request(
            tmp_path,
            model="gemini-2.5-pro",
            max_turns=9,
            resume_session_id="2f1c7a4e",
            base_url="http://127.0.0.1:9",
            env={"GEMINI_API_KEY": "g", "HOME": str(home), "GOOGLE_API_KEY": "other"},
            mcp_servers=MCP,
            skills={"style": "Use tabs."},
        )
    )
    argv = spec.argv
    assert argv[:4] == ["gemini", "--output-format", "stream-json", "--skip-trust"]
    assert flag_value(argv, "--prompt") == "Fix the bug"
    assert flag_value(argv, "--model") == "gemini-2.5-pro"
    assert flag_value(argv, "--resume") == "2f1c7a4e"
    assert flag_value(argv, "--approval-mode") == "yolo"
    # not GEMINI_CLI_SYSTEM_SETTINGS_PATH: the CLI skips that file unless root owns it and every parent
    assert "GEMINI_CLI_SYSTEM_SETTINGS_PATH" not in spec.env and "GEMINI_CLI_HOME" not in spec.env
    settings = json.loads(spec.files[str(home / ".gemini" / "settings.json")])
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert settings["general"]["maxAttempts"] == 2  # a lasting 429 ends the attempt; Optio backs off
    assert settings["model"]["maxSessionTurns"] == 9
    assert settings["mcpServers"]["docs"] == {
        "command": "docs-mcp",
        "args": ["--stdio"],
        "env": {"DOCS_TOKEN": "mcp-secret"},
    }
    assert "## style\n\nUse tabs." in spec.files[str(home / ".gemini" / "GEMINI.md")]
    assert spec.env["GOOGLE_GEMINI_BASE_URL"] == "http://127.0.0.1:9"
    assert spec.env["GEMINI_API_KEY"] == "g" and "GOOGLE_API_KEY" not in spec.env


# -- Copilot --------------------------------------------------------------------------------------


def copilot_argv(spec: Any) -> list[str]:
    """The CLI's own argv inside the wrapper that prints its usage file."""
    assert spec.argv[:2] == ["/bin/sh", "-c"] and "--usage-output-file" in spec.argv[2]
    return list(spec.argv[4:])


def test_copilot_command_for_githubs_service(tmp_path: Path) -> None:
    spec = CopilotAgent().build_command(
        request(
            tmp_path,
            model="claude-sonnet-4.5",
            max_turns=4,
            resume_session_id="b7c1",
            env={"COPILOT_GITHUB_TOKEN": "ghu"},
            mcp_servers={"web": {"url": "https://mcp.example/mcp"}},
        )
    )
    argv = copilot_argv(spec)
    assert argv[:5] == ["copilot", "-p", "Fix the bug", "--output-format", "json"]
    assert flag_value(argv, "--model") == "claude-sonnet-4.5"
    assert flag_value(argv, "--resume") == "b7c1"
    assert "--allow-all-tools" in argv
    path = flag_value(argv, "--additional-mcp-config").removeprefix("@")
    assert json.loads(spec.files[path])["mcpServers"]["web"]["url"] == "https://mcp.example/mcp"
    assert spec.env["COPILOT_GITHUB_TOKEN"] == "ghu" and "COPILOT_OFFLINE" not in spec.env
    assert spec.env["COPILOT_AUTO_UPDATE"] == "false"
    assert spec.shared_dirs == {"copilot-pkg": ".cache/copilot/pkg"}


def test_copilot_command_for_a_self_hosted_endpoint(tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec = CopilotAgent().build_command(
        request(
            tmp_path,
            model="gpt-5",
            base_url="http://127.0.0.1:9/v1",
            env={"COPILOT_PROVIDER_API_KEY": "sk-p", "GITHUB_TOKEN": "ghp-not-for-copilot", "HOME": str(home)},
            config={"wire_api": "responses"},
            skills={"style": "Use tabs."},
        )
    )
    assert spec.env["COPILOT_OFFLINE"] == "true"
    assert spec.env["COPILOT_PROVIDER_BASE_URL"] == "http://127.0.0.1:9/v1"
    assert spec.env["COPILOT_PROVIDER_TYPE"] == "openai" and spec.env["COPILOT_PROVIDER_WIRE_API"] == "responses"
    assert spec.env["COPILOT_PROVIDER_API_KEY"] == "sk-p" and "GITHUB_TOKEN" not in spec.env
    assert "Use tabs." in spec.files[str(home / ".copilot" / "copilot-instructions.md")]
    assert CopilotAgent().secret_name(request(tmp_path, base_url="http://x")) == "COPILOT_PROVIDER_API_KEY"


# -- OpenCode -------------------------------------------------------------------------------------


def test_opencode_command_with_a_self_hosted_endpoint(tmp_path: Path) -> None:
    spec = OpenCodeAgent().build_command(
        request(
            tmp_path,
            model="gpt-4.1",
            max_turns=6,
            resume_session_id="ses_abc",
            base_url="http://127.0.0.1:9/v1",
            env={"OPENAI_API_KEY": "sk-oc"},
            mcp_servers=MCP,
        )
    )
    argv = spec.argv
    assert argv[:4] == ["opencode", "run", "--format", "json"] and argv[-1] == "Fix the bug"
    assert flag_value(argv, "-m") == "optio/gpt-4.1"
    assert flag_value(argv, "--session") == "ses_abc"
    assert "--auto" in argv
    config = json.loads(spec.env["OPENCODE_CONFIG_CONTENT"])
    provider = config["provider"]["optio"]
    assert provider["options"]["baseURL"] == "http://127.0.0.1:9/v1"
    assert provider["options"]["apiKey"] == "{env:OPTIO_OPENCODE_API_KEY}"
    assert spec.env["OPTIO_OPENCODE_API_KEY"] == "sk-oc"
    assert config["agent"]["build"]["steps"] == 6
    assert config["mcp"]["docs"] == {
        "type": "local",
        "command": ["docs-mcp", "--stdio"],
        "enabled": True,
        "environment": {"DOCS_TOKEN": "mcp-secret"},
    }


def test_opencode_vendor_model_uses_the_provider_key(tmp_path: Path) -> None:
    spec = OpenCodeAgent().build_command(
        request(
            tmp_path,
            model="anthropic/claude-sonnet-4-5",
            env={"ANTHROPIC_API_KEY": "sk-ant"},
            config={"permission_mode": "config"},
        )
    )
    assert flag_value(spec.argv, "-m") == "anthropic/claude-sonnet-4-5"
    assert "--auto" not in spec.argv and "provider" not in json.loads(spec.env["OPENCODE_CONFIG_CONTENT"])
    assert spec.env["ANTHROPIC_API_KEY"] == "sk-ant"
