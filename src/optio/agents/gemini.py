"""Google Gemini CLI (`gemini`, npm ``@google/gemini-cli``), as of 0.61.

Runs ``gemini --output-format stream-json --skip-trust -p <prompt>`` and reads its headless stream:
``init`` (session id, model), ``message`` (role + content; the assistant's text arrives in chunks
flagged ``delta``), ``tool_use`` (tool_name, tool_id, parameters), ``tool_result`` (tool_id, status,
output or error; a successful write has no output), ``error`` (severity, message) and ``result``
(status, error, stats with token counts overall and per model in ``stats.models``; no cost, so
Optio imputes it).

The CLI reads its settings from ``$HOME/.gemini/settings.json``; the run's own HOME (kept between the
attempts of a run, so ``--resume`` finds the session) gets one selecting API-key auth (without it the
CLI exits 41, ``Invalid auth method selected``), the turn cap, MCP servers, and a bound on the CLI's
own retries of a failed model call: by default it retries a 429 for minutes, here it gives up after
``max_attempts`` (default 2) so a lasting rate limit ends the attempt and Optio's own backoff takes
over. ``GEMINI_CLI_SYSTEM_SETTINGS_PATH`` is not used: the CLI ignores that file unless it and every
parent directory are root-owned and not group/other-writable. ``--skip-trust`` is needed in a folder
it has not been told to trust (else it exits 55 before any request). Skills go to
``$HOME/.gemini/GEMINI.md``, the user-level context file it reads, outside the worktree.

``base_url`` becomes ``GOOGLE_GEMINI_BASE_URL``. Config keys beyond the common ones (see
``optio.agents.options``): ``cli`` (default ``gemini``), ``permission_mode`` = Gemini's
``--approval-mode`` (default ``yolo``), ``max_attempts`` (1-10, the CLI's tries per model call). Auth is
an API key (secret default ``GEMINI_API_KEY``); Google-account login is interactive only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from optio.agents.base import AgentConfigError, AgentRequest, CommandSpec
from optio.agents.common import (
    VendorAgent,
    config_file,
    count,
    end_of_run,
    str_or_none,
    sub_object,
    tool_result,
    tool_use,
    uncached_input,
)
from optio.agents.events import AgentEvent, ErrorEvent, SessionEvent, TextEvent, UsageEvent, summarize
from optio.agents.failures import error_event

API_KEY_SECRET = "GEMINI_API_KEY"
DEFAULT_MAX_ATTEMPTS = 2


class GeminiAgent(VendorAgent):
    name = "gemini"
    cli = "gemini"
    api_key_secret = API_KEY_SECRET

    def build_command(self, request: AgentRequest) -> CommandSpec:
        opts = self.options(request)
        argv = [self.executable(request), "--output-format", "stream-json", "--skip-trust"]
        if opts.model:
            argv += ["--model", opts.model]
        if request.resume_session_id:
            argv += ["--resume", request.resume_session_id]
        argv += ["--approval-mode", opts.permission_mode or "yolo"]
        settings: dict[str, Any] = {
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
            "general": {"disableAutoUpdate": True, "maxAttempts": _max_attempts(request.config)},
        }
        if opts.max_turns is not None:
            settings["model"] = {"maxSessionTurns": opts.max_turns}
        if request.mcp_servers:
            settings["mcpServers"] = self._mcp_settings(request.mcp_servers)
        argv += list(opts.extra_args)
        argv += ["--prompt", request.prompt]
        env = self.credential_env(
            request, opts, secret_var=API_KEY_SECRET, base_url_var="GOOGLE_GEMINI_BASE_URL",
            clear=("GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_GCA"),
        )
        # V8 reserves about 10 GB of address space per WebAssembly memory for its bounds-check trap handler;
        # under the sandbox's address-space limit the CLI's HTTP client (undici's wasm parser) then cannot
        # start. Without the trap handler it uses explicit bounds checks and a normal reservation.
        env["NODE_OPTIONS"] = " ".join(filter(None, (env.get("NODE_OPTIONS"), "--disable-wasm-trap-handler")))
        home = request.env.get("HOME")
        if not home:  # not one of Optio's runs (they all have a HOME of their own): keep it beside the prompt
            home = config_file(request, "gemini-home")
            env["GEMINI_CLI_HOME"] = home
        gemini_dir = Path(home) / ".gemini"
        files = {str(gemini_dir / "settings.json"): json.dumps(settings, indent=2)}
        if request.skills:
            files[str(gemini_dir / "GEMINI.md")] = skills_text(request.skills)
        return CommandSpec(argv=argv, env=env, files=files)

    def _mcp_settings(self, servers: Mapping[str, Any]) -> dict[str, Any]:
        return self.mcp_table(
            servers,
            remote=lambda server: {"httpUrl": server.url},
            local=lambda server: {"command": server.command, "args": server.args},
        )

    def is_text_chunk(self, line: str) -> bool:
        """An assistant ``delta`` message: a chunk of text that the next chunks continue (the run log joins them)."""
        return '"delta":true' in line.replace(" ", "") and '"role":"assistant"' in line.replace(" ", "")

    def parse_lines(self, lines: Iterable[str]) -> list[AgentEvent]:
        """A whole stream's events, with the assistant's ``delta`` chunks of one message joined."""
        events: list[AgentEvent] = []
        merging = False
        for line in lines:
            chunk = self.is_text_chunk(line)
            for event in self.parse_line(line):
                last = events[-1] if events else None
                if chunk and merging and isinstance(event, TextEvent) and isinstance(last, TextEvent):
                    events[-1] = TextEvent(text=last.text + event.text)
                else:
                    events.append(event)
            merging = chunk
        return events

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
            if not failed and not output:
                output = "ok"  # a successful write reports no output: say that it succeeded
            return [tool_result(output, data.get("tool_id"), failed=failed)]
        if kind == "error":
            message = str(data.get("message") or "error")
            if data.get("severity") == "warning":
                return [ErrorEvent(kind="unknown", message=summarize(message))]
            return [error_event(message)]
        if kind == "result":
            return _result(data)
        return []


def skills_text(skills: Mapping[str, str]) -> str:
    """Skills as one instructions document, each under its name."""
    parts = ["# Skills\n\nInstructions available for this task, by name.\n"]
    parts += [f"## {name}\n\n{text.strip()}\n" for name, text in skills.items()]
    return "\n".join(parts)


def _max_attempts(config: Mapping[str, Any]) -> int:
    value = config.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        raise AgentConfigError(f"gemini: max_attempts must be an integer from 1 to 10, not {value!r}")
    return value


def _usage(stats: Mapping[str, Any], model: str | None) -> UsageEvent:
    cached = count(stats.get("cached"))
    total = count(stats.get("input_tokens"))
    uncached = count(stats["input"]) if "input" in stats else uncached_input(total, cached)
    return UsageEvent(
        input_tokens=uncached,
        output_tokens=count(stats.get("output_tokens")),
        cache_read_tokens=cached,
        model=model,
    )


def _result(data: dict[str, Any]) -> list[AgentEvent]:
    """The run's usage per model (``stats.models``, so each is priced as its own model), then its end."""
    stats = sub_object(data, "stats")
    models = {name: value for name, value in sub_object(stats, "models").items() if isinstance(value, dict)}
    usages = [_usage(per_model, str_or_none(name)) for name, per_model in models.items()]
    if stats and not usages:
        usages = [_usage(stats, None)]
    events: list[AgentEvent] = [u for u in usages[:-1] if u.input_tokens or u.output_tokens or u.cache_read_tokens]
    last = usages[-1] if usages else None
    if data.get("status") == "success":
        return events + end_of_run(str(data.get("status", "")), usage=last)
    error = sub_object(data, "error")
    summary = str(error.get("message") or "")
    failure = f"{summary} [{error.get('type', '')}]" if summary else "gemini run failed"
    return events + end_of_run(summary or str(data.get("status", "")), usage=last, error=failure)
