"""Per-vendor model options: known models from the price table, checked when a repo/job/task is saved."""

from __future__ import annotations

import pytest

from optio.agents import models
from optio.agents.pricing import PRICES


def test_each_vendor_lists_its_priced_models() -> None:
    claude = [m.name for m in models.known_models("claude-code")]
    assert claude and all(n.startswith("claude-") for n in claude)
    assert models.known_models("claude-code")[0].price == PRICES[claude[0]]
    codex = {m.name for m in models.known_models("codex")}
    assert {"gpt-5", "o3", "codex-mini"} <= codex and not any(n.startswith("claude") for n in codex)
    with pytest.raises(models.VendorOptionError, match="unknown vendor"):
        models.known_models("nope")


def test_dated_snapshots_and_aliases_are_known_to_their_vendor_only() -> None:
    assert models.is_known("claude-code", "claude-sonnet-4-5-20250929")
    assert models.is_known("claude-code", "sonnet")
    assert models.is_known("codex", "gpt-5.5") and models.is_known("opencode", "anthropic/claude-opus-4-5")
    assert not models.is_known("codex", "claude-sonnet-4-5")
    assert not models.is_known("claude-code", "gpt-5")


def test_an_unknown_model_names_the_field_and_the_known_ones() -> None:
    with pytest.raises(models.VendorOptionError) as err:
        models.check("codex", {"model": "gpt-9-ultra"})
    assert err.value.field == "agent_config.model" and "gpt-5-mini" in str(err.value)
    with pytest.raises(models.VendorOptionError) as err:
        models.check("script", {"vendors": {"claude-code": {"model": "gpt-5"}}}, prefix="review_")
    assert err.value.field == "review_agent_config.vendors.claude-code.model" and "claude-opus-4-5" in str(err.value)


def test_a_self_hosted_endpoint_may_serve_any_model() -> None:
    models.check("codex", {"model": "my-local-llm", "base_url": "http://127.0.0.1:8000/v1"})
    models.check("claude-code", {"base_url": "http://x", "vendors": {"claude-code": {"model": "anything"}}})


@pytest.mark.parametrize(
    ("agent_type", "config", "field"),
    [
        ("codex", {"reasoning_effort": "extreme"}, "agent_config.reasoning_effort"),
        ("gemini", {"reasoning_effort": "high"}, "agent_config.reasoning_effort"),
        ("claude-code", {"max_turns": 0}, "agent_config.max_turns"),
        ("claude-code", {"max_turns": "many"}, "agent_config.max_turns"),
        ("script", {"vendors": {"nope": {}}}, "agent_config.vendors.nope"),
        ("script", {"vendors": {"codex": {"temperature": 1}}}, "agent_config.vendors.codex"),
        ("script", {"vendors": ["codex"]}, "agent_config.vendors"),
    ],
)
def test_bad_options_name_their_field(agent_type: str, config: dict[str, object], field: str) -> None:
    with pytest.raises(models.VendorOptionError) as err:
        models.check(agent_type, config)
    assert err.value.field == field


def test_a_vendors_own_options_win_for_its_runs() -> None:
    config = {"model": "claude-sonnet-4-5", "max_turns": 5,
              "vendors": {"codex": {"model": "gpt-5", "reasoning_effort": "high"}}}
    models.check("claude-code", config)
    assert models.for_vendor(config, "codex") == {"model": "gpt-5", "max_turns": 5, "reasoning_effort": "high"}
    assert models.for_vendor(config, "claude-code") == {"model": "claude-sonnet-4-5", "max_turns": 5}
