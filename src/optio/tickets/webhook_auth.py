"""The check every signed tracker delivery passes before its body is trusted: its HMAC, then its age.

Jira, Linear and Notion all sign the raw body with HMAC-SHA256 under the webhook's secret (hex, some with a
``sha256=`` prefix) and put the send time in the body; a delivery older than the tracker's tolerance is a
replay and is refused like a bad signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from optio.tickets.base import BadTicketSignature


def verify_signature(body: bytes, secret: str | None, signature: str, *, header: str, prefix: str,
                     missing: str) -> None:
    """Raise ``BadTicketSignature`` (``missing`` when there is no signature or no secret) unless the
    ``header``'s ``signature`` is the body's HMAC-SHA256 under ``secret``."""
    if not secret or not signature or not signature.startswith(prefix):
        raise BadTicketSignature(missing)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.removeprefix(prefix).strip().lower()):
        raise BadTicketSignature(f"{header} does not match the body")


def fresh_payload(body: bytes, *, tracker: str, field: str, sent_at: Callable[[dict[str, Any]], float],
                  now: float, tolerance_s: float, tolerance: str) -> dict[str, Any]:
    """The delivery's JSON, if the moment ``sent_at`` reads from it (seconds since the epoch, from its
    ``field``) is within ``tolerance_s`` of ``now``; ``tolerance`` words that bound for the refusal."""
    try:
        payload = json.loads(body)
        sent = sent_at(payload)
    except (ValueError, KeyError, TypeError) as exc:
        raise BadTicketSignature(f"{tracker} delivery without a {field}") from exc
    if abs(now - sent) > tolerance_s:
        raise BadTicketSignature(f"{tracker} delivery's {field} is more than {tolerance} away")
    return payload  # type: ignore[no-any-return]
