"""Which models each vendor CLI runs, at what list price, and the per-vendor options a repo or job may set.

The models come from the price table (``optio.agents.pricing``): a vendor knows the families its CLI can
reach. An agent config sets ``model``, ``reasoning_effort`` and ``max_turns`` for its own agent type and may
keep them per vendor under ``vendors`` (``{"vendors": {"codex": {"model": "gpt-5", "reasoning_effort":
"high"}}}``), so switching a repo's agent type keeps each vendor's choice. A config that points the CLI at
its own endpoint (``base_url``) may name any model: that server decides what it serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optio.agents.pricing import ALIASES, PRICES, ModelPrice, normalize_model, price_for

# Price-table families each vendor's CLI can use (prefixes of the table's keys).
VENDOR_FAMILIES: dict[str, tuple[str, ...]] = {
    "claude-code": ("claude-",),
    "codex": ("gpt-", "o3", "o4-", "codex-"),
    "gemini": ("gemini-",),
    "copilot": ("gpt-", "claude-", "gemini-", "o3", "o4-"),
    "opencode": ("claude-", "gpt-", "o3", "o4-", "codex-", "gemini-"),
}
# The reasoning effort levels each CLI takes (Claude Code --effort, Codex model_reasoning_effort, OpenCode
# --variant); a vendor with none listed has no such setting Optio drives.
REASONING_EFFORTS: dict[str, tuple[str, ...]] = {
    "claude-code": ("low", "medium", "high", "xhigh", "max"),
    "codex": ("minimal", "low", "medium", "high", "xhigh"),
    "opencode": ("minimal", "low", "medium", "high", "max"),
}
VENDOR_KEYS = ("model", "reasoning_effort", "max_turns", "base_url")


class VendorOptionError(ValueError):
    """A vendor option that cannot work; ``field`` names it (``agent_config.vendors.codex.model``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class KnownModel:
    name: str
    price: ModelPrice


def vendors() -> list[str]:
    return sorted(VENDOR_FAMILIES)


def known_models(vendor: str) -> list[KnownModel]:
    """The price table's models this vendor's CLI runs, by name."""
    families = VENDOR_FAMILIES.get(vendor)
    if families is None:
        raise VendorOptionError(f"unknown vendor {vendor!r}; known: {', '.join(vendors())}", "vendor")
    return [KnownModel(name, price) for name, price in sorted(PRICES.items()) if name.startswith(families)]


def is_known(vendor: str, model: str) -> bool:
    if price_for(model) is None:
        return False
    families = VENDOR_FAMILIES.get(vendor, ())
    name = normalize_model(model)
    return name.startswith(families) or ALIASES.get(model.strip().lower(), "").startswith(families)


def for_vendor(config: Mapping[str, Any], vendor: str) -> dict[str, Any]:
    """The config a run of ``vendor`` uses: its own ``vendors`` entry over the shared keys."""
    merged = {k: v for k, v in config.items() if k != "vendors"}
    per_vendor = config.get("vendors")
    if isinstance(per_vendor, Mapping) and isinstance(per_vendor.get(vendor), Mapping):
        merged.update(per_vendor[vendor])
    return merged


def check(agent_type: str, config: Mapping[str, Any], *, prefix: str = "") -> None:
    """Refuse options that cannot work for their vendor, naming the field and what would."""
    base = f"{prefix}agent_config"
    if agent_type in VENDOR_FAMILIES:
        _check_one(agent_type, config, base, inherited_base_url=None)
    per_vendor = config.get("vendors")
    if per_vendor is None:
        return
    if not isinstance(per_vendor, Mapping):
        raise VendorOptionError("vendors maps a vendor name to its options", f"{base}.vendors")
    for vendor, options in per_vendor.items():
        field = f"{base}.vendors.{vendor}"
        if vendor not in VENDOR_FAMILIES:
            raise VendorOptionError(f"unknown vendor {vendor!r}; known: {', '.join(vendors())}", field)
        if not isinstance(options, Mapping) or set(options) - set(VENDOR_KEYS):
            raise VendorOptionError(f"a vendor's options are {', '.join(VENDOR_KEYS)}", field)
        _check_one(vendor, options, field, inherited_base_url=config.get("base_url"))


def _check_one(vendor: str, options: Mapping[str, Any], field: str, *, inherited_base_url: Any) -> None:
    model = options.get("model")
    if model is not None:
        if not isinstance(model, str) or not model.strip():
            raise VendorOptionError("model must be a model name", f"{field}.model")
        own_endpoint = options.get("base_url") or inherited_base_url
        if not own_endpoint and not is_known(vendor, model):
            names = ", ".join(m.name for m in known_models(vendor))
            raise VendorOptionError(f"{vendor} does not run a model called {model!r}; known: {names} "
                                    "(or set base_url for a self-hosted endpoint)", f"{field}.model")
    effort = options.get("reasoning_effort")
    if effort is not None:
        levels = REASONING_EFFORTS.get(vendor, ())
        if not levels:
            raise VendorOptionError(f"{vendor} has no reasoning effort setting", f"{field}.reasoning_effort")
        if effort not in levels:
            raise VendorOptionError(f"{vendor}'s reasoning_effort is one of {', '.join(levels)}, not {effort!r}",
                                    f"{field}.reasoning_effort")
    turns = options.get("max_turns")
    if turns is not None and turns != "" and not _whole(turns, 1, 10_000):
        raise VendorOptionError("max_turns is a whole number from 1 to 10000", f"{field}.max_turns")


def _whole(value: Any, low: int, high: int) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return False
    try:
        number = int(value)
    except ValueError:
        return False
    return low <= number <= high
