"""Keep secrets out of logs, events and anything else a person may read.

Agent output is streamed to the dashboard and stored, and an agent that prints
its environment or echoes a failing ``curl -H "Authorization: ..."`` would
otherwise publish the credentials Optio handed it. Two nets catch that:

* the exact values Optio knows to be secret (it injected them, so it knows
  them), longest first so a secret containing a shorter one is masked whole;
* the shapes of well-known credentials (GitHub, GitLab, OpenAI/Anthropic, Slack,
  AWS, JWTs, bearer headers, Optio's own API keys) for secrets Optio never saw.

The shape patterns are deliberately anchored on vendor prefixes, not on
"looks random", so git SHAs, UUIDs, paths and numbers stay readable.

Everything is folded into one compiled alternation, rebuilt only when the set
of known values changes, so redacting a line is a single regex pass.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 4

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


def _replace(match: re.Match[str]) -> str:
    keep = match.group("keep_auth") or match.group("keep_bearer") or ""
    return keep + MASK


def _compile(values: Iterable[str]) -> re.Pattern[str]:
    literals = [re.escape(v) for v in sorted(values, key=lambda v: (-len(v), v))]
    return re.compile("|".join([*literals, *_TOKEN_SHAPES]))


class Redactor:
    """Masks known secret values and credential-shaped strings in text.

    Safe to share between threads: writers rebuild the pattern under a lock and
    swap it in with one assignment, readers never lock.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self._pattern = _compile(())
        self.set_values(values)

    @staticmethod
    def _usable(values: Iterable[str]) -> set[str]:
        # Very short values ("on", "1", "abc") would shred ordinary text while
        # protecting nothing worth protecting.
        return {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}

    def add(self, value: str) -> None:
        """Start masking ``value`` too."""
        self.update((value,))

    def update(self, values: Iterable[str]) -> None:
        """Start masking every one of ``values`` in addition to the known ones."""
        new = self._usable(values)
        with self._lock:
            if new <= self._values:
                return
            self._values = self._values | new
            self._pattern = _compile(self._values)

    def set_values(self, values: Iterable[str]) -> None:
        """Replace the set of known secret values (e.g. after a secret was deleted)."""
        new = frozenset(self._usable(values))
        with self._lock:
            if new == self._values:
                return
            self._values = new
            self._pattern = _compile(new)

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        """``text`` with every known secret and credential-shaped string replaced by ``***``."""
        if not text:
            return text
        return self._pattern.sub(_replace, text)

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


default_redactor = Redactor()


def redact(text: str) -> str:
    """Redact with the process-wide :data:`default_redactor`."""
    return default_redactor.redact(text)
