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
from collections.abc import Sequence
from typing import Any

from optio.agents.base import AgentConfigError, AgentRequest, CommandSpec
from optio.agents.events import (
    AgentEvent,
    ResultEvent,
    SessionEvent,
    TextEvent,
    ThinkingEvent,
    ToolResultEvent,
    ToolUseEvent,
    UsageEvent,
    load_json_object,
    summarize,
)
from optio.agents.failures import classify_run, error_event
from optio.agents.options import base_env, resolve_options
from optio.domain.agent_errors import AgentError

TOKEN_SECRET = "COPILOT_GITHUB_TOKEN"


class CopilotAgent:
    name = "copilot"
    cli = "copilot"

    def build_command(self, request: AgentRequest) -> CommandSpec:
        opts = resolve_options(
            request, vendor=self.name, default_api_key_secret=TOKEN_SECRET, default_oauth_secret=TOKEN_SECRET
        )
        if opts.base_url:
            raise AgentConfigError("copilot: the Copilot CLI cannot use a custom model endpoint (base_url)")
        argv = [str(request.config.get("cli") or self.cli), "-p", request.prompt, "--output-format", "json"]
        if opts.model:
            argv += ["--model", opts.model]
        if request.resume_session_id:
            argv += ["--resume", request.resume_session_id]
        mode = opts.permission_mode or "allow-all"
        if mode == "allow-all":
            argv += ["--allow-all-tools", "--no-ask-user"]
        elif mode != "ask":
            raise AgentConfigError(f"copilot: permission_mode must be 'allow-all' or 'ask', not {mode!r}")
        files: dict[str, str] = {}
        if request.mcp_servers:
            path = str(request.prompt_file.parent / "copilot-mcp.json")
            files[path] = json.dumps({"mcpServers": _mcp(request.mcp_servers)}, indent=2)
            argv += ["--additional-mcp-config", f"@{path}"]
        argv += list(opts.extra_args)
        env = base_env(request)
        if opts.secret_value is not None:
            env["COPILOT_GITHUB_TOKEN"] = opts.secret_value
        env["COPILOT_AUTO_UPDATE"] = "false"
        return CommandSpec(argv=argv, env=env, files=files)

    def secret_name(self, request: AgentRequest) -> str:
        config = request.config or {}
        return str(config.get("api_key_secret") or config.get("oauth_token_secret") or TOKEN_SECRET)

    def parse_line(self, line: str) -> list[AgentEvent]:
        event = load_json_object(line)
        if event is None:
            return []
        kind = event.get("type")
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        if kind in ("session.start", "session.resume"):
            session = data.get("sessionId")
            return [SessionEvent(session_id=session)] if isinstance(session, str) and session else []
        if kind == "assistant.message" and data.get("content"):
            return [TextEvent(text=str(data["content"]))]
        if kind == "assistant.reasoning" and data.get("content"):
            return [ThinkingEvent(text=str(data["content"]))]
        if kind == "tool.execution_start":
            return [
                ToolUseEvent(
                    name=str(data.get("toolName") or "?"),
                    input_summary=summarize(data.get("arguments") or {}),
                    tool_id=_str(data.get("toolCallId")),
                )
            ]
        if kind == "tool.execution_complete":
            success = data.get("success") is not False
            result = data.get("result") if isinstance(data.get("result"), dict) else {}
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            output = result.get("content") if success else error.get("message")
            return [ToolResultEvent(output=summarize(output or ""), tool_id=_str(data.get("toolCallId")),
                                    is_error=not success)]
        if kind == "assistant.usage":
            return [_usage(data)]
        if kind == "session.error":
            message = str(data.get("message") or data.get("errorType") or "session error")
            status = data.get("statusCode")
            return [
                error_event(message, http_status=status if isinstance(status, int) else None),
                ResultEvent(summary=message, success=False),
            ]
        if kind == "session.idle":
            return [ResultEvent(summary="session idle", success=True)]
        return []

    def classify_failure(
        self,
        exit_code: int | None,
        stderr_tail: str,
        events: Sequence[AgentEvent],
        *,
        secret_name: str | None = TOKEN_SECRET,
    ) -> AgentError | None:
        return classify_run(exit_code, stderr_tail, events, secret_name=secret_name)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _mcp(servers: Any) -> dict[str, Any]:
    """Copilot's MCP entries: ``local`` (command/args/env) or ``http`` (url/headers), all tools on."""
    result: dict[str, Any] = {}
    for name, spec in servers.items():
        if not isinstance(spec, dict):
            raise AgentConfigError(f"copilot: MCP server {name!r} must be a mapping")
        if spec.get("url"):
            entry: dict[str, Any] = {"type": "http", "url": str(spec["url"]), "tools": ["*"]}
            if spec.get("headers"):
                entry["headers"] = dict(spec["headers"])
        elif spec.get("command"):
            entry = {"type": "local", "command": str(spec["command"]),
                     "args": [str(a) for a in spec.get("args") or []], "tools": ["*"]}
            if spec.get("env"):
                entry["env"] = {str(k): str(v) for k, v in spec["env"].items()}
        else:
            raise AgentConfigError(f"copilot: MCP server {name!r} needs a command or a url")
        result[str(name)] = entry
    return result


def _usage(data: dict[str, Any]) -> UsageEvent:
    return UsageEvent(
        input_tokens=_int(data.get("inputTokens")),
        output_tokens=_int(data.get("outputTokens")),
        cache_read_tokens=_int(data.get("cacheReadTokens")),
        cache_write_tokens=_int(data.get("cacheWriteTokens")),
        # Copilot's "cost" is premium-request units, not USD; Optio imputes USD from the price table
        cost_usd=None,
        model=_str(data.get("model")),
    )
