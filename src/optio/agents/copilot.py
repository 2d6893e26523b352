"""GitHub Copilot CLI (`copilot`, npm ``@github/copilot``), as of 1.0.102.

Runs ``copilot -p <prompt> --output-format json`` and reads its JSONL session events, each
``{"type", "data", "id", "timestamp", "parentId"}``: ``assistant.message`` (content, toolRequests,
model), ``assistant.reasoning``, ``tool.execution_start`` (toolCallId, toolName, arguments),
``tool.execution_complete`` (success, result/error), ``session.error`` (errorType ``authentication``,
``rate_limit``, ...; message, statusCode), ``assistant.idle``, and a last line
``{"type": "result", "sessionId", "exitCode", "usage"}`` that is not a session event. That ``usage``
has no token counts; the CLI writes those to ``--usage-output-file``. The command is wrapped in a
small shell script that prints that file as one JSON line when the CLI ends, so its per-model token
counts reach Optio with the rest of the stream (Copilot reports no USD cost: Optio imputes it).

Two ways to reach a model:

* ``base_url`` set (a self-hosted or local OpenAI/Anthropic-compatible endpoint): the CLI runs offline
  (``COPILOT_OFFLINE=true``: no GitHub login, telemetry or auto-update) against
  ``COPILOT_PROVIDER_BASE_URL`` with the key in ``COPILOT_PROVIDER_API_KEY`` (secret default
  ``COPILOT_PROVIDER_API_KEY``). ``provider_type`` (``openai`` default, ``azure``, ``anthropic``) and
  ``wire_api`` (``completions`` default, ``responses``) pick the API shape.
* no ``base_url``: GitHub's Copilot service with a GitHub token holding the Copilot entitlement
  (``COPILOT_GITHUB_TOKEN``; ``auth`` ``api_key`` and ``oauth`` both use it).

The CLI unpacks about 235 MB into ``$XDG_CACHE_HOME/copilot/pkg`` on first start; the command asks the
runner to share that directory between runs (``CommandSpec.shared_dirs``). Skills are written to the
user-level instructions file ``$HOME/.copilot/copilot-instructions.md`` of the run's own HOME, so they
never land in the worktree (1.0.102 did not read ``COPILOT_CUSTOM_INSTRUCTIONS_DIRS`` outside a git
root). Config keys beyond the common ones (see ``optio.agents.options``): ``cli`` (default
``copilot``), ``permission_mode``: ``allow-all`` (default, ``--allow-all-tools``) or ``ask``. MCP
servers are passed with ``--additional-mcp-config @<file>``. ``max_turns`` has no Copilot equivalent
and is ignored. Resume uses ``--resume <session id>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
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
from optio.agents.failures import error_event
from optio.agents.gemini import skills_text
from optio.domain.agent_errors import AgentError

TOKEN_SECRET = "COPILOT_GITHUB_TOKEN"
PROVIDER_KEY_SECRET = "COPILOT_PROVIDER_API_KEY"
PROVIDER_TYPES = ("openai", "azure", "anthropic")
WIRE_APIS = ("completions", "responses")
# The CLI's package cache, relative to HOME (the runner sets XDG_CACHE_HOME to $HOME/.cache).
PKG_CACHE = ".cache/copilot/pkg"
# Runs the CLI, then prints its usage file as one line (pretty JSON has no newline inside strings).
USAGE_WRAPPER = (
    'usage="$(mktemp)"; "$@" --usage-output-file "$usage"; code=$?; '
    'if [ -s "$usage" ]; then tr -d "\\n" < "$usage"; echo; fi; rm -f "$usage"; exit "$code"'
)


class CopilotAgent(VendorAgent):
    name = "copilot"
    cli = "copilot"
    oauth_secret = TOKEN_SECRET

    def default_api_key_secret(self, request: AgentRequest) -> str:
        return PROVIDER_KEY_SECRET if _base_url(request) else TOKEN_SECRET

    def build_command(self, request: AgentRequest) -> CommandSpec:
        opts = self.options(request)
        argv = [self.executable(request), "-p", request.prompt, "--output-format", "json", "--no-auto-update"]
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
        if opts.base_url:
            env = self.credential_env(request, opts, secret_var=PROVIDER_KEY_SECRET,
                                      base_url_var="COPILOT_PROVIDER_BASE_URL",
                                      clear=(TOKEN_SECRET, "GH_TOKEN", "GITHUB_TOKEN"))
            env["COPILOT_OFFLINE"] = "true"
            env["COPILOT_PROVIDER_TYPE"] = _choice(request.config, "provider_type", PROVIDER_TYPES)
            env["COPILOT_PROVIDER_WIRE_API"] = _choice(request.config, "wire_api", WIRE_APIS)
        else:
            env = self.credential_env(request, opts, secret_var=TOKEN_SECRET,
                                      clear=("COPILOT_PROVIDER_BASE_URL", "COPILOT_OFFLINE"))
        env["COPILOT_AUTO_UPDATE"] = "false"
        if request.skills:
            home = request.env.get("HOME")
            if not home:
                raise AgentConfigError("copilot: the run environment has no HOME for the skills' instructions file")
            files[str(Path(home) / ".copilot" / "copilot-instructions.md")] = skills_text(request.skills)
        argv = ["/bin/sh", "-c", USAGE_WRAPPER, "copilot-usage", *argv]
        return CommandSpec(argv=argv, env=env, files=files, shared_dirs={"copilot-pkg": PKG_CACHE})

    def secret_name(self, request: AgentRequest) -> str:
        """Copilot has one credential per mode, so either secret key names it, whichever auth mode is set."""
        config = request.config or {}
        default = self.default_api_key_secret(request)
        return str(config.get("api_key_secret") or config.get("oauth_token_secret") or default)

    def classify_failure(
        self, exit_code: int | None, stderr_tail: str, events: Any, **kwargs: Any
    ) -> AgentError | None:
        """Without a named secret, an auth failure names the key the CLI says it used."""
        if "secret_name" not in kwargs:
            texts = " ".join(getattr(e, "message", "") for e in events)
            provider = "with provider" in texts or PROVIDER_KEY_SECRET in texts
            kwargs["secret_name"] = PROVIDER_KEY_SECRET if provider else TOKEN_SECRET
        return super().classify_failure(exit_code, stderr_tail, events, **kwargs)

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
        if kind == "result":
            return _result(event)
        if kind is None and isinstance(event.get("modelMetrics"), dict):
            return _usage_file(event)
        if kind in ("session.start", "session.resume"):
            session = data.get("sessionId")
            return [SessionEvent(session_id=session)] if isinstance(session, str) and session else []
        if kind == "assistant.message":
            events: list[AgentEvent] = []
            if data.get("content"):
                events.append(TextEvent(text=str(data["content"])))
            return events
        if kind == "assistant.reasoning" and data.get("content"):
            return [ThinkingEvent(text=str(data["content"]))]
        if kind == "tool.execution_start":
            return [tool_use(data.get("toolName"), data.get("arguments"), data.get("toolCallId"))]
        if kind == "tool.execution_complete":
            success = data.get("success") is not False
            output = sub_object(data, "result").get("content") if success else sub_object(data, "error").get("message")
            return [tool_result(output or ("ok" if success else "failed"), data.get("toolCallId"), failed=not success)]
        if kind == "assistant.usage":
            return [_usage(data, str_or_none(data.get("model")))]
        if kind == "session.error":
            message = str(data.get("message") or data.get("errorType") or "session error")
            error_type = data.get("errorType")
            status = http_status(data.get("statusCode"))
            if error_type == "authentication":
                status = status or 401
            elif error_type == "rate_limit":
                status = 429
            return [error_event(message, http_status=status)]
        return []


def _base_url(request: AgentRequest) -> str | None:
    value = request.base_url or (request.config or {}).get("base_url")
    return (str(value).strip() or None) if value else None


def _choice(config: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = str(config.get(key) or choices[0])
    if value not in choices:
        allowed = " or ".join(repr(c) for c in choices)
        raise AgentConfigError(f"copilot: {key} must be {allowed}, not {value!r}")
    return value


def _result(event: dict[str, Any]) -> list[AgentEvent]:
    """The CLI's last line: the session to resume and how the run ended (errors came as ``session.error``)."""
    events: list[AgentEvent] = []
    session = event.get("sessionId")
    if isinstance(session, str) and session:
        events.append(SessionEvent(session_id=session))
    code = event.get("exitCode")
    if code == 0:
        return events + end_of_run("completed")
    return [*events, ResultEvent(summary=f"copilot exited {code}", success=False)]


def _count(value: Any) -> int:
    """Copilot's token counts may arrive as JSON floats; they are truncated, not dropped."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _usage(data: Mapping[str, Any], model: str | None) -> UsageEvent:
    return UsageEvent(
        input_tokens=_count(data.get("inputTokens")),
        output_tokens=_count(data.get("outputTokens")),
        cache_read_tokens=_count(data.get("cacheReadTokens")),
        cache_write_tokens=_count(data.get("cacheWriteTokens")),
        # Copilot's "cost" is premium-request units, not USD; Optio imputes USD from the price table
        cost_usd=None,
        model=model,
    )


def _usage_file(data: dict[str, Any]) -> list[AgentEvent]:
    """The ``--usage-output-file`` contents: one usage event per model that was called."""
    events: list[AgentEvent] = []
    for model, metrics in data["modelMetrics"].items():
        if isinstance(metrics, dict):
            usage = _usage(sub_object(metrics, "usage"), str_or_none(model))
            if usage.input_tokens or usage.output_tokens or usage.cache_read_tokens or usage.cache_write_tokens:
                events.append(usage)
    return events

