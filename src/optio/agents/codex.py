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
from collections.abc import Mapping
from typing import Any

from optio.agents.base import AgentConfigError, AgentRequest, CommandSpec
from optio.agents.common import (
    VendorAgent,
    count,
    end_of_run,
    home_dir,
    skills_markdown,
    str_or_none,
    sub_object,
    tool_result,
    tool_use,
    uncached_input,
)
from optio.agents.events import (
    AgentEvent,
    ErrorEvent,
    SessionEvent,
    TextEvent,
    ThinkingEvent,
    ToolResultEvent,
    ToolUseEvent,
    UsageEvent,
    summarize,
)
from optio.agents.failures import error_event
from optio.agents.options import base_env

API_KEY_SECRET = "OPENAI_API_KEY"
OAUTH_SECRET = "CODEX_AUTH_JSON"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
PROVIDER = "optio"
# Codex's own API retries; few, so a bad key fails in seconds and a lasting 429 reaches Optio's backoff.
DEFAULT_MAX_RETRIES = 2


def _toml(value: Any) -> str:
    """A TOML literal for a ``-c key=value`` override (JSON strings/arrays are valid TOML)."""
    return json.dumps(value)


class CodexAgent(VendorAgent):
    name = "codex"
    cli = "codex"
    api_key_secret = API_KEY_SECRET
    oauth_secret = OAUTH_SECRET

    def build_command(self, request: AgentRequest) -> CommandSpec:
        opts = self.options(request)
        argv = [self.executable(request), "exec"]
        if request.resume_session_id:
            argv += ["resume"]
        argv += ["--json", "--skip-git-repo-check"] if not request.resume_session_id else ["--json"]
        if opts.model:
            argv += ["-m", opts.model]
        overrides: list[tuple[str, Any]] = [("check_for_update_on_startup", False), ("analytics.enabled", False)]
        files: dict[str, str] = {}
        retries = int(request.config.get("max_retries", DEFAULT_MAX_RETRIES))
        if opts.auth == "api_key":
            env_key = "OPTIO_CODEX_API_KEY" if opts.secret_name != API_KEY_SECRET else API_KEY_SECRET
            env = self.credential_env(request, opts, secret_var=env_key)
            overrides += [
                ("model_provider", PROVIDER),
                (f"model_providers.{PROVIDER}.name", "Optio"),
                (f"model_providers.{PROVIDER}.base_url", opts.base_url or DEFAULT_BASE_URL),
                (f"model_providers.{PROVIDER}.env_key", env_key),
                (f"model_providers.{PROVIDER}.wire_api", "responses"),
                (f"model_providers.{PROVIDER}.request_max_retries", retries),
                (f"model_providers.{PROVIDER}.stream_max_retries", retries),
            ]
        else:
            # a ChatGPT login is a file Codex reads from its home, not an env var
            env = base_env(request)
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
        if opts.reasoning_effort:
            overrides.append(("model_reasoning_effort", opts.reasoning_effort))
        overrides += self._mcp_overrides(request.mcp_servers, env)
        if request.skills:
            # Codex reads global instructions from AGENTS.md in its home, beside the repo's own AGENTS.md.
            codex_home = env.get("CODEX_HOME") or f"{home_dir(request, self.name, 'skills')}/.codex"
            files[f"{codex_home}/AGENTS.md"] = skills_markdown(request.skills)
        for key, value in overrides:
            argv += ["-c", f"{key}={_toml(value)}"]
        argv += list(opts.extra_args)
        if request.resume_session_id:
            argv.append(request.resume_session_id)
        argv.append("-")
        return CommandSpec(argv=argv, env=env, stdin_path=request.prompt_file, files=files)

    def _mcp_overrides(self, servers: Mapping[str, Any], env: dict[str, str]) -> list[tuple[str, Any]]:
        """Codex ``mcp_servers.<name>`` entries; server env values go into the process env by name."""
        overrides: list[tuple[str, Any]] = []
        for server in self.mcp_servers(servers):
            prefix = f"mcp_servers.{server.name}"
            if server.url:
                overrides.append((f"{prefix}.url", server.url))
                if server.spec.get("bearer_token_env_var"):
                    overrides.append((f"{prefix}.bearer_token_env_var", str(server.spec["bearer_token_env_var"])))
            else:
                overrides.append((f"{prefix}.command", server.command))
                overrides.append((f"{prefix}.args", server.args))
            server_env = server.env
            if server_env:
                env.update(server_env)
                overrides.append((f"{prefix}.env_vars", sorted(server_env)))
        return overrides

    def parse_object(self, data: dict[str, Any]) -> list[AgentEvent]:
        kind = data.get("type")
        if kind == "thread.started" and isinstance(data.get("thread_id"), str):
            return [SessionEvent(session_id=data["thread_id"])]
        if kind == "item.started":
            return _item_started(data.get("item"))
        if kind == "item.completed":
            return _item_completed(data.get("item"))
        if kind == "turn.completed":
            return end_of_run("turn completed", usage=_usage(data.get("usage")))
        if kind == "turn.failed":
            message = str(sub_object(data, "error").get("message") or "turn failed")
            return end_of_run(message, error=message)
        if kind == "error" and isinstance(data.get("message"), str):
            return [error_event(data["message"])]
        return []


def _item_started(item: Any) -> list[AgentEvent]:
    if not isinstance(item, dict):
        return []
    itype = item.get("type")
    item_id = str_or_none(item.get("id"))
    if itype == "command_execution":
        return [ToolUseEvent(name="shell", input_summary=summarize(item.get("command") or ""), tool_id=item_id)]
    if itype == "mcp_tool_call":
        return [tool_use(f"{item.get('server', 'mcp')}.{item.get('tool', '?')}", item.get("arguments"), item_id)]
    if itype == "web_search":
        return [ToolUseEvent(name="web_search", input_summary=summarize(item.get("query") or ""), tool_id=item_id)]
    return []


def _item_completed(item: Any) -> list[AgentEvent]:
    if not isinstance(item, dict):
        return []
    itype = item.get("type")
    item_id = str_or_none(item.get("id"))
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
        listed = item.get("changes")
        changes = listed if isinstance(listed, list) else []
        summary = ", ".join(f"{c.get('kind', '?')} {c.get('path', '?')}" for c in changes if isinstance(c, dict))
        failed = item.get("status") == "failed"
        return [
            ToolUseEvent(name="apply_patch", input_summary=summarize(summary), tool_id=item_id),
            ToolResultEvent(output=str(item.get("status") or ""), tool_id=item_id, is_error=failed),
        ]
    if itype == "mcp_tool_call":
        failed = item.get("status") == "failed" or bool(item.get("error"))
        return [tool_result(item.get("error") or item.get("result"), item_id, failed=failed)]
    if itype == "error" and item.get("message"):
        # item-level errors are warnings Codex carries on from; turn.failed reports real failures
        return [ErrorEvent(kind="unknown", message=summarize(item["message"]))]
    return []


def _usage(usage: Any) -> UsageEvent | None:
    if not isinstance(usage, dict):
        return None
    cached = count(usage.get("cached_input_tokens"))
    return UsageEvent(
        input_tokens=uncached_input(count(usage.get("input_tokens")), cached),
        output_tokens=count(usage.get("output_tokens")),
        cache_read_tokens=cached,
        cache_write_tokens=count(usage.get("cache_write_input_tokens")),
    )
