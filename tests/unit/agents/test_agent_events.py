"""The event model's log form, usage totals and the price table."""

from __future__ import annotations

import pytest

from optio.agents.events import (
    ErrorEvent,
    ResultEvent,
    SessionEvent,
    TextEvent,
    ThinkingEvent,
    ToolResultEvent,
    ToolUseEvent,
    UsageEvent,
    UsageTotals,
    from_json,
    parse_event_line,
    to_json,
    to_line,
)
from optio.agents.pricing import impute_cost, normalize_model, price_for
from optio.agents.script import ScriptAgent

EVENTS = [
    TextEvent("hello"),
    ThinkingEvent("hmm"),
    ToolUseEvent(name="Write", input_summary='{"file_path":"a"}', tool_id="t1"),
    ToolResultEvent(output="ok", tool_id="t1", is_error=False),
    ErrorEvent(kind="rate_limited", message="429", retryable=True, retry_after_s=3.0),
    UsageEvent(input_tokens=1, output_tokens=2, cache_read_tokens=3, cache_write_tokens=4, cost_usd=0.5),
    SessionEvent("abc"),
    ResultEvent(summary="done", success=True),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_events_round_trip_through_their_log_form(event: object) -> None:
    data = to_json(event)  # type: ignore[arg-type]
    assert data["type"] == event.type  # type: ignore[attr-defined]
    assert from_json(data) == event
    assert parse_event_line(to_line(event)) == event  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        {"type": "mystery", "text": "x"},
        {"text": "no type"},
        {"type": "usage", "input_tokens": "ten"},
        {"type": "session", "session_id": ""},
        {"type": "result", "summary": "x"},
        {"type": "text", "text": 5},
    ],
)
def test_unknown_or_malformed_events_are_rejected(data: dict) -> None:
    assert from_json(data) is None


def test_newer_fields_are_ignored() -> None:
    assert from_json({"type": "text", "text": "hi", "added_later": 1}) == TextEvent("hi")


def test_usage_totals_use_vendor_cost_when_given_and_label_imputed_cost() -> None:
    totals = UsageTotals()
    totals.add(UsageEvent(input_tokens=1000, output_tokens=100, cost_usd=0.01))
    assert totals.cost_usd == pytest.approx(0.01) and not totals.cost_imputed
    counted = totals.add(UsageEvent(input_tokens=1_000_000, output_tokens=0), model="gpt-4o")
    assert counted.cost_imputed and counted.cost_usd == pytest.approx(2.5) and counted.model == "gpt-4o"
    assert totals.cost_imputed and totals.cost_usd == pytest.approx(2.51)
    assert totals.input_tokens == 1_001_000
    totals.add(UsageEvent(input_tokens=5), model="some-local-llama")
    assert totals.cost_unknown and totals.input_tokens == 1_001_005


@pytest.mark.parametrize(
    ("model", "family_input_price"),
    [
        ("claude-sonnet-4-5-20250929", 3.0),
        ("anthropic/claude-opus-4-1", 15.0),
        ("claude-opus-4-5", 5.0),
        ("sonnet", 3.0),
        ("gpt-5.5", 1.25),
        ("gpt-5-mini-2025-08-07", 0.25),
        ("openai/gpt-4o-mini", 0.15),
        ("gemini-2.5-flash-lite", 0.10),
        ("gemini-2.5-pro", 1.25),
    ],
)
def test_price_lookup_by_family(model: str, family_input_price: float) -> None:
    price = price_for(model)
    assert price is not None and price.input == family_input_price


def test_unknown_models_have_no_price() -> None:
    assert price_for("llama-3-70b") is None and price_for(None) is None
    assert impute_cost("llama-3-70b", UsageEvent(input_tokens=10)) is None
    assert normalize_model("Anthropic/Claude-Sonnet-4-5-20250929") == "claude-sonnet-4-5"


def test_impute_cost_prices_cache_reads_and_writes() -> None:
    usage = UsageEvent(
        input_tokens=1_000_000, output_tokens=1_000_000, cache_read_tokens=1_000_000, cache_write_tokens=1_000_000
    )
    assert impute_cost("claude-sonnet-4-5", usage) == pytest.approx(3.0 + 15.0 + 0.30 + 3.75)


def test_script_agent_reads_optio_event_lines_and_ignores_other_output() -> None:
    agent = ScriptAgent()
    assert agent.parse_line('{"type":"usage","input_tokens":10,"output_tokens":2,"cost_usd":0.001}') == [
        UsageEvent(input_tokens=10, output_tokens=2, cost_usd=0.001)
    ]
    assert agent.parse_line("Bumped 3 dependencies") == []
    assert agent.parse_line('{"type":"usage","input_tok') == []
    assert agent.parse_line('{"type":"unknown_thing"}') == []
