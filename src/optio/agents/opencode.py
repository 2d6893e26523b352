"""OpenCode (`opencode`, npm ``opencode-ai``).

Runs ``opencode run --format json <prompt>`` and reads its JSONL stream: ``step_start`` (carries the
session id), ``text``, ``reasoning``, ``tool_use`` (a finished tool call with its input and output),
``step_finish`` (tokens and cost of one model step; ``reason`` other than ``tool-calls`` ends the run)
and ``error``.

Configuration travels in ``OPENCODE_CONFIG_CONTENT`` (inline JSON config): with a ``base_url`` an
OpenAI-compatible provider named ``optio`` is declared and the model becomes ``optio/<model>``; MCP
servers go under ``mcp``. The API key is referenced as ``{env:...}`` so it stays in the environment.

Config keys beyond the common ones (see ``optio.agents.options``): ``cli`` (default ``opencode``),
``permission_mode``: ``auto`` (default, ``--auto``: approve everything not explicitly denied) or
``config`` (leave permissions to OpenCode's own config). Models are ``provider/model``; the default
API key secret follows the provider (``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``, ``GEMINI_API_KEY``,
``OPENAI_API_KEY`` for a ``base_url`` endpoint). ``max_turns`` becomes the build agent's ``steps``
limit. OAuth logins are OpenCode's own (``opencode auth login``) and not driven by Optio. Resume uses
``--session <session id>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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

PROVIDER = "optio"
KEY_ENV = "OPTIO_OPENCODE_API_KEY"
PROVIDER_SECRETS = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "google": "GEMINI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "groq": "GROQ_API_KEY",
}
_FINISHED = ("stop", "end_turn", "end-turn", "length", "content-filter")


def _provider_of(model: str | None, base_url: str | None) -> str:
    if base_url:
        return PROVIDER
    if model and "/" in model:
        return model.split("/", 1)[0]
    return "openai"


class OpenCodeAgent:
    name = "opencode"
    cli = "opencode"

    def default_secret(self, request: AgentRequest) -> str:
        config = request.config or {}
        model = request.model or config.get("model")
        provider = _provider_of(str(model) if model else None, request.base_url or config.get("base_url"))
        return PROVIDER_SECRETS.get(provider, "OPENAI_API_KEY")

    def build_command(self, request: AgentRequest) -> CommandSpec:
        opts = resolve_options(request, vendor=self.name, default_api_key_secret=self.default_secret(request))
        argv = [str(request.config.get("cli") or self.cli), "run", "--format", "json"]
        config: dict[str, Any] = {"autoupdate": False, "share": "disabled"}
        env = base_env(request)
        model = opts.model
        if opts.base_url:
            bare = model.split("/", 1)[1] if model and model.startswith(f"{PROVIDER}/") else model
            if not bare:
                raise AgentConfigError("opencode: a base_url endpoint needs a model name")
            config["provider"] = {
                PROVIDER: {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": "Optio endpoint",
                    "options": {"baseURL": opts.base_url, "apiKey": "{env:" + KEY_ENV + "}"},
                    "models": {bare: {"name": bare}},
                }
            }
            model = f"{PROVIDER}/{bare}"
            if opts.secret_value is not None:
                env[KEY_ENV] = opts.secret_value
        elif opts.secret_value is not None:
            provider = _provider_of(model, None)
            env[PROVIDER_SECRETS.get(provider, opts.secret_name)] = opts.secret_value
        if model:
            config["model"] = model
            argv += ["-m", model]
        if opts.max_turns is not None:
            config["agent"] = {"build": {"steps": opts.max_turns}}
        if request.mcp_servers:
            config["mcp"] = _mcp_config(request.mcp_servers)
        if request.resume_session_id:
            argv += ["--session", request.resume_session_id]
        mode = opts.permission_mode or "auto"
        if mode == "auto":
            argv.append("--auto")
        elif mode != "config":
            raise AgentConfigError(f"opencode: permission_mode must be 'auto' or 'config', not {mode!r}")
        argv += list(opts.extra_args)
        argv.append(request.prompt)
        env["OPENCODE_CONFIG_CONTENT"] = json.dumps(config)
        env["OPENCODE_DISABLE_AUTOUPDATE"] = "1"
        env["OPENCODE_DISABLE_MODELS_FETCH"] = "1"
        return CommandSpec(argv=argv, env=env)

    def secret_name(self, request: AgentRequest) -> str:
        return str((request.config or {}).get("api_key_secret") or self.default_secret(request))

    def parse_line(self, line: str) -> list[AgentEvent]:
        data = load_json_object(line)
        if data is None:
            return []
        kind = data.get("type")
        part = data.get("part") if isinstance(data.get("part"), dict) else {}
        if kind == "step_start":
            session = data.get("sessionID") or part.get("sessionID")
            return [SessionEvent(session_id=session)] if isinstance(session, str) and session else []
        if kind == "text" and part.get("text"):
            return [TextEvent(text=str(part["text"]))]
        if kind == "reasoning" and part.get("text"):
            return [ThinkingEvent(text=str(part["text"]))]
        if kind == "tool_use":
            return _tool_events(part)
        if kind == "step_finish":
            return _step_finish(part)
        if kind == "error":
            return _error(data.get("error"))
        return []

    def classify_failure(
        self,
        exit_code: int | None,
        stderr_tail: str,
        events: Sequence[AgentEvent],
        *,
        secret_name: str | None = None,
    ) -> AgentError | None:
        return classify_run(exit_code, stderr_tail, events, secret_name=secret_name)


def _mcp_config(servers: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, spec in servers.items():
        if not isinstance(spec, Mapping):
            raise AgentConfigError(f"opencode: MCP server {name!r} must be a mapping")
        if spec.get("url"):
            entry: dict[str, Any] = {"type": "remote", "url": str(spec["url"]), "enabled": True}
            if spec.get("headers"):
                entry["headers"] = dict(spec["headers"])
        elif spec.get("command"):
            command = [str(spec["command"]), *(str(a) for a in spec.get("args") or [])]
            entry = {"type": "local", "command": command, "enabled": True}
            if spec.get("env"):
                entry["environment"] = {str(k): str(v) for k, v in spec["env"].items()}
        else:
            raise AgentConfigError(f"opencode: MCP server {name!r} needs a command or a url")
        result[str(name)] = entry
    return result


def _tool_events(part: dict[str, Any]) -> list[AgentEvent]:
    state = part.get("state") if isinstance(part.get("state"), dict) else {}
    call_id = part.get("callID") if isinstance(part.get("callID"), str) else None
    events: list[AgentEvent] = [
        ToolUseEvent(
            name=str(part.get("tool") or "?"), input_summary=summarize(state.get("input") or {}), tool_id=call_id
        )
    ]
    status = state.get("status")
    if status in ("completed", "error"):
        output = state.get("output") if status == "completed" else state.get("error")
        events.append(ToolResultEvent(output=summarize(output or ""), tool_id=call_id, is_error=status == "error"))
    return events


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _step_finish(part: dict[str, Any]) -> list[AgentEvent]:
    events: list[AgentEvent] = []
    tokens = part.get("tokens") if isinstance(part.get("tokens"), dict) else {}
    cache = tokens.get("cache") if isinstance(tokens.get("cache"), dict) else {}
    if tokens:
        usage = UsageEvent(
            input_tokens=_int(tokens.get("input")),
            output_tokens=_int(tokens.get("output")) + _int(tokens.get("reasoning")),
            cache_read_tokens=_int(cache.get("read")),
            cache_write_tokens=_int(cache.get("write")),
        )
        cost = part.get("cost")
        # OpenCode reports 0 for providers it has no price for; that is "unknown", not "free"
        if isinstance(cost, int | float) and (cost > 0 or not (usage.input_tokens or usage.output_tokens)):
            usage = UsageEvent(**{**usage.__dict__, "cost_usd": float(cost)})
        events.append(usage)
    reason = part.get("reason")
    if isinstance(reason, str) and reason in _FINISHED:
        events.append(ResultEvent(summary=f"finished ({reason})", success=reason in ("stop", "end_turn", "end-turn")))
    return events


def _error(error: Any) -> list[AgentEvent]:
    if not isinstance(error, dict):
        return [error_event("opencode reported an error"), ResultEvent(summary="error", success=False)]
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    message = str(data.get("message") or error.get("message") or error.get("name") or "error")
    status = data.get("statusCode")
    name = str(error.get("name") or "")
    text = f"{message} [{name}]" if name else message
    return [
        error_event(text, http_status=status if isinstance(status, int) else None),
        ResultEvent(summary=message, success=False),
    ]
