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
from collections.abc import Mapping
from typing import Any

from optio.agents.base import AgentConfigError, AgentRequest, CommandSpec
from optio.agents.common import (
    VendorAgent,
    config_file,
    count,
    end_of_run,
    http_status,
    skills_markdown,
    str_or_none,
    sub_object,
    tool_result,
    tool_use,
)
from optio.agents.events import AgentEvent, ResultEvent, SessionEvent, TextEvent, ThinkingEvent, UsageEvent

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


class OpenCodeAgent(VendorAgent):
    name = "opencode"
    cli = "opencode"

    def default_api_key_secret(self, request: AgentRequest) -> str:
        """The key of the model's provider, so one config switches provider by model name alone."""
        config = request.config or {}
        model = request.model or config.get("model")
        provider = _provider_of(str(model) if model else None, request.base_url or config.get("base_url"))
        return PROVIDER_SECRETS.get(provider, "OPENAI_API_KEY")

    def build_command(self, request: AgentRequest) -> CommandSpec:
        opts = self.options(request)
        argv = [self.executable(request), "run", "--format", "json"]
        config: dict[str, Any] = {"autoupdate": False, "share": "disabled"}
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
            key_var = KEY_ENV
        else:
            key_var = PROVIDER_SECRETS.get(_provider_of(model, None), opts.secret_name)
        env = self.credential_env(request, opts, secret_var=key_var)
        if model:
            config["model"] = model
            argv += ["-m", model]
        if opts.max_turns is not None:
            config["agent"] = {"build": {"steps": opts.max_turns}}
        if opts.reasoning_effort:
            argv += ["--variant", opts.reasoning_effort]
        if request.mcp_servers:
            config["mcp"] = self._mcp_config(request.mcp_servers)
        files: dict[str, str] = {}
        if request.skills:
            path = config_file(request, "opencode-skills.md")
            files[path] = skills_markdown(request.skills)
            config["instructions"] = [path]
        if request.resume_session_id:
            argv += ["--session", request.resume_session_id]
        if self.permission_mode(opts, "auto", "config") == "auto":
            argv.append("--auto")
        argv += list(opts.extra_args)
        argv.append(request.prompt)
        env["OPENCODE_CONFIG_CONTENT"] = json.dumps(config)
        env["OPENCODE_DISABLE_AUTOUPDATE"] = "1"
        env["OPENCODE_DISABLE_MODELS_FETCH"] = "1"
        return CommandSpec(argv=argv, env=env, files=files)

    def _mcp_config(self, servers: Mapping[str, Any]) -> dict[str, Any]:
        return self.mcp_table(
            servers,
            remote=lambda server: {"type": "remote", "url": server.url, "enabled": True},
            local=lambda server: {"type": "local", "command": [server.command, *server.args], "enabled": True},
            env_key="environment",
        )

    def parse_object(self, data: dict[str, Any]) -> list[AgentEvent]:
        kind = data.get("type")
        part = sub_object(data, "part")
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


def _tool_events(part: dict[str, Any]) -> list[AgentEvent]:
    state = sub_object(part, "state")
    call_id = str_or_none(part.get("callID"))
    events: list[AgentEvent] = [tool_use(part.get("tool"), state.get("input"), call_id)]
    status = state.get("status")
    if status in ("completed", "error"):
        output = state.get("output") if status == "completed" else state.get("error")
        events.append(tool_result(output, call_id, failed=status == "error"))
    return events


def _step_finish(part: dict[str, Any]) -> list[AgentEvent]:
    events: list[AgentEvent] = []
    tokens = sub_object(part, "tokens")
    cache = sub_object(tokens, "cache")
    if tokens:
        usage = UsageEvent(
            input_tokens=count(tokens.get("input")),
            output_tokens=count(tokens.get("output")) + count(tokens.get("reasoning")),
            cache_read_tokens=count(cache.get("read")),
            cache_write_tokens=count(cache.get("write")),
        )
        cost = part.get("cost")
        # OpenCode reports 0 for providers it has no price for; that is "unknown", not "free"
        if isinstance(cost, int | float) and (cost > 0 or not (usage.input_tokens or usage.output_tokens)):
            usage = UsageEvent(**{**usage.__dict__, "cost_usd": float(cost)})
        events.append(usage)
    reason = part.get("reason")
    if isinstance(reason, str) and reason in _FINISHED:
        # a run cut short by length or content filter ends unsuccessfully without an error of its own
        events.append(ResultEvent(summary=f"finished ({reason})", success=reason in ("stop", "end_turn", "end-turn")))
    return events


def _error(error: Any) -> list[AgentEvent]:
    if not isinstance(error, dict):
        return end_of_run("error", error="opencode reported an error")
    data = sub_object(error, "data")
    message = str(data.get("message") or error.get("message") or error.get("name") or "error")
    name = str(error.get("name") or "")
    return end_of_run(
        message, error=f"{message} [{name}]" if name else message, http_status=http_status(data.get("statusCode"))
    )
