"""GitHub Copilot CLI (`copilot`, npm ``@github/copilot``).

Runs ``copilot -p <prompt> --output-format json`` and reads its JSONL session events, each
``{"type", "data", "id", "timestamp", "parentId"}`` as documented by the Copilot SDK's
session-events schema: ``session.start`` (sessionId), ``assistant.message`` (content),
``assistant.reasoning``, ``tool.execution_start`` (toolCallId, toolName, arguments),
``tool.execution_complete`` (success, result/error), ``assistant.usage`` (tokens, model, cost),
``session.error`` and ``session.idle`` (the run is done).

Copilot talks only to GitHub's Copilot service, so ``base_url`` is not supported. Auth is a GitHub
token with the Copilot entitlement (``COPILOT_GITHUB_TOKEN``; ``auth`` ``api_key`` and ``oauth`` both use
it, default secret ``COPILOT_GITHUB_TOKEN``). Config keys beyond the common ones (see
``optio.agents.options``): ``cli`` (default ``copilot``), ``permission_mode``: ``allow-all`` (default,
``--allow-all-tools``) or ``ask``. MCP servers are passed with ``--additional-mcp-config @<file>``.
``max_turns`` has no Copilot equivalent and is ignored. Resume uses ``--resume <session id>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from optio.agents.base import AgentConfigError, AgentRequest, CommandSpec
from optio.agents.common import (
    VendorAgent,
    config_file,
    end_of_run,
    http_status,
    str_or_none,
    sub_object,
    tool_result,
    tool_use,
)
from optio.agents.events import AgentEvent, ResultEvent, SessionEvent, TextEvent, ThinkingEvent, UsageEvent

TOKEN_SECRET = "COPILOT_GITHUB_TOKEN"


class CopilotAgent(VendorAgent):
    name = "copilot"
    cli = "copilot"
    api_key_secret = TOKEN_SECRET
    oauth_secret = TOKEN_SECRET

    def build_command(self, request: AgentRequest) -> CommandSpec:
        opts = self.options(request)
        if opts.base_url:
            raise AgentConfigError("copilot: the Copilot CLI cannot use a custom model endpoint (base_url)")
        argv = [self.executable(request), "-p", request.prompt, "--output-format", "json"]
        if opts.model:
            argv += ["--model", opts.model]
        if request.resume_session_id:
            argv += ["--resume", request.resume_session_id]
        if self.permission_mode(opts, "allow-all", "ask") == "allow-all":
            argv += ["--allow-all-tools", "--no-ask-user"]
        files: dict[str, str] = {}
        if request.mcp_servers:
            path = config_file(request, "copilot-mcp.json")
            files[path] = json.dumps({"mcpServers": self._mcp(request.mcp_servers)}, indent=2)
            argv += ["--additional-mcp-config", f"@{path}"]
        argv += list(opts.extra_args)
        env = self.credential_env(request, opts, secret_var=TOKEN_SECRET)
        env["COPILOT_AUTO_UPDATE"] = "false"
        return CommandSpec(argv=argv, env=env, files=files)

    def secret_name(self, request: AgentRequest) -> str:
        """Copilot has one token, so either secret key names it, whichever auth mode is set."""
        config = request.config or {}
        return str(config.get("api_key_secret") or config.get("oauth_token_secret") or TOKEN_SECRET)

    def _mcp(self, servers: Mapping[str, Any]) -> dict[str, Any]:
        """Copilot's MCP entries: ``local`` (command/args/env) or ``http`` (url/headers), all tools on."""
        return self.mcp_table(
            servers,
            remote=lambda server: {"type": "http", "url": server.url, "tools": ["*"]},
            local=lambda server: {"type": "local", "command": server.command, "args": server.args, "tools": ["*"]},
        )

    def parse_object(self, event: dict[str, Any]) -> list[AgentEvent]:
        kind = event.get("type")
        data = sub_object(event, "data")
        if kind in ("session.start", "session.resume"):
            session = data.get("sessionId")
            return [SessionEvent(session_id=session)] if isinstance(session, str) and session else []
        if kind == "assistant.message" and data.get("content"):
            return [TextEvent(text=str(data["content"]))]
        if kind == "assistant.reasoning" and data.get("content"):
            return [ThinkingEvent(text=str(data["content"]))]
        if kind == "tool.execution_start":
            return [tool_use(data.get("toolName"), data.get("arguments"), data.get("toolCallId"))]
        if kind == "tool.execution_complete":
            success = data.get("success") is not False
            output = sub_object(data, "result").get("content") if success else sub_object(data, "error").get("message")
            return [tool_result(output, data.get("toolCallId"), failed=not success)]
        if kind == "assistant.usage":
            return [_usage(data)]
        if kind == "session.error":
            message = str(data.get("message") or data.get("errorType") or "session error")
            return end_of_run(message, error=message, http_status=http_status(data.get("statusCode")))
        if kind == "session.idle":
            return [ResultEvent(summary="session idle", success=True)]
        return []


def _count(value: Any) -> int:
    """Copilot's token counts may arrive as JSON floats; they are truncated, not dropped."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _usage(data: dict[str, Any]) -> UsageEvent:
    return UsageEvent(
        input_tokens=_count(data.get("inputTokens")),
        output_tokens=_count(data.get("outputTokens")),
        cache_read_tokens=_count(data.get("cacheReadTokens")),
        cache_write_tokens=_count(data.get("cacheWriteTokens")),
        # Copilot's "cost" is premium-request units, not USD; Optio imputes USD from the price table
        cost_usd=None,
        model=str_or_none(data.get("model")),
    )
