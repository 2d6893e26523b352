"""Keep secrets out of logs, events and anything else a person may read.

Agent output is streamed to the dashboard and stored, and an agent that prints
its environment or echoes a failing ``curl -H "Authorization: ..."`` would
otherwise publish the credentials Optio handed it. Two nets catch that:

* the values Optio knows to be secret (it injected them, so it knows them),
  longest first so a secret containing a shorter one is masked whole, together
  with the forms a careless or hostile program most often prints them in:
  base64 (standard and URL-safe, padded or not, and the value's bytes at any
  of the three alignments inside a larger base64 blob), URL-encoding and hex
  (lower and upper case), and any leading part of a value that is at least
  ``max(8, ceil(len/2))`` characters long (a truncated print still leaks it);
* the shapes of well-known credentials (GitHub, GitLab, OpenAI/Anthropic, Slack,
  AWS, JWTs, bearer headers, Optio's own API keys) for secrets Optio never saw.

The shape patterns are deliberately anchored on vendor prefixes, not on
"looks random", so git SHAs, UUIDs, paths and numbers stay readable.

Which values are known depends on whose text it is: a workspace's run output is
masked with that workspace's secrets (and its repo's, for a repo's runs), never
another's, so one workspace's secret cannot rewrite another's logs. The
:class:`RedactorRegistry` keeps one redactor per scope in step with the live
secrets; the process-wide :data:`default_redactor` masks every workspace's
values and is used only for the server's own logs.

Each redactor folds everything into one compiled alternation, rebuilt only when
its set of known values changes, so redacting a line is a single regex scan.
"""

from __future__ import annotations

import base64
import math
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
# Values shorter than this are refused as secrets; they are also the shortest leak of a prefix that is masked.
MIN_SECRET_LENGTH = 8
# Known values shorter than this (only rows stored before the minimum existed) are not masked at all: "on" or
# "1" would shred ordinary text while protecting nothing worth protecting.
MIN_MASKED_LENGTH = 4

# Credential shapes. Each is a full match that is replaced by MASK, except the
# header forms, whose named "keep" groups preserve the header name.
_TOKEN_SHAPES: tuple[str, ...] = (
    # "Authorization: Bearer <token>" / "Basic <b64>" / "token <pat>", in headers, curl, JSON.
    r"(?P<keep_auth>\b(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?i:bearer|basic|token)\s+)[^\s\"',;]+",
    # A bare "Bearer <token>" when the token contains something other than letters,
    # so prose such as "Bearer authentication failed" is left alone.
    r"(?P<keep_bearer>\b(?i:bearer)\s+)(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/-]{8,}=*",
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"\bglpat-[A-Za-z0-9_-]{20,}",
    r"\bsk-(?:ant-)?[A-Za-z0-9_-]{20,}",
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\boptio_[A-Za-z0-9]{32,}",
    r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
)


# Every credential shape above contains one of these: ASCII text holding none of them (the header words
# compared case-insensitively) and no known value cannot match, and is returned without the regex scan, which
# runs at a few MB/s (an alternation Python's engine cannot skip through) where these substring tests run at GB/s.
_SHAPE_WORDS = ("authorization", "bearer")
_SHAPE_MARKS = ("github_pat_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "glpat-", "sk-", "xox", "AKIA", "ASIA",
                "optio_", "eyJ")


def _may_match(text: str, literals: tuple[str, ...]) -> bool:
    """False only when no known value and no credential shape can be in ``text`` (see ``_SHAPE_MARKS``).

    Non-ASCII text always may: case-insensitive matching maps some non-ASCII letters to ASCII ones.
    """
    if not text.isascii():
        return True
    if any(mark in text for mark in _SHAPE_MARKS) or any(literal in text for literal in literals):
        return True
    lowered = text.lower()
    return any(word in lowered for word in _SHAPE_WORDS)


def _replace(match: re.Match[str]) -> str:
    keep = match.group("keep_auth") or match.group("keep_bearer") or ""
    return keep + MASK


def prefix_length(value: str) -> int:
    """How much of ``value``'s start must appear for it to count as leaked: ``max(8, ceil(len/2))`` characters.

    Half the value keeps a guessable remainder out of reach; eight characters keeps short values' prefixes
    from matching ordinary words.
    """
    return min(len(value), max(MIN_SECRET_LENGTH, math.ceil(len(value) / 2)))


def _b64_forms(raw: bytes) -> set[str]:
    """The value's base64 standalone and the part of it fixed at each alignment inside a larger blob.

    With ``k`` unknown bytes before it, the first characters mix in those bytes and the last ones the bytes
    after it; what is left is determined by the value alone and appears verbatim in any blob that carries it.
    """
    forms = {base64.b64encode(raw).decode("ascii")}
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + raw).decode("ascii").rstrip("=")
        total = k + len(raw)
        core = encoded[math.ceil(8 * k / 6):(total // 3) * 4 + (8 * (total % 3)) // 6]
        forms.add(core)
    forms |= {f.rstrip("=") for f in forms}
    return forms | {f.translate(_URLSAFE) for f in forms}


_URLSAFE = str.maketrans("+/", "-_")
_PERCENT = re.compile(r"%[0-9A-F]{2}")


def encoded_forms(value: str) -> set[str]:
    """The common encodings of ``value`` that a program might print instead of the value itself."""
    if len(value) < MIN_SECRET_LENGTH:
        return set()
    raw = value.encode("utf-8")
    forms = {raw.hex(), raw.hex().upper(), *_b64_forms(raw)}
    for quoted in (quote(value, safe=""), quote(value), quote_plus(value)):
        forms |= {quoted, _PERCENT.sub(lambda m: m.group(0).lower(), quoted)}
    forms.discard(value)
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


_State = tuple[re.Pattern[str], dict[str, tuple[str, ...]], tuple[str, ...]]


def _compile(values: Iterable[str]) -> _State:
    """The pattern, for each value-prefix literal the rests of the values it starts (to extend a match), and
    the literals."""
    continuations: dict[str, set[str]] = {}
    literals: set[str] = set()
    for value in values:
        head = value[:prefix_length(value)]
        continuations.setdefault(head, set()).add(value[len(head):])
        literals.add(head)
        literals |= encoded_forms(value)
    alternation = "|".join(re.escape(v) for v in sorted(literals, key=lambda v: (-len(v), v))) or "(?!)"
    pattern = re.compile("|".join([f"(?P<lit>{alternation})", *_TOKEN_SHAPES]))
    return pattern, {head: tuple(sorted(rests, key=len, reverse=True)) for head, rests in continuations.items()
                     if rests != {""}}, tuple(literals)


def _matched_length(text: str, at: int, rest: str) -> int:
    """How many leading characters of ``rest`` appear in ``text`` at ``at``."""
    if text.startswith(rest, at):
        return len(rest)
    n = 0
    for a, b in zip(text[at:at + len(rest)], rest, strict=False):
        if a != b:
            break
        n += 1
    return n


class Redactor:
    """Masks known secret values (and their common encodings and prefixes) and credential-shaped strings.

    Safe to share between threads: a change of values only swaps in the new set; the pattern is compiled
    under the lock by the first reader that needs it (a burst of changes compiles once), and swapped in with
    one assignment, so readers of an up-to-date pattern never lock.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._install(frozenset())
        self.set_values(values)

    @staticmethod
    def _usable(values: Iterable[str]) -> set[str]:
        return {v for v in values if isinstance(v, str) and len(v) >= MIN_MASKED_LENGTH}

    def _install(self, values: frozenset[str]) -> None:
        self._values = values
        self._state: _State | None = None

    def _compiled(self) -> _State:
        state = self._state
        if state is None:
            with self._lock:
                state = self._state
                if state is None:
                    # One assignment: a reader never sees a pattern without its continuations.
                    state = self._state = _compile(self._values)
        return state

    @property
    def _pattern(self) -> re.Pattern[str]:
        return self._compiled()[0]

    def add(self, value: str) -> None:
        """Start masking ``value`` too."""
        self.update((value,))

    def update(self, values: Iterable[str]) -> None:
        """Start masking every one of ``values`` in addition to the known ones."""
        new = self._usable(values)
        with self._lock:
            if new <= self._values:
                return
            self._install(self._values | new)

    def set_values(self, values: Iterable[str]) -> None:
        """Replace the set of known secret values (e.g. after a secret was deleted)."""
        new = frozenset(self._usable(values))
        with self._lock:
            if new == self._values:
                return
            self._install(new)

    @property
    def values(self) -> frozenset[str]:
        return self._values

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        """``text`` with every known secret, its encodings, its leaked prefixes and credential shapes masked."""
        if not text:
            return text
        pattern, continuations, literals = self._compiled()
        if not _may_match(text, literals):
            return text
        match = pattern.search(text)
        if match is None:
            return text
        pieces: list[str] = []
        pos = 0
        while match is not None:
            start, end = match.span()
            literal = match.group("lit")
            if literal is not None:
                rests = continuations.get(literal)
                if rests:
                    end += max(_matched_length(text, end, rest) for rest in rests)
                replacement = MASK
            else:
                replacement = _replace(match)
            pieces.append(text[pos:start])
            pieces.append(replacement)
            if end == start:  # never loop on an empty match
                pieces.append(text[start:start + 1])
                end += 1
            pos = end
            match = pattern.search(text, pos)
        pieces.append(text[pos:])
        return "".join(pieces)

    def redact_value(self, value: Any) -> Any:
        """Redact strings nested anywhere in dicts, lists and tuples; other values pass through."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {k: self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact_value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.redact_value(v) for v in value)
        return value

    def structlog_processor(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        """A structlog processor that redacts every string in the event before it is rendered."""
        return {k: self.redact_value(v) for k, v in event_dict.items()}


# The server's own log lines: every workspace's values (an operator reading them may see none of them).
default_redactor = Redactor()
_SHAPES_ONLY = Redactor()


def redact(text: str) -> str:
    """Redact with the process-wide :data:`default_redactor` (server logs only, never run output)."""
    return default_redactor.redact(text)


Entry = tuple[int, "int | None", str]  # (workspace id, repo id or None for the workspace scope, secret name)


class RedactorRegistry:
    """One redactor per workspace (and per repo of it), kept in step with the live secrets.

    The secret store tells it every value it sets, replaces or deletes; readers ask for the redactor of the
    scope whose text they are about to store. A scope's redactor is built on first use and dropped when a
    value of its workspace changes, so a deleted or replaced value stops being masked at once.
    """

    def __init__(self, server: Redactor | None = None) -> None:
        self._lock = threading.Lock()
        self._values: dict[Entry, str] = {}
        self._cache: dict[tuple[int, int | None, bool], Redactor] = {}
        self.server = server if server is not None else default_redactor

    def _changed(self, workspace_id: int | None) -> None:
        if workspace_id is None:
            self._cache.clear()
        else:
            for key in [k for k in self._cache if k[0] == workspace_id]:
                del self._cache[key]
        self.server.set_values(self._values.values())

    def load(self, entries: Mapping[Entry, str]) -> None:
        """Replace everything with the given live secrets (at start-up)."""
        with self._lock:
            self._values = dict(entries)
            self._changed(None)

    def put(self, entry: Entry, value: str) -> str | None:
        """Mask ``value`` for the entry's scope from now on; returns the value it replaces, if any."""
        with self._lock:
            previous = self._values.get(entry)
            self._values[entry] = value
            self._changed(entry[0])
        return previous

    def remove(self, entry: Entry) -> None:
        """Stop masking the entry's value (its secret was deleted)."""
        with self._lock:
            if self._values.pop(entry, None) is not None:
                self._changed(entry[0])

    def has_repo_scopes(self, workspace_id: int) -> bool:
        """Whether any repo of the workspace has its own secrets (if not, a run's repo does not matter)."""
        return any(ws == workspace_id and repo is not None for ws, repo, _ in list(self._values))

    def for_scope(self, workspace_id: int, repo_id: int | None = None) -> Redactor:
        """The redactor for text of a workspace's run: its workspace secrets plus those of ``repo_id``."""
        return self._redactor(workspace_id, repo_id, every_repo=False)

    def for_workspace(self, workspace_id: int) -> Redactor:
        """The redactor for text that belongs to the workspace as a whole: all of its secrets, any scope."""
        return self._redactor(workspace_id, None, every_repo=True)

    def _redactor(self, workspace_id: int, repo_id: int | None, *, every_repo: bool) -> Redactor:
        key = (workspace_id, repo_id, every_repo)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            values = [v for (ws, repo, _), v in self._values.items()
                      if ws == workspace_id and (every_repo or repo is None or repo == repo_id)]
            redactor = Redactor(values) if values else _SHAPES_ONLY
            self._cache[key] = redactor
            return redactor


_registries: dict[str, RedactorRegistry] = {}
_registries_lock = threading.Lock()


def registry_for(database: str) -> RedactorRegistry:
    """The registry of the secrets stored in ``database`` (its URL as ``str(engine.url)``).

    Keyed by database so code that holds only a session (run rows, the audit log) finds the same registry the
    secret store keeps up to date, and two Optio instances in one process (tests) never share values.
    """
    with _registries_lock:
        registry = _registries.get(database)
        if registry is None:
            registry = _registries[database] = RedactorRegistry()
        return registry
