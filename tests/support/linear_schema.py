"""Linear's published GraphQL schema, rebuilt from the types `@linear/sdk` ships.

Linear publishes its API schema through its npm SDK, but as graphql-codegen's TypeScript output rather
than as SDL: ``dist/index-*.d.mts`` declares every scalar (``type Scalars``), every enum (``declare enum``),
every object type (``type X = Node & { __typename?: "X"; field: T; maybe?: Maybe<T> }``), every input
type (fields ``InputMaybe<T>`` when optional), every union (``type X = A | B``) and every field's argument
list (``type {Parent}{Field}Args``). That rendering is one-to-one, so the SDL can be written back from it
and handed to graphql-core; the result is what the fake Linear validates incoming documents against.
What it cannot read it declares as a scalar and lists in :attr:`LinearSchema.unread`, so a gap loosens
the check visibly instead of breaking it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from graphql import GraphQLSchema, build_schema

_BUILTIN = {"ID", "String", "Boolean", "Int", "Float"}
_DECL = re.compile(r"^type (\w+) = ", re.M)
_ENUM = re.compile(r"^declare enum (\w+) \{(.*?)^\}", re.M | re.S)


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"^\s*//[^\n]*", "", text, flags=re.M)


def _body(text: str, start: int) -> tuple[str, int]:
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
    raise ValueError("unbalanced braces")


def _fields(body: str) -> list[tuple[str, bool, str]]:
    out = []
    for line in body.split(";"):
        m = re.match(r"^\s*(\w+)(\?)?\s*:\s*(.+?)\s*$", line, re.S)
        if m:
            out.append((m.group(1), bool(m.group(2)), " ".join(m.group(3).split())))
    return out


@dataclass
class LinearSchema:
    sdl: str
    unread: set[str] = field(default_factory=set)

    def build(self) -> GraphQLSchema:
        return build_schema(self.sdl, assume_valid=True)


def _gql_type(ts: str, *, optional: bool, names: set[str], unread: set[str]) -> str:
    """A codegen TypeScript type as GraphQL: `Maybe<X>`/`InputMaybe<X>`/optional members are nullable."""
    ts = ts.strip()
    nullable = optional
    m = re.fullmatch(r"(?:Input)?Maybe<(.+)>", ts)
    if m:
        nullable, ts = True, m.group(1).strip()
    m = re.fullmatch(r"Array<(.+)>", ts)
    if m:
        inner = _gql_type(m.group(1), optional=False, names=names, unread=unread)
        core = f"[{inner}]"
    else:
        m = re.fullmatch(r'Scalars\["(\w+)"\](?:\["(?:input|output)"\])?', ts)
        if m:
            core = m.group(1)
        elif ts in names:
            core = ts
        else:
            unread.add(ts)
            core = "Unread"
    return core if nullable else core + "!"


def rebuild(package: Path) -> LinearSchema:
    """The SDL the SDK's generated types were generated from."""
    dts = next(p for p in sorted((package / "dist").glob("index-*.d.mts")) if p.stat().st_size > 1_000_000)
    text = _strip_comments(dts.read_text())
    decls: dict[str, str] = {}
    for m in _DECL.finditer(text):
        end = m.end()
        depth = 0
        while end < len(text):
            ch = text[end]
            if ch in "{<([":
                depth += 1
            elif ch in "}>)]":
                depth -= 1
            elif ch == ";" and depth == 0:
                break
            end += 1
        decls.setdefault(m.group(1), text[m.end():end].strip())
    enums = {m.group(1): re.findall(r'=\s*"([^"]+)"', m.group(2)) for m in _ENUM.finditer(text)}
    scalars_src = decls.get("Scalars", "{}")
    scalars = [name for name, _, _ in _fields(scalars_src[1:-1])]

    objects: dict[str, tuple[list[str], str]] = {}
    inputs: dict[str, str] = {}
    unions: dict[str, list[str]] = {}
    args: dict[str, str] = {}
    interfaces: set[str] = set()
    for name, src in decls.items():
        if name in ("Scalars", "Maybe", "InputMaybe", "Exact", "MakeOptional", "MakeMaybe", "MakeEmpty",
                    "Incremental"):
            continue
        m = re.fullmatch(r"((?:\w+\s*&\s*)*)(\{.*\})", src, re.S)
        if m:
            bases = [b.strip() for b in m.group(1).split("&") if b.strip()]
            body, _ = _body(m.group(2), 0)
            tn = re.search(r'__typename\??\s*:\s*"(\w+)"', body)
            if tn and tn.group(1) != name:
                continue  # an operation's or fragment's result type, not a schema type
            if tn:
                objects[name] = (bases, body)
                interfaces.update(bases)
            elif tn is None and name.endswith("Args"):
                args[name] = body
            elif tn is None:
                inputs[name] = body
            continue
        if re.fullmatch(r"\w+(\s*\|\s*\w+)+", src) and all(p.strip()[0].isupper() for p in src.split("|")):
            unions[name] = [p.strip() for p in src.split("|")]
    for iface in interfaces:
        inputs.pop(iface, None)
    names = set(objects) | set(inputs) | set(enums) | set(unions) | interfaces | set(scalars) | _BUILTIN
    unread: set[str] = set()
    out = ["scalar Unread"]
    out += [f"scalar {s}" for s in scalars if s not in _BUILTIN]
    out += [f"enum {n} {{ {' '.join(v)} }}" for n, v in enums.items() if v]
    out += [f"union {n} = {' | '.join(v)}" for n, v in unions.items() if all(x in objects for x in v)]

    def field_sdl(owner: str, fname: str, optional: bool, ts: str) -> str:
        sig = ""
        arg_body = args.get(f"{owner}{fname[:1].upper()}{fname[1:]}Args")
        if arg_body is not None:
            parts = [f"{a}: {_gql_type(t, optional=o, names=names, unread=unread)}" for a, o, t in _fields(arg_body)]
            sig = f"({', '.join(parts)})" if parts else ""
        return f"  {fname}{sig}: {_gql_type(ts, optional=optional, names=names, unread=unread)}"

    for iface in sorted(interfaces):
        src = decls.get(iface, "")
        m = re.fullmatch(r"(\{.*\})", src, re.S)
        if not m:
            continue
        body, _ = _body(src, 0)
        lines = [field_sdl(iface, f, o, t) for f, o, t in _fields(body)]
        out.append(f"interface {iface} {{\n" + "\n".join(lines) + "\n}")
    for name, (bases, body) in objects.items():
        lines = [field_sdl(name, f, o, t) for f, o, t in _fields(body) if f != "__typename"]
        impl = f" implements {' & '.join(bases)}" if bases else ""
        out.append(f"type {name}{impl} {{\n" + "\n".join(lines) + "\n}")
    for name, body in inputs.items():
        lines = [f"  {f}: {_gql_type(t, optional=o, names=names, unread=unread)}" for f, o, t in _fields(body)]
        if lines:
            out.append(f"input {name} {{\n" + "\n".join(lines) + "\n}")
    return LinearSchema("\n".join(out) + "\n", unread)


def published_schema(package: Path) -> GraphQLSchema:
    """Linear's schema from an installed `@linear/sdk` (rebuilt once per process: it takes a second or two)."""
    key = str(package)
    if key not in _BUILT:
        _BUILT[key] = rebuild(package).build()
    return _BUILT[key]


_BUILT: dict[str, GraphQLSchema] = {}


def check_value(schema: GraphQLSchema, type_name: str, value: object, where: str = "$") -> list[str]:
    """Every way a JSON value breaks a schema object type read as a whole (a webhook payload: every non-null
    field present, each value of its declared type). Unions pass when any member does."""
    from graphql import (
        GraphQLEnumType,
        GraphQLInputObjectType,
        GraphQLInterfaceType,
        GraphQLList,
        GraphQLNonNull,
        GraphQLObjectType,
        GraphQLScalarType,
        GraphQLUnionType,
    )

    def check(t: object, v: object, at: str) -> list[str]:
        if isinstance(t, GraphQLNonNull):
            return [f"{at}: required, missing or null"] if v is None else check(t.of_type, v, at)
        if v is None:
            return []
        if isinstance(t, GraphQLList):
            if not isinstance(v, list):
                return [f"{at}: expected a list, got {type(v).__name__}"]
            return [e for i, item in enumerate(v) for e in check(t.of_type, item, f"{at}[{i}]")]
        if isinstance(t, GraphQLScalarType):
            expected: dict[str, tuple[type, ...]] = {
                "String": (str,), "ID": (str,), "Boolean": (bool,), "Int": (int,), "Float": (int, float),
                "DateTime": (str,), "JSONObject": (dict,), "JSON": (dict, list, str, int, float, bool)}
            kinds = expected.get(t.name)
            ok = kinds is None or (isinstance(v, kinds) and not (bool not in kinds and isinstance(v, bool)))
            return [] if ok else [f"{at}: expected {t.name}, got {type(v).__name__}"]
        if isinstance(t, GraphQLEnumType):
            return [] if v in t.values else [f"{at}: {v!r} is not a {t.name}"]
        if isinstance(t, GraphQLUnionType):
            results = [check(member, v, at) for member in t.types]
            return [] if any(not r for r in results) else min(results, key=len)
        if isinstance(t, GraphQLObjectType | GraphQLInputObjectType | GraphQLInterfaceType):
            if not isinstance(v, dict):
                return [f"{at}: expected an object ({t.name}), got {type(v).__name__}"]
            errors = [f"{at}.{k}: not a field of {t.name}" for k in v if k not in t.fields]
            for name, fld in t.fields.items():
                errors += check(fld.type, v.get(name), f"{at}.{name}")
            return errors
        return []

    return check(schema.type_map[type_name], value, where)
