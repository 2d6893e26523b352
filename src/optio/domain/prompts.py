"""Prompt templates with `{{PARAM}}` placeholders, rendered strictly.

A missing parameter is an error at the moment a run is requested, not a literal `{{X}}` reaching an
agent that then does the wrong thing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class TemplateError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ParamSpec:
    name: str
    required: bool = True
    default: str | None = None
    description: str = ""


def placeholders(template: str) -> list[str]:
    seen: list[str] = []
    for m in PLACEHOLDER.finditer(template):
        if m.group(1) not in seen:
            seen.append(m.group(1))
    return seen


def resolve_params(specs: Mapping[str, ParamSpec], given: Mapping[str, str]) -> dict[str, str]:
    """Fill defaults and reject unknown or missing parameters."""
    unknown = sorted(set(given) - set(specs))
    if unknown and specs:
        raise TemplateError(f"unknown parameter(s): {', '.join(unknown)}", field=unknown[0])
    out = dict(given)
    for name, spec in specs.items():
        if name not in out:
            if spec.default is not None:
                out[name] = spec.default
            elif spec.required:
                raise TemplateError(f"missing required parameter {name!r}", field=name)
    return out


def render(template: str, params: Mapping[str, str]) -> str:
    missing = [p for p in placeholders(template) if p not in params]
    if missing:
        raise TemplateError(f"missing value for placeholder {{{{{missing[0]}}}}}", field=missing[0])
    return PLACEHOLDER.sub(lambda m: str(params[m.group(1)]), template)
