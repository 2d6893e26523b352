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
from collections.abc import Mapping
from typing import Any

from optio.agents.base import AgentRequest, CommandSpec
from optio.agents.common import (
    VendorAgent,
    config_file,
    count,
    end_of_run,
    sub_object,
    tool_result,
    tool_use,
    uncached_input,
)
from optio.agents.events import AgentEvent, ErrorEvent, SessionEvent, TextEvent, UsageEvent, summarize
from optio.agents.failures import error_event

API_KEY_SECRET = "GEMINI_API_KEY"


class GeminiAgent(VendorAgent):
    name = "gemini"
    cli = "gemini"
    api_key_secret = API_KEY_SECRET

    def build_command(self, request: AgentRequest) -> CommandSpec:
        opts = self.options(request)
        argv = [self.executable(request), "--output-format", "stream-json"]
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
            settings["mcpServers"] = self._mcp_settings(request.mcp_servers)
        argv += list(opts.extra_args)
        argv.append(request.prompt)
        env = self.credential_env(request, opts, secret_var=API_KEY_SECRET, base_url_var="GOOGLE_GEMINI_BASE_URL")
        path = config_file(request, "gemini-settings.json")
        env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"] = path
        return CommandSpec(argv=argv, env=env, files={path: json.dumps(settings, indent=2)})

    def _mcp_settings(self, servers: Mapping[str, Any]) -> dict[str, Any]:
        return self.mcp_table(
            servers,
            remote=lambda server: {"httpUrl": server.url},
            local=lambda server: {"command": server.command, "args": server.args},
        )

    def parse_object(self, data: dict[str, Any]) -> list[AgentEvent]:
        kind = data.get("type")
        if kind == "init" and isinstance(data.get("session_id"), str):
            return [SessionEvent(session_id=data["session_id"])]
        if kind == "message":
            if data.get("role") == "assistant" and data.get("content"):
                return [TextEvent(text=str(data["content"]))]
            return []
        if kind == "tool_use":
            return [tool_use(data.get("tool_name"), data.get("parameters"), data.get("tool_id"))]
        if kind == "tool_result":
            failed = data.get("status") == "error"
            error = sub_object(data, "error")
            output = error.get("message") if failed and error else data.get("output")
            return [tool_result(output, data.get("tool_id"), failed=failed)]
        if kind == "error":
            message = str(data.get("message") or "error")
            if data.get("severity") == "warning":
                return [ErrorEvent(kind="unknown", message=summarize(message))]
            return [error_event(message)]
        if kind == "result":
            return _result(data)
        return []


def _result(data: dict[str, Any]) -> list[AgentEvent]:
    stats = sub_object(data, "stats")
    usage = None
    if stats:
        cached = count(stats.get("cached"))
        if "input" in stats:
            uncached = count(stats["input"])
        else:
            uncached = uncached_input(count(stats.get("input_tokens")), cached)
        usage = UsageEvent(
            input_tokens=uncached, output_tokens=count(stats.get("output_tokens")), cache_read_tokens=cached
        )
    success = data.get("status") == "success"
    if success:
        return end_of_run(data.get("status", ""), usage=usage)
    error = sub_object(data, "error")
    summary = str(error.get("message") or "")
    failure = f"{summary} [{error.get('type', '')}]" if summary else "gemini run failed"
    return end_of_run(summary or data.get("status", ""), usage=usage, error=failure)
