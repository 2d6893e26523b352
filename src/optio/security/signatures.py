"""Webhook authenticity: HMAC signatures and shared tokens.

A webhook endpoint is reachable by anyone who can reach Optio, and a forged
"PR merged" or "ticket assigned" event would make Optio act on work nobody
asked for. Forges prove a delivery is theirs in one of two ways, both handled
here: GitHub and Gitea sign the raw body with HMAC-SHA256 and send
``sha256=<hex>`` (``X-Hub-Signature-256``); GitLab echoes a shared token
(``X-Gitlab-Token``). Optio signs its own outgoing webhooks the GitHub way.

Comparisons are constant-time so response timing does not reveal how much of
a guessed signature was right.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PREFIX = "sha256="
_HEX_DIGEST_RE = re.compile(r"[0-9a-fA-F]{64}")


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _digest(secret: bytes | str, body: bytes) -> str:
    key = _as_bytes(secret)
    if not key:
        # An empty key would let anyone compute a valid signature.
        raise ValueError("webhook secret must not be empty")
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def sign(secret: bytes | str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value for ``body``: ``sha256=<hex>``."""
    return PREFIX + _digest(secret, body)


def verify(secret: bytes | str, body: bytes, header_value: str | None) -> bool:
    """Whether ``header_value`` is a valid ``sha256=<hex>`` signature of ``body``.

    Anything else — a missing or empty header, another algorithm such as the
    legacy ``sha1=``, a malformed digest, or an empty secret — is a rejection,
    never an error, so callers can answer 401 on ``False`` alone.
    """
    if not header_value or not _as_bytes(secret):
        return False
    value = header_value.strip()
    if value[: len(PREFIX)].lower() != PREFIX:
        return False
    given = value[len(PREFIX) :]
    if not _HEX_DIGEST_RE.fullmatch(given):
        return False
    expected = _digest(secret, body)
    return hmac.compare_digest(expected.encode("ascii"), given.lower().encode("ascii"))


def verify_token(expected: str | bytes | None, given: str | bytes | None) -> bool:
    """Constant-time check of a shared token such as GitLab's ``X-Gitlab-Token``.

    An empty expected token never matches: an unconfigured secret must not
    turn into "accept everything".
    """
    if not expected or not given:
        return False
    return hmac.compare_digest(_as_bytes(expected), _as_bytes(given))
