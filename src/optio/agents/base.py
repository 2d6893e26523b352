"""The adapter interface every agent type implements.

Adapters are pure where they can be: building a command line and parsing an output line touch no
process or file, so they are tested on recorded output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class AgentConfigError(ValueError):
    """The agent config of a job/repo/agent is unusable (e.g. a script agent without a command)."""


@dataclass(frozen=True)
class AgentRequest:
    prompt: str
    prompt_file: Path
    workdir: Path
    config: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None
    max_turns: int | None = None
    resume_session_id: str | None = None
    base_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    mcp_servers: Mapping[str, Any] = field(default_factory=dict)
    # Skills by name: instruction texts the run makes available where its vendor reads them.
    skills: Mapping[str, str] = field(default_factory=dict)
    # The run can take a person's messages while it works (``CommandSpec.live_input``), where the CLI can.
    live_input: bool = False


@dataclass(frozen=True)
class CommandSpec:
    """How to start an agent process.

    ``files`` maps absolute paths to contents the runner writes (mode 0600) before starting the
    process: config files some CLIs only read from disk (MCP servers, settings). They live beside the
    prompt file, outside the workspace, so they never end up in a commit.

    ``shared_dirs`` maps a cache name to a path relative to the run's HOME that the runner shares
    between runs (a link to a directory of that name in Optio's cache, writable in the sandbox): what a
    CLI unpacks there on first start is not unpacked again by every fresh HOME.
    """

    argv: list[str]
    env: dict[str, str]
    stdin_path: Path | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    shared_dirs: Mapping[str, str] = field(default_factory=dict)
    # The CLI reads Claude Code's stream-json user messages on stdin and runs until stdin closes: the output
    # relay keeps stdin open, forwards messages sent while it runs and closes it once the CLI is done.
    live_input: bool = False


class AgentAdapter(Protocol):
    name: str

    def build_command(self, request: AgentRequest) -> CommandSpec: ...

    def parse_line(self, line: str) -> list[Any]: ...
