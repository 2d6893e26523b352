"""Looks up an adapter by agent type name."""

from __future__ import annotations

from optio.agents.base import AgentAdapter, AgentConfigError
from optio.agents.claude_code import ClaudeCodeAgent
from optio.agents.codex import CodexAgent
from optio.agents.copilot import CopilotAgent
from optio.agents.gemini import GeminiAgent
from optio.agents.opencode import OpenCodeAgent
from optio.agents.script import ScriptAgent

_ADAPTERS: dict[str, AgentAdapter] = {
    adapter.name: adapter
    for adapter in (
        ScriptAgent(),
        ClaudeCodeAgent(),
        CodexAgent(),
        GeminiAgent(),
        CopilotAgent(),
        OpenCodeAgent(),
    )
}


def register(adapter: AgentAdapter) -> None:
    _ADAPTERS[adapter.name] = adapter


def get_adapter(agent_type: str) -> AgentAdapter:
    try:
        return _ADAPTERS[agent_type]
    except KeyError:
        known = ", ".join(sorted(_ADAPTERS))
        raise AgentConfigError(f"unknown agent type {agent_type!r}; known: {known}") from None


def known_agent_types() -> list[str]:
    return sorted(_ADAPTERS)
