"""OpenAI Codex CLI (`codex`, npm ``@openai/codex``).

Runs ``codex exec --json -`` (prompt on stdin) and reads its JSONL stream: ``thread.started``
(session id), ``item.started``/``item.completed`` for agent messages, reasoning, command executions,
file changes and MCP tool calls, ``turn.completed`` with token usage (no cost: Optio imputes it) and
``turn.failed``/``error`` on failure.

The model endpoint is always declared as an Optio-defined provider through ``-c`` overrides
(``model_providers.optio.base_url`` / ``env_key`` / ``wire_api="responses"``), so the same command
works against api.openai.com and any OpenAI-compatible server; the key travels in the env var named
by ``env_key``, never on the command line.

Config keys beyond the common ones (see ``optio.agents.options``): ``cli`` (default ``codex``),
``permission_mode``: ``bypass`` (default: no approvals, no sandbox; Optio isolates the workspace) or a
Codex sandbox mode (``workspace-write``, ``read-only``, ``danger-full-access``) with approvals off.
Auth: ``api_key`` (secret default ``OPENAI_API_KEY``); ``oauth`` writes a ChatGPT login
(``auth.json`` contents, secret default ``CODEX_AUTH_JSON``) into ``$CODEX_HOME``. ``max_turns`` has
no Codex equivalent and is ignored. ``max_retries`` bounds Codex's own API retries (default 2).
Resume uses ``codex exec resume <session id>``.
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

API_KEY_SECRET = "OPENAI_API_KEY"
OAUTH_SECRET = "CODEX_AUTH_JSON"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
PROVIDER = "optio"
# Codex's own API retries; few, so a bad key fails in seconds and a lasting 429 reaches Optio's backoff.
DEFAULT_MAX_RETRIES = 2


def _toml(value: Any) -> str:
    """A TOML literal for a ``-c key=value`` override (JSON strings/arrays are valid TOML)."""
    return json.dumps(value)


class CodexAgent:
    name = "codex"
    cli = "codex"

    def build_command(self, request: AgentRequest) -> CommandSpec:
        opts = resolve_options(
            request, vendor=self.name, default_api_key_secret=API_KEY_SECRET, default_oauth_secret=OAUTH_SECRET
        )
        cli = str(request.config.get("cli") or self.cli)
        argv = [cli, "exec"]
        if request.resume_session_id:
            argv += ["resume"]
        argv += ["--json", "--skip-git-repo-check"] if not request.resume_session_id else ["--json"]
        if opts.model:
            argv += ["-m", opts.model]
        overrides: list[tuple[str, Any]] = [("check_for_update_on_startup", False), ("analytics.enabled", False)]
        env = base_env(request)
        files: dict[str, str] = {}
        retries = int(request.config.get("max_retries", DEFAULT_MAX_RETRIES))
        if opts.auth == "api_key":
            env_key = "OPTIO_CODEX_API_KEY" if opts.secret_name != API_KEY_SECRET else API_KEY_SECRET
            overrides += [
                ("model_provider", PROVIDER),
                (f"model_providers.{PROVIDER}.name", "Optio"),
                (f"model_providers.{PROVIDER}.base_url", opts.base_url or DEFAULT_BASE_URL),
                (f"model_providers.{PROVIDER}.env_key", env_key),
                (f"model_providers.{PROVIDER}.wire_api", "responses"),
                (f"model_providers.{PROVIDER}.request_max_retries", retries),
                (f"model_providers.{PROVIDER}.stream_max_retries", retries),
            ]
            if opts.secret_value is not None:
                env[env_key] = opts.secret_value
        else:
            codex_home = env.get("CODEX_HOME") or (f"{env['HOME']}/.codex" if env.get("HOME") else None)
            if codex_home is None:
                raise AgentConfigError("codex: oauth auth needs HOME or CODEX_HOME in the run environment")
            if opts.secret_value is not None:
                files[f"{codex_home}/auth.json"] = opts.secret_value
            if opts.base_url:
                overrides.append(("openai_base_url", opts.base_url))
        mode = opts.permission_mode or "bypass"
        if mode == "bypass":
            argv.append("--dangerously-bypass-approvals-and-sandbox")
        else:
            overrides += [("sandbox_mode", mode), ("approval_policy", "never")]
        overrides += _mcp_overrides(request.mcp_servers, env)
        for key, value in overrides:
            argv += ["-c", f"{key}={_toml(value)}"]
        argv += list(opts.extra_args)
        if request.resume_session_id:
            argv.append(request.resume_session_id)
        argv.append("-")
        return CommandSpec(argv=argv, env=env, stdin_path=request.prompt_file, files=files)

    def secret_name(self, request: AgentRequest) -> str:
        config = request.config or {}
        if config.get("auth") == "oauth":
            return str(config.get("oauth_token_secret") or OAUTH_SECRET)
        return str(config.get("api_key_secret") or API_KEY_SECRET)

    def parse_line(self, line: str) -> list[AgentEvent]:
        data = load_json_object(line)
        if data is None:
            return []
        kind = data.get("type")
        if kind == "thread.started" and isinstance(data.get("thread_id"), str):
            return [SessionEvent(session_id=data["thread_id"])]
        if kind == "item.started":
            return _item_started(data.get("item"))
        if kind == "item.completed":
            return _item_completed(data.get("item"))
        if kind == "turn.completed":
            return [*_usage(data.get("usage")), ResultEvent(summary="turn completed", success=True)]
        if kind == "turn.failed":
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            message = str(error.get("message") or "turn failed")
            return [error_event(message), ResultEvent(summary=message, success=False)]
        if kind == "error" and isinstance(data.get("message"), str):
            return [error_event(data["message"])]
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


def _mcp_overrides(servers: Mapping[str, Any], env: dict[str, str]) -> list[tuple[str, Any]]:
    """Codex ``mcp_servers.<name>`` entries; server env values go into the process env by name."""
    overrides: list[tuple[str, Any]] = []
    for name, spec in servers.items():
        if not isinstance(spec, Mapping):
            raise AgentConfigError(f"codex: MCP server {name!r} must be a mapping")
        prefix = f"mcp_servers.{name}"
        if spec.get("url"):
            overrides.append((f"{prefix}.url", str(spec["url"])))
            if spec.get("bearer_token_env_var"):
                overrides.append((f"{prefix}.bearer_token_env_var", str(spec["bearer_token_env_var"])))
        elif spec.get("command"):
            overrides.append((f"{prefix}.command", str(spec["command"])))
            overrides.append((f"{prefix}.args", [str(a) for a in spec.get("args") or []]))
        else:
            raise AgentConfigError(f"codex: MCP server {name!r} needs a command or a url")
        server_env = spec.get("env") or {}
        if server_env:
            env.update({str(k): str(v) for k, v in server_env.items()})
            overrides.append((f"{prefix}.env_vars", sorted(str(k) for k in server_env)))
    return overrides


def _item_started(item: Any) -> list[AgentEvent]:
    if not isinstance(item, dict):
        return []
    itype = item.get("type")
    item_id = item.get("id") if isinstance(item.get("id"), str) else None
    if itype == "command_execution":
        return [ToolUseEvent(name="shell", input_summary=summarize(item.get("command") or ""), tool_id=item_id)]
    if itype == "mcp_tool_call":
        name = f"{item.get('server', 'mcp')}.{item.get('tool', '?')}"
        return [ToolUseEvent(name=name, input_summary=summarize(item.get("arguments") or {}), tool_id=item_id)]
    if itype == "web_search":
        return [ToolUseEvent(name="web_search", input_summary=summarize(item.get("query") or ""), tool_id=item_id)]
    return []


def _item_completed(item: Any) -> list[AgentEvent]:
    if not isinstance(item, dict):
        return []
    itype = item.get("type")
    item_id = item.get("id") if isinstance(item.get("id"), str) else None
    if itype == "agent_message" and item.get("text"):
        return [TextEvent(text=str(item["text"]))]
    if itype == "reasoning" and item.get("text"):
        return [ThinkingEvent(text=str(item["text"]))]
    if itype == "command_execution":
        exit_code = item.get("exit_code")
        failed = item.get("status") == "failed" or (isinstance(exit_code, int) and exit_code != 0)
        output = summarize(item.get("aggregated_output") or f"exit code {exit_code}")
        return [ToolResultEvent(output=output, tool_id=item_id, is_error=failed)]
    if itype == "file_change":
        changes = item.get("changes") if isinstance(item.get("changes"), list) else []
        summary = ", ".join(f"{c.get('kind', '?')} {c.get('path', '?')}" for c in changes if isinstance(c, dict))
        failed = item.get("status") == "failed"
        return [
            ToolUseEvent(name="apply_patch", input_summary=summarize(summary), tool_id=item_id),
            ToolResultEvent(output=str(item.get("status") or ""), tool_id=item_id, is_error=failed),
        ]
    if itype == "mcp_tool_call":
        failed = item.get("status") == "failed" or bool(item.get("error"))
        result = item.get("error") or item.get("result") or ""
        return [ToolResultEvent(output=summarize(result), tool_id=item_id, is_error=failed)]
    if itype == "error" and item.get("message"):
        # item-level errors are warnings Codex carries on from; turn.failed reports real failures
        return [ErrorEvent(kind="unknown", message=summarize(item["message"]))]
    return []


def _usage(usage: Any) -> list[AgentEvent]:
    if not isinstance(usage, dict):
        return []

    def n(key: str) -> int:
        value = usage.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    cached = n("cached_input_tokens")
    return [
        UsageEvent(
            input_tokens=max(0, n("input_tokens") - cached),
            output_tokens=n("output_tokens"),
            cache_read_tokens=cached,
            cache_write_tokens=n("cache_write_input_tokens"),
        )
    ]
