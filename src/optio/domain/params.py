"""A job's (or blueprint's) parameter schema and the values a start supplies, checked on every start.

Values arrive as JSON (API) or text (CLI `-p N=3`, a webhook mapping); each is coerced to its declared
type or refused naming the parameter, so an agent never gets a prompt built from a value its author did not
allow. `payload` is reserved: it is where a trigger's body goes, never a parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from optio.domain.templates import MISSING, TemplateError, format_value, placeholders, render

TYPES = ("string", "integer", "boolean", "enum")
RESERVED = frozenset({"payload"})
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    required: bool = True
    default: object = None
    description: str = ""
    type: str = "string"
    choices: tuple[str, ...] = field(default=())


def coerce(spec: ParamSpec, value: object) -> object:
    """`value` as the spec's type; a TemplateError naming the parameter if it is not one."""
    kind = spec.type
    if kind == "integer":
        if isinstance(value, bool):
            raise TemplateError(f"parameter {spec.name!r} must be an integer", field=spec.name)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit() and value.strip().isascii():
            return int(value.strip())
        raise TemplateError(f"parameter {spec.name!r} must be an integer, got {value!r}", field=spec.name)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise TemplateError(f"parameter {spec.name!r} must be true or false, got {value!r}", field=spec.name)
    if kind == "enum":
        text = value if isinstance(value, str) else None
        if text not in spec.choices:
            raise TemplateError(f"parameter {spec.name!r} must be one of {', '.join(spec.choices)}; got {value!r}",
                                field=spec.name)
        return text
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TemplateError(f"parameter {spec.name!r} must be a string", field=spec.name)
    return value if isinstance(value, str) else str(value)


def parse_schema(raw: Mapping[str, object]) -> dict[str, ParamSpec]:
    """The stored schema (name → {type, required, default, description, choices}) as specs.

    A bad declaration is a TemplateError whose field is the path inside the schema, e.g. `N.default`.
    """
    specs: dict[str, ParamSpec] = {}
    for name, entry in (raw or {}).items():
        if name in RESERVED:
            raise TemplateError(f"{name!r} is reserved for a trigger's payload", field=name)
        item = entry if isinstance(entry, Mapping) else {}
        kind = str(item.get("type") or "string")
        if kind not in TYPES:
            raise TemplateError(f"type must be one of {', '.join(TYPES)}", field=f"{name}.type")
        choices = tuple(str(c) for c in (item.get("choices") or ()))
        if kind == "enum" and not choices:
            raise TemplateError("an enum parameter needs its choices", field=f"{name}.choices")
        if kind != "enum" and choices:
            raise TemplateError("only an enum parameter has choices", field=f"{name}.choices")
        default = item.get("default")
        spec = ParamSpec(name=name, required=bool(item.get("required", default is None)), default=None,
                         description=str(item.get("description") or ""), type=kind, choices=choices)
        if default is not None:
            try:
                default = coerce(spec, default)
            except TemplateError as exc:
                raise TemplateError(f"default: {exc}", field=f"{name}.default") from None
        specs[name] = ParamSpec(spec.name, spec.required, default, spec.description, spec.type, spec.choices)
    return specs


def check_template(template: str, specs: Mapping[str, ParamSpec]) -> None:
    """Refuse a template that reads a parameter the schema does not declare (or that does not parse)."""
    for name in placeholders(template):
        if name not in specs and name not in RESERVED:
            raise TemplateError(f"the template uses {{{{{name}}}}}, which the params schema does not declare",
                                field=name)


def resolve_params(specs: Mapping[str, ParamSpec], given: Mapping[str, object]) -> dict[str, object]:
    """Coerce the given values, fill defaults, and reject unknown or missing parameters."""
    unknown = sorted(set(given) - set(specs))
    if unknown and specs:
        raise TemplateError(f"unknown parameter(s): {', '.join(unknown)}", field=unknown[0])
    out: dict[str, object] = {}
    for name, value in given.items():
        out[name] = coerce(specs[name], value) if name in specs else value
    for name, spec in specs.items():
        if name not in out:
            if spec.default is not None:
                out[name] = spec.default
            elif spec.required:
                raise TemplateError(f"missing required parameter {name!r}", field=name)
    return out


def prepare_run(schema: Mapping[str, object], template: str, given: Mapping[str, object],
                payload: object = None) -> tuple[dict[str, object], str]:
    """The resolved parameters and the rendered prompt of one start; `payload` is a trigger's body."""
    params = resolve_params(parse_schema(schema), given)
    context: dict[str, object] = dict(params)
    if payload is not None:
        context["payload"] = payload
    return params, render(template, context)


_JSON_PATH = re.compile(r"\$((?:\.[A-Za-z0-9_-]+|\[[0-9]+\])*)")
_SEGMENT = re.compile(r"\.([A-Za-z0-9_-]+)|\[([0-9]+)\]")


def check_json_path(path: str) -> None:
    """`$`, `$.a.b`, `$.items[0].name`; anything else is a TemplateError."""
    if not isinstance(path, str) or not _JSON_PATH.fullmatch(path):
        raise TemplateError(f"{path!r} is not a path like $.alert.name or $.items[0].id")


def json_path(payload: object, path: str) -> object:
    """The value at a `$.a[0].b` path of a JSON document, or MISSING."""
    check_json_path(path)
    current = payload
    for key, index in _SEGMENT.findall(path[1:]):
        if key and isinstance(current, Mapping) and key in current:
            current = current[key]
        elif index and isinstance(current, list) and int(index) < len(current):
            current = current[int(index)]
        else:
            return MISSING
    return current


def mapped_params(payload: object, mapping: Mapping[str, str]) -> dict[str, object]:
    """Parameters taken from a trigger's body by their `$.path`s; a path the body lacks gives no value (the
    schema's default or required rule then applies). Objects and lists arrive as JSON text."""
    out: dict[str, object] = {}
    for name, path in mapping.items():
        value = json_path(payload, path)
        if value is MISSING or value is None:
            continue
        out[name] = value if isinstance(value, str | int | bool) else format_value(value)
    return out
