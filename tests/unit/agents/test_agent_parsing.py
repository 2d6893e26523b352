"""Adapter parsers against stream output.

Claude Code, Codex and OpenCode fixtures are the real stdout of those CLIs, captured by
``tests/integration/test_vendor_clis.py`` against the local model server. The Gemini and Copilot
fixtures are captured the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from optio.agents.claude_code import ClaudeCodeAgent
from optio.agents.codex import CodexAgent
from optio.agents.copilot import CopilotAgent
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
    UsageTotals,
)
from optio.agents.gemini import GeminiAgent
from optio.agents.opencode import OpenCodeAgent

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "agents"


def lines(vendor: str, name: str) -> list[str]:
    return (FIXTURES / vendor / f"{name}.ndjson").read_text().splitlines()


def parse(adapter: Any, vendor: str, name: str) -> list[AgentEvent]:
    return [event for line in lines(vendor, name) for event in adapter.parse_line(line)]


def of(events: list[AgentEvent], cls: type) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


ALL_ADAPTERS = [ClaudeCodeAgent(), CodexAgent(), OpenCodeAgent(), GeminiAgent(), CopilotAgent()]


@pytest.mark.parametrize("adapter", ALL_ADAPTERS, ids=lambda a: a.name)
@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "not json at all",
        '{"type": "brand_new_event_type", "payload": {"x": 1}}',
        '{"no_type": true}',
        "[1, 2, 3]",
        '{"type": "result", "sub',
        '{"type":"assistant","message":{"content":[{"type":"te',
    ],
)
def test_unknown_blank_and_truncated_lines_yield_no_events(adapter: Any, line: str) -> None:
    assert adapter.parse_line(line) == []


@pytest.mark.parametrize(
    ("adapter", "vendor"),
    [(ClaudeCodeAgent(), "claude-code"), (CodexAgent(), "codex"), (OpenCodeAgent(), "opencode")],
    ids=["claude-code", "codex", "opencode"],
)
def test_a_truncated_last_line_of_a_real_capture_is_dropped(adapter: Any, vendor: str) -> None:
    captured = lines(vendor, "success")
    cut = [*captured[:-1], captured[-1][:len(captured[-1]) // 2]]
    events = [e for line in cut for e in adapter.parse_line(line)]
    full = parse(adapter, vendor, "success")
    assert events == full[: len(events)]
    assert len(events) < len(full)


# -- Claude Code (real captures) ------------------------------------------------------------------


def test_claude_code_success_capture() -> None:
    events = parse(ClaudeCodeAgent(), "claude-code", "success")
    session = of(events, SessionEvent)
    assert len(session) == 1 and len(session[0].session_id) == 36
    assert of(events, ThinkingEvent)[0].text.startswith("The user wants hello.txt")
    assert [e.text for e in of(events, TextEvent)] == ["Writing the file now.", "Done: wrote hello.txt."]
    (tool,) = of(events, ToolUseEvent)
    assert tool.name == "Write" and "hello.txt" in tool.input_summary and tool.tool_id
    (result,) = of(events, ToolResultEvent)
    assert result.tool_id == tool.tool_id and not result.is_error and "hello.txt" in result.output
    (usage,) = of(events, UsageEvent)
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (2400, 160, 0)
    assert usage.cost_usd == pytest.approx(0.0096) and not usage.cost_imputed
    assert usage.model == "claude-sonnet-4-5"
    final = of(events, ResultEvent)
    assert final == [ResultEvent(summary="Done: wrote hello.txt.", success=True)]
    assert not of(events, ErrorEvent)


def test_claude_code_resume_capture_keeps_the_session() -> None:
    events = parse(ClaudeCodeAgent(), "claude-code", "resume")
    assert len({e.session_id for e in of(events, SessionEvent)}) == 1
    assert of(events, ResultEvent)[-1].success


def test_claude_code_rate_limit_capture_is_a_classified_error() -> None:
    events = parse(ClaudeCodeAgent(), "claude-code", "rate_limited")
    errors = of(events, ErrorEvent)
    assert errors and all(e.kind == "rate_limited" and e.retryable for e in errors)
    assert of(events, ResultEvent)[-1].success is False
    failure = ClaudeCodeAgent().classify_failure(1, "", events)
    assert failure is not None and failure.kind == "rate_limited"


def test_claude_code_auth_capture_names_the_secret() -> None:
    events = parse(ClaudeCodeAgent(), "claude-code", "auth_failed")
    assert {e.kind for e in of(events, ErrorEvent)} == {"auth"}
    failure = ClaudeCodeAgent().classify_failure(1, "", events, secret_name="TEAM_ANTHROPIC_KEY")
    assert failure is not None and failure.kind == "auth" and not failure.retryable
    assert "TEAM_ANTHROPIC_KEY" in failure.message


def test_claude_code_error_result_subtypes() -> None:
    adapter = ClaudeCodeAgent()
    max_turns = adapter.parse_line(json.dumps({"type": "result", "subtype": "error_max_turns", "is_error": True}))
    assert of(max_turns, ResultEvent) == [
        ResultEvent(summary="reached the maximum number of turns (error_max_turns)", success=False)
    ]
    budget = adapter.parse_line(json.dumps({"type": "result", "subtype": "error_max_budget_usd", "is_error": True}))
    assert of(budget, ErrorEvent)[0].kind == "budget"


# -- Codex (real captures) ------------------------------------------------------------------------


def test_codex_success_capture() -> None:
    events = parse(CodexAgent(), "codex", "success")
    assert len(of(events, SessionEvent)) == 1
    assert of(events, ThinkingEvent)[0].text == "Write the file with a shell command."
    (tool,) = of(events, ToolUseEvent)
    assert tool.name == "shell" and "hello.txt" in tool.input_summary
    (result,) = of(events, ToolResultEvent)
    assert result.tool_id == tool.tool_id and not result.is_error
    assert of(events, TextEvent)[-1].text == "Done: wrote hello.txt."
    (usage,) = of(events, UsageEvent)
    assert (usage.input_tokens, usage.output_tokens, usage.cost_usd) == (2400, 160, None)
    totals = UsageTotals()
    counted = totals.add(usage, model="gpt-5.5")
    assert counted.cost_imputed and totals.cost_imputed
    assert totals.cost_usd == pytest.approx((2400 * 1.25 + 160 * 10.0) / 1e6)
    assert of(events, ResultEvent) == [ResultEvent(summary="turn completed", success=True)]


def test_codex_failure_captures() -> None:
    limited = parse(CodexAgent(), "codex", "rate_limited")
    assert of(limited, ResultEvent)[-1].success is False
    assert CodexAgent().classify_failure(1, "", limited).kind == "rate_limited"  # type: ignore[union-attr]
    auth = parse(CodexAgent(), "codex", "auth_failed")
    failure = CodexAgent().classify_failure(1, "", auth, secret_name="OPENAI_API_KEY")
    assert failure is not None and failure.kind == "auth" and "OPENAI_API_KEY" in failure.message


def test_codex_item_level_errors_are_warnings_not_failures() -> None:
    line = json.dumps(
        {
            "type": "item.completed",
            "item": {"id": "item_0", "type": "error", "message": "Model metadata for `x` not found."},
        }
    )
    (event,) = CodexAgent().parse_line(line)
    assert isinstance(event, ErrorEvent) and event.kind == "unknown"
    assert CodexAgent().classify_failure(0, "", [event, ResultEvent("turn completed", True)]) is None


def test_codex_file_change_and_mcp_items() -> None:
    adapter = CodexAgent()
    change = adapter.parse_line(
        json.dumps(
            {
                "type": "item.completed",
                "item": {
                    "id": "item_5",
                    "type": "file_change",
                    "status": "completed",
                    "changes": [{"path": "src/a.py", "kind": "update"}],
                },
            }
        )
    )
    assert [type(e) for e in change] == [ToolUseEvent, ToolResultEvent]
    assert "update src/a.py" in change[0].input_summary  # type: ignore[union-attr]
    started = adapter.parse_line(
        json.dumps(
            {
                "type": "item.started",
                "item": {
                    "id": "item_6",
                    "type": "mcp_tool_call",
                    "server": "docs",
                    "tool": "search",
                    "arguments": {"q": "x"},
                    "status": "in_progress",
                },
            }
        )
    )
    assert started == [ToolUseEvent(name="docs.search", input_summary='{"q":"x"}', tool_id="item_6")]


# -- OpenCode (real captures) ---------------------------------------------------------------------


def test_opencode_success_capture() -> None:
    events = parse(OpenCodeAgent(), "opencode", "success")
    assert {e.session_id for e in of(events, SessionEvent)} == {of(events, SessionEvent)[0].session_id}
    assert [e.text for e in of(events, TextEvent)] == ["Writing.", "Done: wrote hello.txt."]
    (tool,) = of(events, ToolUseEvent)
    assert tool.name == "write" and "hello.txt" in tool.input_summary
    (result,) = of(events, ToolResultEvent)
    assert result.output == "Wrote file successfully." and not result.is_error
    usage = of(events, UsageEvent)
    assert len(usage) == 2 and all(u.cost_usd is None for u in usage)  # OpenCode said 0: price unknown
    assert of(events, ResultEvent) == [ResultEvent(summary="finished (stop)", success=True)]


def test_opencode_reasoning_and_positive_cost() -> None:
    adapter = OpenCodeAgent()
    assert adapter.parse_line(json.dumps({"type": "reasoning", "part": {"type": "reasoning", "text": "hmm"}})) == [
        ThinkingEvent(text="hmm")
    ]
    (usage,) = adapter.parse_line(
        json.dumps(
            {
                "type": "step_finish",
                "part": {
                    "reason": "tool-calls",
                    "cost": 0.25,
                    "tokens": {"input": 10, "output": 5, "reasoning": 1, "cache": {"read": 3, "write": 2}},
                },
            }
        )
    )
    assert usage == UsageEvent(
        input_tokens=10, output_tokens=6, cache_read_tokens=3, cache_write_tokens=2, cost_usd=0.25
    )


def test_opencode_auth_capture() -> None:
    events = parse(OpenCodeAgent(), "opencode", "auth_failed")
    assert of(events, ErrorEvent)[0].kind == "auth"
    assert of(events, ResultEvent)[-1].success is False


# -- Gemini (captured from gemini 0.61.0) --------------------------------------------------------


def test_gemini_capture() -> None:
    adapter = GeminiAgent()
    events = parse(adapter, "gemini", "success")
    assert len(of(events, SessionEvent)[0].session_id) == 36
    assert of(events, ToolUseEvent)[0].name == "write_file"
    (result,) = of(events, ToolResultEvent)
    assert not result.is_error and result.output == "ok"  # a successful write prints no output
    (usage,) = of(events, UsageEvent)
    assert (usage.input_tokens, usage.output_tokens, usage.model) == (2400, 160, "gemini-2.5-pro")
    assert of(events, ResultEvent)[-1].success


def test_gemini_delta_chunks_of_one_message_are_joined() -> None:
    chunks = [
        '{"type":"message","role":"assistant","content":"Writing the ","delta":true}',
        '{"type":"message","role":"assistant","content":"file.","delta":true}',
        '{"type":"tool_use","tool_name":"write_file","tool_id":"t1","parameters":{}}',
        '{"type":"message","role":"assistant","content":"Done.","delta":true}',
    ]
    texts = [e.text for e in GeminiAgent().parse_lines(chunks) if isinstance(e, TextEvent)]
    assert texts == ["Writing the file.", "Done."]


def test_gemini_usage_is_split_by_model() -> None:
    line = json.dumps({"type": "result", "status": "success", "stats": {"input_tokens": 30, "output_tokens": 3,
                       "models": {"gemini-2.5-pro": {"input": 20, "output_tokens": 2, "cached": 0},
                                  "gemini-2.5-flash": {"input": 10, "output_tokens": 1, "cached": 0}}}})
    usage = of(GeminiAgent().parse_line(line), UsageEvent)
    assert [(u.model, u.input_tokens) for u in usage] == [("gemini-2.5-pro", 20), ("gemini-2.5-flash", 10)]


def test_gemini_rate_limit_and_auth_captures() -> None:
    limited = GeminiAgent().classify_failure(1, "", parse(GeminiAgent(), "gemini", "rate_limited"))
    assert limited is not None and limited.kind == "rate_limited"
    denied = GeminiAgent().classify_failure(1, "", parse(GeminiAgent(), "gemini", "auth_failed"))
    assert denied is not None and denied.kind == "auth" and "GEMINI_API_KEY" in denied.message


# -- Copilot (captured from copilot 1.0.102) ------------------------------------------------------


def test_copilot_capture() -> None:
    events = parse(CopilotAgent(), "copilot", "success")
    assert len(of(events, SessionEvent)[0].session_id) == 36  # from the final "result" line
    assert [e.text for e in of(events, TextEvent)] == ["Writing.", "Done: wrote hello.txt."]
    assert of(events, ToolUseEvent)[0].name == "create"
    assert of(events, ToolResultEvent)[0].output.startswith("Created file")
    (usage,) = of(events, UsageEvent)  # from the usage file the wrapper prints
    assert (usage.input_tokens, usage.output_tokens, usage.model) == (2400, 160, "gpt-4.1")
    assert usage.cost_usd is None  # premium requests, not USD: Optio imputes it
    assert of(events, ResultEvent)[-1].success


def test_copilot_rate_limit_and_auth_captures() -> None:
    limited = CopilotAgent().classify_failure(1, "", parse(CopilotAgent(), "copilot", "rate_limited"))
    assert limited is not None and limited.kind == "rate_limited" and limited.retryable
    events = parse(CopilotAgent(), "copilot", "auth_failed")
    assert of(events, SessionEvent) and of(events, ResultEvent)[-1].success is False
    denied = CopilotAgent().classify_failure(1, "", events)
    assert denied is not None and denied.kind == "auth" and "COPILOT_PROVIDER_API_KEY" in denied.message
