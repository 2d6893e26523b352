"""Claude Code (`claude`, npm ``@anthropic-ai/claude-code``).

Runs ``claude -p --output-format stream-json --verbose`` with the prompt on stdin and reads its
NDJSON stream: ``system``/``init`` (session id), ``assistant`` messages (text, thinking, tool_use
blocks), ``user`` messages (tool_result blocks) and a final ``result`` with total usage and the
USD cost Claude Code computes itself.

Config keys beyond the common ones (see ``optio.agents.options``): ``cli`` (executable, default
``claude``). ``permission_mode`` takes Claude's ``--permission-mode`` values (default
``bypassPermissions``) or ``dangerously-skip-permissions``. Auth: ``api_key`` puts the secret (default
``ANTHROPIC_API_KEY``) into ``ANTHROPIC_API_KEY``; ``oauth`` puts a subscription token (default
secret ``CLAUDE_CODE_OAUTH_TOKEN``, from ``claude setup-token``) into ``CLAUDE_CODE_OAUTH_TOKEN``.
``base_url`` becomes ``ANTHROPIC_BASE_URL``. ``max_retries`` sets ``CLAUDE_CODE_MAX_RETRIES`` (default 2).
Resume uses ``--resume <session id>``. Running as root needs ``IS_SANDBOX=1`` in the env for
``bypassPermissions``; Claude Code refuses it otherwise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from optio.agents.base import AgentRequest, CommandSpec
from optio.agents.common import (
    VendorAgent,
    config_file,
    count,
    end_of_run,
    home_dir,
    http_status,
    skill_document,
    str_or_none,
    sub_object,
    tool_use,
)
from optio.agents.events import (
    AgentEvent,
    SessionEvent,
    TextEvent,
    ThinkingEvent,
    ToolResultEvent,
    UsageEvent,
    UserMessageEvent,
    summarize,
)
from optio.agents.failures import error_event

API_KEY_SECRET = "ANTHROPIC_API_KEY"
OAUTH_SECRET = "CLAUDE_CODE_OAUTH_TOKEN"
DEFAULT_PERMISSION_MODE = "bypassPermissions"
# Claude's own API retries; few, so a bad key fails in seconds and a lasting 429 reaches Optio's backoff.
DEFAULT_MAX_RETRIES = 2


class ClaudeCodeAgent(VendorAgent):
    name = "claude-code"
    cli = "claude"
    api_key_secret = API_KEY_SECRET
    oauth_secret = OAUTH_SECRET

    def build_command(self, request: AgentRequest) -> CommandSpec:
        opts = self.options(request)
        argv = [self.executable(request), "-p", "--output-format", "stream-json", "--verbose"]
        if opts.model:
            argv += ["--model", opts.model]
        if opts.max_turns is not None:
            argv += ["--max-turns", str(opts.max_turns)]
        if opts.reasoning_effort:
            argv += ["--effort", opts.reasoning_effort]
        if request.resume_session_id:
            argv += ["--resume", request.resume_session_id]
        mode = opts.permission_mode or DEFAULT_PERMISSION_MODE
        if mode == "dangerously-skip-permissions":
            argv.append("--dangerously-skip-permissions")
        else:
            argv += ["--permission-mode", mode]
        files: dict[str, str] = {}
        mcp_env: dict[str, str] = {}
        if request.mcp_servers:
            path = config_file(request, "claude-mcp.json")
            files[path] = json.dumps({"mcpServers": self._mcp_config(request, mcp_env)}, indent=2)
            argv += ["--mcp-config", path, "--strict-mcp-config"]
        for name, text in request.skills.items():
            config_dir = request.env.get("CLAUDE_CONFIG_DIR") or f"{home_dir(request, self.name, 'skills')}/.claude"
            files[f"{config_dir}/skills/{name}/SKILL.md"] = skill_document(name, text)
        stdin_path = request.prompt_file
        if request.live_input:
            # stream-json input: the prompt is the first user message, and more can follow while it runs.
            argv += ["--input-format", "stream-json", "--replay-user-messages"]
            path = config_file(request, "claude-input.jsonl")
            files[path] = user_message(request.prompt)
            stdin_path = Path(path)
        argv += list(opts.extra_args)

        env = self.credential_env(
            request,
            opts,
            secret_var=OAUTH_SECRET if opts.auth == "oauth" else API_KEY_SECRET,
            base_url_var="ANTHROPIC_BASE_URL",
            clear=(API_KEY_SECRET, OAUTH_SECRET, "ANTHROPIC_AUTH_TOKEN"),
        )
        env.update(mcp_env)
        env["CLAUDE_CODE_MAX_RETRIES"] = str(request.config.get("max_retries", DEFAULT_MAX_RETRIES))
        env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
        env["DISABLE_AUTOUPDATER"] = "1"
        return CommandSpec(argv=argv, env=env, stdin_path=stdin_path, files=files, live_input=request.live_input)

    def _mcp_config(self, request: AgentRequest, mcp_env: dict[str, str]) -> dict[str, Any]:
        """``mcpServers`` entries; a server's env values stay in the process env, the file holds ``${VAR}``.

        Claude Code expands ``${VAR}`` in an MCP config from its own environment, so no secret is written
        to disk; the values travel under ``OPTIO_MCP_<SERVER>_<NAME>``.
        """
        servers: dict[str, Any] = {}
        for server in self.mcp_servers(request.mcp_servers):
            entry = dict(server.spec)
            if server.env:
                refs: dict[str, str] = {}
                for var, value in server.env.items():
                    holder = "OPTIO_MCP_" + re.sub(r"[^A-Za-z0-9]", "_", f"{server.name}_{var}").upper()
                    mcp_env[holder] = value
                    refs[var] = "${" + holder + "}"
                entry["env"] = refs
            servers[server.name] = entry
        return servers

    def parse_object(self, data: dict[str, Any]) -> list[AgentEvent]:
        kind = data.get("type")
        if kind == "system":
            if data.get("subtype") == "init" and isinstance(data.get("session_id"), str):
                return [SessionEvent(session_id=data["session_id"])]
            return []
        if kind == "assistant":
            if data.get("is_api_error_message"):
                return _api_error(data)
            return _assistant_events(data.get("message"))
        if kind == "user":
            if data.get("isReplay"):  # a user message it took from stdin (--replay-user-messages)
                text = " ".join(b.get("text", "") for b in _blocks(data.get("message")) if b.get("type") == "text")
                return [UserMessageEvent(text=summarize(text))] if text else []
            return _tool_results(data.get("message"))
        if kind == "result":
            return _result_events(data)
        return []


def user_message(text: str) -> str:
    """One stream-json input line: a user message Claude Code takes as the next (or an added) prompt."""
    message = {"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": text}]}}
    return json.dumps(message) + "\n"


def _blocks(message: Any) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        return []
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict)]


def _assistant_events(message: Any) -> list[AgentEvent]:
    events: list[AgentEvent] = []
    for block in _blocks(message):
        btype = block.get("type")
        if btype == "text" and block.get("text"):
            events.append(TextEvent(text=str(block["text"])))
        elif btype == "thinking" and block.get("thinking"):
            events.append(ThinkingEvent(text=str(block["thinking"])))
        elif btype in ("tool_use", "server_tool_use", "mcp_tool_use"):
            events.append(tool_use(block.get("name"), block.get("input"), block.get("id")))
    return events


def _api_error(data: dict[str, Any]) -> list[AgentEvent]:
    """Claude Code reports a failed API call as a synthetic assistant message flagged as an error."""
    text = " ".join(e.text for e in _assistant_events(data.get("message")) if isinstance(e, TextEvent))
    kind = data.get("api_error_type") or data.get("error") or ""
    return [error_event(f"{text} [{kind}]", http_status=http_status(data.get("api_error_status")))]


def _tool_results(message: Any) -> list[AgentEvent]:
    events: list[AgentEvent] = []
    for block in _blocks(message):
        if block.get("type") != "tool_result":
            continue
        content = block.get("content")
        if isinstance(content, list):
            content = " ".join(
                str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("text")
            )
        events.append(
            ToolResultEvent(
                output=summarize(content if content is not None else ""),
                tool_id=str_or_none(block.get("tool_use_id")),
                is_error=bool(block.get("is_error")),
            )
        )
    return events


def _result_events(data: dict[str, Any]) -> list[AgentEvent]:
    usage = sub_object(data, "usage")
    cost = data.get("total_cost_usd")
    if cost is None:
        cost = data.get("cost_usd")
    model_usage = data.get("modelUsage")
    model = next(iter(model_usage)) if isinstance(model_usage, dict) and len(model_usage) == 1 else None
    usage_event = None
    if usage or cost is not None:
        usage_event = UsageEvent(
            input_tokens=count(usage.get("input_tokens")),
            output_tokens=count(usage.get("output_tokens")),
            cache_read_tokens=count(usage.get("cache_read_input_tokens")),
            cache_write_tokens=count(usage.get("cache_creation_input_tokens")),
            cost_usd=float(cost) if isinstance(cost, int | float) else None,
            model=model,
        )
    subtype = str(data.get("subtype") or "")
    is_error = bool(data.get("is_error")) or (subtype not in ("", "success"))
    result = data.get("result")
    summary = result if isinstance(result, str) else ""
    if not is_error:
        return end_of_run(summary, usage=usage_event)
    errors = data.get("errors")
    detail = "; ".join(str(e) for e in errors) if isinstance(errors, list) and errors else ""
    text = summary or detail or subtype or "agent reported an error"
    if subtype == "error_max_turns":
        text = f"reached the maximum number of turns ({subtype})"
    elif subtype == "error_max_budget_usd":
        text = f"max_budget reached ({subtype})"
    return end_of_run(
        summary or text, usage=usage_event, error=text, http_status=http_status(data.get("api_error_status"))
    )
