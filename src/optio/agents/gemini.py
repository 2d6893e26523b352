"""Google Gemini CLI (`gemini`, npm ``@google/gemini-cli``).

Runs ``gemini --output-format stream-json <prompt>`` and reads the documented headless stream
(docs/cli/headless.md of google-gemini/gemini-cli): ``init`` (session id, model), ``message``
(role + content, assistant chunks flagged ``delta``), ``tool_use`` (tool_name, tool_id, parameters),
``tool_result`` (tool_id, status, output/error), ``error`` (severity, message) and ``result``
(status, stats with token counts; no cost, so Optio imputes it).

MCP servers and the turn cap only exist as settings, so they go into a settings file beside the
prompt file, named by ``GEMINI_CLI_SYSTEM_SETTINGS_PATH``. ``base_url`` becomes
``GOOGLE_GEMINI_BASE_URL``. Config keys beyond the common ones (see ``optio.agents.options``): ``cli``
(default ``gemini``), ``permission_mode`` = Gemini's ``--approval-mode`` (default ``yolo``). Auth is an
API key (secret default ``GEMINI_API_KEY``); Google-account login is interactive only. Resume uses
``--resume <session id>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from optio.agents.base import AgentConfigError, AgentRequest, CommandSpec
from optio.agents.events import (
    AgentEvent,
    ErrorEvent,
    ResultEvent,
    SessionEvent,
    TextEvent,
    ToolResultEvent,
    ToolUseEvent,
    UsageEvent,
    load_json_object,
    summarize,
)
from optio.agents.failures import classify_run, error_event
from optio.agents.options import base_env, resolve_options
from optio.domain.agent_errors import AgentError

API_KEY_SECRET = "GEMINI_API_KEY"


class GeminiAgent:
    name = "gemini"
    cli = "gemini"

    def build_command(self, request: AgentRequest) -> CommandSpec:
        opts = resolve_options(request, vendor=self.name, default_api_key_secret=API_KEY_SECRET)
        argv = [str(request.config.get("cli") or self.cli), "--output-format", "stream-json"]
        if opts.model:
            argv += ["--model", opts.model]
        if request.resume_session_id:
            argv += ["--resume", request.resume_session_id]
        argv += ["--approval-mode", opts.permission_mode or "yolo"]
        settings: dict[str, Any] = {
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": False},
            "general": {"disableAutoUpdate": True},
        }
        if opts.max_turns is not None:
            settings["model"] = {"maxSessionTurns": opts.max_turns}
        if request.mcp_servers:
            settings["mcpServers"] = _mcp_settings(request.mcp_servers)
        argv += list(opts.extra_args)
        argv.append(request.prompt)
        env = base_env(request)
        if opts.secret_value is not None:
            env["GEMINI_API_KEY"] = opts.secret_value
        if opts.base_url:
            env["GOOGLE_GEMINI_BASE_URL"] = opts.base_url
        path = str(request.prompt_file.parent / "gemini-settings.json")
        env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"] = path
        return CommandSpec(argv=argv, env=env, files={path: json.dumps(settings, indent=2)})

    def secret_name(self, request: AgentRequest) -> str:
        return str((request.config or {}).get("api_key_secret") or API_KEY_SECRET)

    def parse_line(self, line: str) -> list[AgentEvent]:
        data = load_json_object(line)
        if data is None:
            return []
        kind = data.get("type")
        if kind == "init" and isinstance(data.get("session_id"), str):
            return [SessionEvent(session_id=data["session_id"])]
        if kind == "message":
            if data.get("role") == "assistant" and data.get("content"):
                return [TextEvent(text=str(data["content"]))]
            return []
        if kind == "tool_use":
            return [
                ToolUseEvent(
                    name=str(data.get("tool_name") or "?"),
                    input_summary=summarize(data.get("parameters") or {}),
                    tool_id=data.get("tool_id") if isinstance(data.get("tool_id"), str) else None,
                )
            ]
        if kind == "tool_result":
            failed = data.get("status") == "error"
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            output = error.get("message") if failed and error else data.get("output")
            return [
                ToolResultEvent(
                    output=summarize(output or ""),
                    tool_id=data.get("tool_id") if isinstance(data.get("tool_id"), str) else None,
                    is_error=failed,
                )
            ]
        if kind == "error":
            message = str(data.get("message") or "error")
            if data.get("severity") == "warning":
                return [ErrorEvent(kind="unknown", message=summarize(message))]
            return [error_event(message)]
        if kind == "result":
            return _result(data)
        return []

    def classify_failure(
        self,
        exit_code: int | None,
        stderr_tail: str,
        events: Sequence[AgentEvent],
        *,
        secret_name: str | None = API_KEY_SECRET,
    ) -> AgentError | None:
        return classify_run(exit_code, stderr_tail, events, secret_name=secret_name)


def _mcp_settings(servers: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, spec in servers.items():
        if not isinstance(spec, Mapping):
            raise AgentConfigError(f"gemini: MCP server {name!r} must be a mapping")
        if spec.get("url"):
            entry: dict[str, Any] = {"httpUrl": str(spec["url"])}
            if spec.get("headers"):
                entry["headers"] = dict(spec["headers"])
        elif spec.get("command"):
            entry = {"command": str(spec["command"]), "args": [str(a) for a in spec.get("args") or []]}
            if spec.get("env"):
                entry["env"] = {str(k): str(v) for k, v in spec["env"].items()}
        else:
            raise AgentConfigError(f"gemini: MCP server {name!r} needs a command or a url")
        result[str(name)] = entry
    return result


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _result(data: dict[str, Any]) -> list[AgentEvent]:
    events: list[AgentEvent] = []
    stats = data.get("stats") if isinstance(data.get("stats"), dict) else {}
    if stats:
        cached = _int(stats.get("cached"))
        uncached = _int(stats["input"]) if "input" in stats else max(0, _int(stats.get("input_tokens")) - cached)
        events.append(
            UsageEvent(input_tokens=uncached, output_tokens=_int(stats.get("output_tokens")), cache_read_tokens=cached)
        )
    success = data.get("status") == "success"
    error = data.get("error") if isinstance(data.get("error"), dict) else {}
    summary = str(error.get("message") or "") if not success else ""
    if not success:
        events.append(error_event(f"{summary} [{error.get('type', '')}]" if summary else "gemini run failed"))
    events.append(ResultEvent(summary=summary or data.get("status", ""), success=success))
    return events
