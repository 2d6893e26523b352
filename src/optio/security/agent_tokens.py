"""Per-turn tokens that let code running inside a persistent agent's turn call the inter-agent API.

A turn's process gets one in ``OPTIO_AGENT_TOKEN``. It is not an API key: it names one agent, its
workspace and one turn, and is good only while that turn runs. The signature and expiry are checked
here, with no I/O; whether the turn is still running is a database question the API asks after this
check passes (so a token from a finished turn is refused even before it expires).

Signed with HMAC-SHA256 under a key derived from the server's session secret (the same key material
that signs CSRF tokens), with a label of its own so a token of one kind can never pass for the other.
Nothing is stored: a restart that keeps the session secret keeps running turns' tokens valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

TOKEN_PREFIX = "optio-agent."
# Beside the environment, a turn finds its API URL and token in this file under its HOME: an MCP server started
# by a vendor CLI may get only a filtered environment, but it gets HOME.
TURN_FILE = ".optio/agent-turn.json"
_KEY_LABEL = b"optio-agent-token\x00v1"
_MAX_TOKEN_CHARS = 1024


@dataclass(frozen=True)
class AgentClaims:
    """Who a valid token speaks for: one agent, in one workspace, during one turn."""

    agent_id: int
    workspace_id: int
    turn_id: int
    expires_at: float


def _key(secret: bytes | str) -> bytes:
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not raw:
        raise ValueError("the agent-token secret must not be empty")
    return hmac.new(raw, _KEY_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _sign(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest())


def issue(secret: bytes | str, *, agent_id: int, workspace_id: int, turn_id: int, expires_at: float) -> str:
    """A token for one turn; ``expires_at`` (unix seconds) bounds it even if the turn's end is never seen."""
    payload = {"a": int(agent_id), "w": int(workspace_id), "t": int(turn_id), "exp": int(expires_at)}
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("ascii"))
    return f"{TOKEN_PREFIX}{body}.{_sign(_key(secret), body)}"


def looks_like_agent_token(value: str | None) -> bool:
    """Whether ``value`` has this token's shape (not whether it is valid)."""
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


def verify(secret: bytes | str, token: str | None, *, now: float) -> AgentClaims | None:
    """The claims of a well-signed, unexpired token; None for anything else (no reason given to the caller)."""
    if not looks_like_agent_token(token) or len(token or "") > _MAX_TOKEN_CHARS:
        return None
    assert token is not None
    body, dot, mac = token[len(TOKEN_PREFIX):].partition(".")
    if not dot or not body or not mac:
        return None
    if not hmac.compare_digest(_sign(_key(secret), body).encode("ascii"), mac.encode("utf-8")):
        return None
    try:
        payload = json.loads(_unb64(body))
        claims = AgentClaims(agent_id=int(payload["a"]), workspace_id=int(payload["w"]),
                             turn_id=int(payload["t"]), expires_at=float(payload["exp"]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if claims.expires_at <= now:
        return None
    return claims
