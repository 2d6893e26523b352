"""The `script` agent: a shell command of the user's choosing, run in the workspace.

It is the deterministic agent for codemods and the one offline tests and demos use. The prompt is in the
file named by OPTIO_PROMPT_FILE and also arrives on stdin. A script may report what it did in
Optio's own event model by printing NDJSON event lines (``{"type": "usage", "input_tokens": ...}``,
see ``optio.agents.events``); any other output is plain log text.
"""

from __future__ import annotations

from optio.agents.base import AgentConfigError, AgentRequest, CommandSpec
from optio.agents.events import AgentEvent, parse_event_line
from optio.agents.failures import ClassifiesFailures


class ScriptAgent(ClassifiesFailures):
    name = "script"

    def build_command(self, request: AgentRequest) -> CommandSpec:
        command = request.config.get("command")
        if not isinstance(command, str) or not command.strip():
            raise AgentConfigError("script agent needs a non-empty 'command' in its agent config")
        env = dict(request.env)
        env["OPTIO_PROMPT_FILE"] = str(request.prompt_file)
        return CommandSpec(argv=["/bin/sh", "-c", command], env=env, stdin_path=request.prompt_file)

    def parse_line(self, line: str) -> list[AgentEvent]:
        event = parse_event_line(line)
        return [] if event is None else [event]
