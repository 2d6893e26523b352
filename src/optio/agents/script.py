"""The `script` agent: a shell command of the user's choosing, run in the workspace.

It is the deterministic agent for codemods and the one offline tests and demos use. The prompt is in the
file named by OPTIO_PROMPT_FILE and also arrives on stdin.
"""

from __future__ import annotations

from typing import Any

from optio.agents.base import AgentConfigError, AgentRequest, CommandSpec


class ScriptAgent:
    name = "script"

    def build_command(self, request: AgentRequest) -> CommandSpec:
        command = request.config.get("command")
        if not isinstance(command, str) or not command.strip():
            raise AgentConfigError("script agent needs a non-empty 'command' in its agent config")
        env = dict(request.env)
        env["OPTIO_PROMPT_FILE"] = str(request.prompt_file)
        return CommandSpec(argv=["/bin/sh", "-c", command], env=env, stdin_path=request.prompt_file)

    def parse_line(self, line: str) -> list[Any]:
        return []
