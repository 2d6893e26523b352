"""The prompt template language: `{{NAME}}`, dotted paths, `{{#if}}…{{else}}…{{/if}}`, `{{"{{"}}` literals.

Templates come from users and are filled with values that come from other systems (a webhook body, a
ticket). So the language is small and strict:

- `{{NAME}}` and `{{payload.alert.name}}` (dotted path; a digit segment indexes a list) insert a value.
  A name that has no value is an error when the run is requested, never a literal `{{X}}` handed to an
  agent. `null` renders as nothing, booleans as `true`/`false`, objects and lists as JSON.
- `{{#if PATH}}…{{else}}…{{/if}}` nests; a missing, null, false, empty or zero value is false. Only the
  branch taken must have its values.
- Values are inserted once and never parsed again, so a value holding `{{X}}` stays that text.
- `{{"…"}}` is literal text (`{{"{{"}}` writes `{{`); anything else between braces that is not one of the
  tags above (`{{}}`, `{{A-B}}`) is kept as written. `escape` turns any text into a template that renders to exactly it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+))*"
_TOKEN = re.compile(
    r"\{\{\s*(?:\"(?P<lit>[^\"]*)\"|\#if\s+(?P<cond>" + _PATH + r")|(?P<else>else)|(?P<endif>/if)"
    r"|(?P<var>" + _PATH + r"))\s*\}\}"
)


class TemplateError(ValueError):
    """A template that cannot be parsed or rendered; `field` names the parameter (or path) at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Var:
    path: str


@dataclass(frozen=True)
class If:
    path: str
    then: tuple[Node, ...]
    otherwise: tuple[Node, ...]


Node = Text | Var | If


class _Missing:
    pass


MISSING = _Missing()


def parse(template: str) -> tuple[Node, ...]:
    """The template as a tree; an unclosed `{{#if}}` or a stray `{{else}}`/`{{/if}}` is a TemplateError."""
    # Each open block is [path, then-nodes, else-nodes or None]; the bottom frame is the template itself.
    stack: list[tuple[str, list[Node], list[Node] | None]] = [("", [], None)]

    def out() -> list[Node]:
        _, then, otherwise = stack[-1]
        return then if otherwise is None else otherwise

    pos = 0
    for m in _TOKEN.finditer(template):
        if m.start() > pos:
            out().append(Text(template[pos:m.start()]))
        pos = m.end()
        if m.group("lit") is not None:
            out().append(Text(m.group("lit")))
        elif m.group("cond"):
            stack.append((m.group("cond"), [], None))
        elif m.group("else"):
            path, then, otherwise = stack[-1]
            if len(stack) == 1 or otherwise is not None:
                raise TemplateError("{{else}} without an open {{#if}}")
            stack[-1] = (path, then, [])
        elif m.group("endif"):
            if len(stack) == 1:
                raise TemplateError("{{/if}} without an open {{#if}}")
            path, then, otherwise = stack.pop()
            out().append(If(path, tuple(then), tuple(otherwise or ())))
        else:
            out().append(Var(m.group("var")))
    if len(stack) > 1:
        raise TemplateError(f"{{{{#if {stack[-1][0]}}}}} is never closed with {{{{/if}}}}", field=None)
    if pos < len(template):
        out().append(Text(template[pos:]))
    return _merge(stack[0][1])


def _merge(nodes: Sequence[Node]) -> tuple[Node, ...]:
    merged: list[Node] = []
    for node in nodes:
        if isinstance(node, Text) and merged and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + node.text)
        else:
            merged.append(node)
    return tuple(merged)


def _walk(nodes: Sequence[Node]) -> list[str]:
    paths: list[str] = []
    for node in nodes:
        if isinstance(node, Var):
            paths.append(node.path)
        elif isinstance(node, If):
            paths.append(node.path)
            paths += _walk(node.then) + _walk(node.otherwise)
    return paths


def paths(template: str) -> list[str]:
    """Every path the template reads (values and conditions), once each, in order of first use."""
    return list(dict.fromkeys(_walk(parse(template))))


def placeholders(template: str) -> list[str]:
    """The top-level names the template reads (`payload` for `{{payload.x}}`), once each, in order."""
    return list(dict.fromkeys(p.split(".", 1)[0] for p in paths(template)))


def lookup(context: Mapping[str, object], path: str) -> object:
    """The value at a dotted path, or MISSING."""
    current: object = context
    for segment in path.split("."):
        if isinstance(current, Mapping):
            if segment not in current:
                return MISSING
            current = current[segment]
        elif isinstance(current, list) and segment.isdigit():
            index = int(segment)
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def truthy(value: object) -> bool:
    if value is MISSING or value is None or value is False:
        return False
    if isinstance(value, str | list | dict | int | float):
        return bool(value)
    return True


def format_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _render(nodes: Sequence[Node], context: Mapping[str, object], parts: list[str]) -> None:
    for node in nodes:
        if isinstance(node, Text):
            parts.append(node.text)
        elif isinstance(node, Var):
            value = lookup(context, node.path)
            if value is MISSING:
                raise TemplateError(f"missing value for placeholder {{{{{node.path}}}}}", field=node.path)
            parts.append(format_value(value))
        else:
            _render(node.then if truthy(lookup(context, node.path)) else node.otherwise, context, parts)


def render(template: str, context: Mapping[str, object]) -> str:
    """Fill the template from `context` (parameters by name, plus `payload` when a trigger has one)."""
    parts: list[str] = []
    _render(parse(template), context, parts)
    return "".join(parts)


def escape(text: str) -> str:
    """A template that renders to exactly `text`."""
    return text.replace("{{", '{{"{{"}}')
