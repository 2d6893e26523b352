"""What the vendor CLI adapters share, so each rule they have in common lives in one place.

A vendor module keeps only what is really its own: argv, the env names its CLI reads, config files,
MCP entry shapes and its wire format. Secret selection, credential env, MCP server checks, config
file placement and the small parsing rules (counts, ids, the events that end a run) are decided
here, so a fix to one of them reaches every vendor at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optio.agents.base import AgentConfigError, AgentRequest
from optio.agents.events import (
    AgentEvent,
    ResultEvent,
    ToolResultEvent,
    ToolUseEvent,
    UsageEvent,
    load_json_object,
    summarize,
)
from optio.agents.failures import ClassifiesFailures, error_event
from optio.agents.options import AdapterOptions, base_env, configured_secret_name, resolve_options


class VendorAgent(ClassifiesFailures):
    """Base of the adapters driving a vendor's coding-agent CLI.

    Subclasses set ``name``, ``cli``, ``api_key_secret`` (or override ``default_api_key_secret`` when
    the default follows the request) and ``oauth_secret`` when the vendor has a token mode, and
    implement ``build_command`` and ``parse_object``.
    """

    name: str
    cli: str
    oauth_secret: str | None = None

    def default_api_key_secret(self, request: AgentRequest) -> str:
        if self.api_key_secret is None:
            raise NotImplementedError(f"{type(self).__name__} must name its default API key secret")
        return self.api_key_secret

    def options(self, request: AgentRequest) -> AdapterOptions:
        return resolve_options(
            request,
            vendor=self.name,
            default_api_key_secret=self.default_api_key_secret(request),
            default_oauth_secret=self.oauth_secret,
        )

    def executable(self, request: AgentRequest) -> str:
        return str(request.config.get("cli") or self.cli)

    def secret_name(self, request: AgentRequest) -> str:
        """Name of the secret holding this run's model credential (for error messages)."""
        config = request.config or {}
        return configured_secret_name(
            config,
            auth=str(config.get("auth") or "api_key"),
            default_api_key_secret=self.default_api_key_secret(request),
            default_oauth_secret=self.oauth_secret,
        )

    def credential_env(
        self,
        request: AgentRequest,
        opts: AdapterOptions,
        *,
        secret_var: str,
        base_url_var: str | None = None,
        clear: Sequence[str] = (),
    ) -> dict[str, str]:
        """The run's env with the credential (and endpoint) under the names this CLI reads.

        ``clear`` drops credentials the run env may carry that the CLI would prefer over the one
        Optio resolved, so the configured auth is the one used.
        """
        env = base_env(request)
        for var in clear:
            env.pop(var, None)
        if opts.secret_value is not None:
            env[secret_var] = opts.secret_value
        if base_url_var is not None and opts.base_url:
            env[base_url_var] = opts.base_url
        return env

    def permission_mode(self, opts: AdapterOptions, *choices: str) -> str:
        """The configured mode for a CLI with a fixed set of them; the first choice is the default."""
        mode = opts.permission_mode or choices[0]
        if mode not in choices:
            allowed = " or ".join(repr(c) for c in choices)
            raise AgentConfigError(f"{self.name}: permission_mode must be {allowed}, not {mode!r}")
        return mode

    def mcp_servers(self, servers: Mapping[str, Any]) -> Iterator[McpServer]:
        """The request's MCP servers, each checked to be a remote (``url``) or local (``command``) one."""
        for name, spec in servers.items():
            if not isinstance(spec, Mapping):
                raise AgentConfigError(f"{self.name}: MCP server {name!r} must be a mapping")
            if not spec.get("url") and not spec.get("command"):
                raise AgentConfigError(f"{self.name}: MCP server {name!r} needs a command or a url")
            yield McpServer(name=str(name), spec=spec)

    def mcp_table(
        self,
        servers: Mapping[str, Any],
        *,
        remote: Callable[[McpServer], dict[str, Any]],
        local: Callable[[McpServer], dict[str, Any]],
        env_key: str = "env",
    ) -> dict[str, Any]:
        """``{name: entry}`` for CLIs that read MCP servers as a config table.

        ``remote`` and ``local`` shape the vendor's entry; headers and env join it only when the
        server has some, so the written config holds nothing the user did not set.
        """
        table: dict[str, Any] = {}
        for server in self.mcp_servers(servers):
            if server.url:
                entry = remote(server)
                if server.headers:
                    entry["headers"] = server.headers
            else:
                entry = local(server)
                if server.env:
                    entry[env_key] = server.env
            table[server.name] = entry
        return table

    def parse_line(self, line: str) -> list[AgentEvent]:
        """Every vendor CLI streams one JSON object per line; any other line carries no event."""
        data = load_json_object(line)
        return [] if data is None else self.parse_object(data)

    def parse_object(self, data: dict[str, Any]) -> list[AgentEvent]:
        raise NotImplementedError


@dataclass(frozen=True)
class McpServer:
    """One checked MCP server; a ``url`` wins over a ``command`` when both are given.

    Fields are read on use, so a vendor only converts the keys its CLI takes.
    """

    name: str
    spec: Mapping[str, Any]

    @property
    def url(self) -> str | None:
        return str(self.spec["url"]) if self.spec.get("url") else None

    @property
    def command(self) -> str:
        return str(self.spec["command"])

    @property
    def args(self) -> list[str]:
        return [str(a) for a in self.spec.get("args") or []]

    @property
    def env(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.spec.get("env") or {}).items()}

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.spec.get("headers") or {})


def config_file(request: AgentRequest, filename: str) -> str:
    """Where a CLI config file goes: beside the prompt file, outside the workspace, never committed."""
    return str(request.prompt_file.parent / filename)


def count(value: Any) -> int:
    """A token count from vendor JSON; anything but an integer counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def uncached_input(total: int, cached: int) -> int:
    """Input tokens without cache hits, for vendors whose input count includes them (see UsageEvent)."""
    return max(0, total - cached)


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def sub_object(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A nested JSON object, or an empty one when the key is missing or holds something else."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def http_status(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def tool_use(name: Any, arguments: Any, tool_id: Any) -> ToolUseEvent:
    return ToolUseEvent(name=str(name or "?"), input_summary=summarize(arguments or {}), tool_id=str_or_none(tool_id))


def tool_result(output: Any, tool_id: Any, *, failed: bool) -> ToolResultEvent:
    return ToolResultEvent(output=summarize(output or ""), tool_id=str_or_none(tool_id), is_error=failed)


def end_of_run(
    summary: str,
    *,
    usage: UsageEvent | None = None,
    error: str | None = None,
    http_status: int | None = None,
) -> list[AgentEvent]:
    """The events that close a run: its usage, the classified error when it failed, then the result."""
    events: list[AgentEvent] = [] if usage is None else [usage]
    if error is not None:
        events.append(error_event(error, http_status=http_status))
    events.append(ResultEvent(summary=summary, success=error is None))
    return events


def skill_document(name: str, text: str) -> str:
    """A skill as a ``SKILL.md``: its text, under a front matter naming it (kept when the text has its own).

    Claude Code lists a skill by the front matter's description and reads the body when the model picks
    it; without a description of its own, the first line of the text says what the skill is for.
    """
    if text.startswith("---\n"):
        return text
    first = next((line.strip("# ").strip() for line in text.splitlines() if line.strip()), name)
    description = first.replace('"', "'")[:200]
    return f'---\nname: {name}\ndescription: "{description}"\n---\n\n{text.rstrip()}\n'


def skills_markdown(skills: Mapping[str, str]) -> str:
    """Every skill in one instructions file, for CLIs that read instructions but have no skills of their own."""
    parts = ["# Skills", "", "Instructions Optio gives this run. Follow the ones that apply to your task.", ""]
    for name, text in skills.items():
        parts += [f"## Skill: {name}", "", text.strip(), ""]
    return "\n".join(parts)


def home_dir(request: AgentRequest, vendor: str, what: str) -> str:
    """The run's HOME, where CLIs keep their own config; a run without one cannot have ``what``."""
    home = request.env.get("HOME")
    if not home:
        raise AgentConfigError(f"{vendor}: {what} need HOME in the run environment")
    return home
