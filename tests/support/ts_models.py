"""Checks JSON against TypeScript interface declarations (``.d.ts``): the published models of an API client.

GitLab's REST entities and webhook payloads are published as TypeScript models by the maintained npm clients
(``@gitbeaker/core`` for the REST API, ``gitlab-event-types`` for webhooks). This reads the declarations of
those packages as shipped (interfaces, ``extends``, unions, literal types, arrays, inline objects,
``Omit``/``MappedOmit``/``Pick``/``Partial``) and reports every required field a value lacks and every field
whose JSON type the model does not allow. It is small on purpose: what it cannot read, it accepts, and it
says so in :attr:`Models.unread`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_DECL = re.compile(r"^(?:export\s+)?(?:declare\s+)?(interface|type)\s+(\w+)(?:<[^>{=]*>)?\s*", re.M)


@dataclass
class Member:
    name: str
    optional: bool
    type: str


@dataclass
class Interface:
    name: str
    bases: list[str]
    members: dict[str, Member]


def _split_top(text: str, seps: str) -> list[str]:
    """``text`` split at the separators that are not inside brackets, parentheses, braces or quotes."""
    parts, depth, buf, quote = [], 0, [], ""
    for ch in text:
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "{[(<":
            depth += 1
        elif ch in "}])>":
            depth -= 1
        if ch in seps and depth == 0:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def _block(text: str, start: int) -> tuple[str, int]:
    """The ``{...}`` body starting at ``text[start] == '{'`` and the index after it."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
    raise ValueError("unbalanced braces")


def _members(body: str) -> dict[str, Member]:
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    body = re.sub(r"//[^\n]*", "", body)
    found: dict[str, Member] = {}
    for part in _split_top(body, ";\n"):
        m = re.match(r"^(readonly\s+)?(['\"]?)([\w$]+)\2(\?)?\s*:\s*(.+)$", part, re.S)
        if m and "(" not in m.group(3):
            found[m.group(3)] = Member(m.group(3), bool(m.group(4)), " ".join(m.group(5).split()))
    return found


@dataclass
class Models:
    interfaces: dict[str, Interface] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    unread: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, *paths: Path) -> Models:
        models = cls()
        for path in paths:
            text = path.read_text()
            for m in _DECL.finditer(text):
                kind, name = m.group(1), m.group(2)
                rest = m.end()
                if kind == "interface":
                    head_end = text.index("{", rest)
                    head = text[rest:head_end]
                    bases = [b.strip() for b in _split_top(head.replace("extends", "", 1), ",")] \
                        if "extends" in head else []
                    body, _ = _block(text, head_end)
                    models.interfaces.setdefault(name, Interface(name, bases, _members(body)))
                elif text[rest:rest + 1] == "=":
                    end, depth = rest + 1, 0
                    while end < len(text):
                        ch = text[end]
                        if ch in "{([<":
                            depth += 1
                        elif ch in "})]>":
                            depth -= 1
                        elif ch == ";" and depth == 0:
                            break
                        end += 1
                    models.aliases.setdefault(name, " ".join(text[rest + 1:end].split()))
        return models

    def all_members(self, name: str) -> dict[str, Member]:
        iface = self.interfaces[name]
        merged: dict[str, Member] = {}
        for base in iface.bases:
            merged.update(self._members_of_type(base))
        merged.update(iface.members)
        return merged

    def _members_of_type(self, type_: str) -> dict[str, Member]:
        type_ = type_.strip()
        m = re.match(r"^(MappedOmit|Omit|Pick|Partial)<(.+)>$", type_)
        if m:
            args = _split_top(m.group(2), ",")
            inner = self._members_of_type(args[0])
            keys = set(re.findall(r"'(\w+)'", args[1])) if len(args) > 1 else set()
            if m.group(1) == "Pick":
                return {k: v for k, v in inner.items() if k in keys}
            if m.group(1) == "Partial":
                return {k: Member(k, True, v.type) for k, v in inner.items()}
            return {k: v for k, v in inner.items() if k not in keys}
        if type_ in self.interfaces:
            return self.all_members(type_)
        if type_ in self.aliases:
            return self._members_of_type(self.aliases[type_])
        if type_.startswith("{"):
            body, _ = _block(type_, 0)
            return _members(body)
        return {}

    # --- checking -------------------------------------------------------------------------------------

    def check(self, value: Any, type_: str, where: str = "$") -> list[str]:
        """Every way ``value`` breaks ``type_``; empty when it conforms."""
        type_ = type_.strip()
        alts = _split_top(type_, "|")
        if len(alts) > 1:
            results = [self.check(value, alt, where) for alt in alts]
            return [] if any(not r for r in results) else min(results, key=len)
        parts = _split_top(type_, "&")
        if len(parts) > 1:
            return [e for part in parts for e in self.check(value, part, where)]
        if type_.startswith("(") and type_.endswith(")"):
            return self.check(value, type_[1:-1], where)
        if type_.endswith("[]"):
            if not isinstance(value, list):
                return [f"{where}: expected an array, got {_kind(value)}"]
            return [e for i, item in enumerate(value) for e in self.check(item, type_[:-2], f"{where}[{i}]")]
        m = re.match(r"^Array<(.+)>$", type_)
        if m:
            return self.check(value, m.group(1) + "[]", where)
        simple = {"string": str, "boolean": bool}
        if type_ in simple:
            ok = isinstance(value, simple[type_])
            return [] if ok else [f"{where}: expected {type_}, got {_kind(value)}"]
        if type_ == "number":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            return [] if ok else [f"{where}: expected number, got {_kind(value)}"]
        if type_ == "null":
            return [] if value is None else [f"{where}: expected null, got {_kind(value)}"]
        if type_ in ("unknown", "any", "undefined", "object") or type_.startswith("Record<"):
            return []
        if re.fullmatch(r"'[^']*'|\"[^\"]*\"", type_):
            return [] if value == type_[1:-1] else [f"{where}: expected {type_}, got {value!r}"]
        if re.fullmatch(r"-?\d+(\.\d+)?", type_):
            return [] if value == float(type_) else [f"{where}: expected {type_}, got {value!r}"]
        if type_ in ("true", "false"):
            return [] if value is (type_ == "true") else [f"{where}: expected {type_}, got {value!r}"]
        m = re.match(r"^LiteralUnion<(.+)>$", type_)
        if m:
            return self.check(value, "string", where)
        m = re.match(r"^(MappedOmit|Omit|Pick|Partial)<", type_)
        if m or type_.startswith("{") or type_ in self.interfaces:
            return self.check_object(value, self._members_of_type(type_), where)
        if type_ in self.aliases:
            return self.check(value, self.aliases[type_], where)
        self.unread.add(type_)
        return []

    def check_object(self, value: Any, members: dict[str, Member], where: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {_kind(value)}"]
        errors: list[str] = []
        for name, member in members.items():
            if name not in value:
                if not member.optional:
                    errors.append(f"{where}.{name}: required by the model, missing")
                continue
            if member.optional and value[name] is None:
                continue  # GitLab sends null for an optional field it has no value for
            errors.extend(self.check(value[name], member.type, f"{where}.{name}"))
        return errors


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
