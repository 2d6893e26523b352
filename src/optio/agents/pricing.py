"""List prices per model, used to put a cost on usage that a vendor CLI reports without one.

Claude Code reports its own USD cost; Codex, Gemini, Copilot and most OpenAI-compatible servers
report tokens only. Optio still shows a cost for those, computed from this table and labelled as
imputed. Prices are USD per million tokens at list rates; a model is matched by the longest known
prefix of its normalised name, so dated snapshots (``claude-sonnet-4-5-20250929``) and provider
prefixes (``anthropic/...``) resolve to their family's price.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ModelPrice:
    input: float
    output: float
    cache_read: float
    cache_write: float


def _p(input: float, output: float, cache_read: float, cache_write: float | None = None) -> ModelPrice:
    return ModelPrice(input, output, cache_read, input if cache_write is None else cache_write)


PRICES: dict[str, ModelPrice] = {
    # Anthropic (cache write = 5-minute cache rate)
    "claude-opus-4-5": _p(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4": _p(15.0, 75.0, 1.50, 18.75),
    "claude-3-opus": _p(15.0, 75.0, 1.50, 18.75),
    "claude-sonnet-4": _p(3.0, 15.0, 0.30, 3.75),
    "claude-3-7-sonnet": _p(3.0, 15.0, 0.30, 3.75),
    "claude-3-5-sonnet": _p(3.0, 15.0, 0.30, 3.75),
    "claude-haiku-4": _p(1.0, 5.0, 0.10, 1.25),
    "claude-3-5-haiku": _p(0.80, 4.0, 0.08, 1.0),
    "claude-3-haiku": _p(0.25, 1.25, 0.03, 0.30),
    # OpenAI (no separate charge for writing the prompt cache)
    "gpt-5": _p(1.25, 10.0, 0.125),
    "gpt-5-mini": _p(0.25, 2.0, 0.025),
    "gpt-5-nano": _p(0.05, 0.40, 0.005),
    "gpt-4.1": _p(2.0, 8.0, 0.50),
    "gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _p(0.10, 0.40, 0.025),
    "gpt-4o": _p(2.50, 10.0, 1.25),
    "gpt-4o-mini": _p(0.15, 0.60, 0.075),
    "o3": _p(2.0, 8.0, 0.50),
    "o4-mini": _p(1.10, 4.40, 0.275),
    "codex-mini": _p(1.50, 6.0, 0.375),
    # Google (prompts up to 200k tokens)
    "gemini-2.5-pro": _p(1.25, 10.0, 0.31),
    "gemini-2.5-flash": _p(0.30, 2.50, 0.075),
    "gemini-2.5-flash-lite": _p(0.10, 0.40, 0.025),
    "gemini-2.0-flash": _p(0.10, 0.40, 0.025),
    "gemini-2.0-flash-lite": _p(0.075, 0.30, 0.01875),
}

ALIASES: dict[str, str] = {
    "sonnet": "claude-sonnet-4",
    "opus": "claude-opus-4-5",
    "haiku": "claude-haiku-4",
}

_DATE_SUFFIX = re.compile(r"[-@]\d{8}$|-\d{4}-\d{2}-\d{2}$|-latest$")


class TokenCounts(Protocol):
    """Anything with Optio's usage fields (``UsageEvent``, ``UsageTotals``)."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...


def normalize_model(model: str) -> str:
    name = model.strip().lower()
    name = name.rsplit("/", 1)[-1]
    name = _DATE_SUFFIX.sub("", name)
    return ALIASES.get(name, name)


def price_for(model: str | None) -> ModelPrice | None:
    """The price of ``model``'s family, or None when Optio has no price for it."""
    if not model:
        return None
    name = normalize_model(model)
    best: str | None = None
    for key in PRICES:
        if (name == key or name.startswith(key + "-") or name.startswith(key + ".")) and (
            best is None or len(key) > len(best)
        ):
            best = key
    return PRICES[best] if best else None


def impute_cost(model: str | None, usage: TokenCounts) -> float | None:
    """USD cost of ``usage`` at list price; None for models not in the table.

    ``input_tokens`` are the uncached input tokens; cache reads and writes are priced separately.
    """
    price = price_for(model)
    if price is None:
        return None
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
    )
    return round(total / 1_000_000, 8)
