"""Per-turn agent tokens: signed claims that expire, and that no other key or kind of token can forge."""

from __future__ import annotations

import pytest

from optio.security import agent_tokens, tokens

SECRET = b"s3cret-session-material"
NOW = 1_800_000_000.0


def make(**overrides: float) -> str:
    fields = {"agent_id": 7, "workspace_id": 2, "turn_id": 41, "expires_at": NOW + 60} | overrides
    return agent_tokens.issue(SECRET, **fields)  # type: ignore[arg-type]


def test_a_token_carries_its_agent_workspace_and_turn() -> None:
    claims = agent_tokens.verify(SECRET, make(), now=NOW)
    assert claims == agent_tokens.AgentClaims(agent_id=7, workspace_id=2, turn_id=41, expires_at=NOW + 60)
    assert agent_tokens.looks_like_agent_token(make())
    assert not agent_tokens.looks_like_agent_token("optio_" + "a" * 40)


def test_an_expired_token_is_refused() -> None:
    token = make(expires_at=NOW + 5)
    assert agent_tokens.verify(SECRET, token, now=NOW + 4.9) is not None
    assert agent_tokens.verify(SECRET, token, now=NOW + 5) is None


def test_another_key_or_an_edited_payload_is_refused() -> None:
    token = make()
    assert agent_tokens.verify(b"another-secret", token, now=NOW) is None
    _body, _, mac = token[len(agent_tokens.TOKEN_PREFIX):].partition(".")
    other_body = make(workspace_id=3)[len(agent_tokens.TOKEN_PREFIX):].partition(".")[0]
    assert agent_tokens.verify(SECRET, f"{agent_tokens.TOKEN_PREFIX}{other_body}.{mac}", now=NOW) is None
    assert agent_tokens.verify(SECRET, token[:-2] + ("AA" if not token.endswith("AA") else "BB"), now=NOW) is None


@pytest.mark.parametrize("bad", [None, "", "optio-agent.", "optio-agent.abc", "optio-agent..sig",
                                 "optio-agent.!!!.sig", "Bearer x", "optio-agent." + "a" * 2000])
def test_malformed_tokens_are_refused_without_raising(bad: str | None) -> None:
    assert agent_tokens.verify(SECRET, bad, now=NOW) is None


def test_a_csrf_token_made_with_the_same_secret_is_not_an_agent_token() -> None:
    # Same key material, different label: one signed value cannot pass for the other.
    csrf = tokens.csrf_token_for("session", SECRET)
    assert agent_tokens.verify(SECRET, agent_tokens.TOKEN_PREFIX + "e30." + csrf, now=NOW) is None


def test_a_signed_payload_missing_a_claim_is_refused() -> None:
    import base64
    import hashlib
    import hmac

    body = base64.urlsafe_b64encode(b'{"a":1,"exp":9999999999}').rstrip(b"=").decode()
    key = hmac.new(SECRET, b"optio-agent-token\x00v1", hashlib.sha256).digest()
    mac = base64.urlsafe_b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    assert agent_tokens.verify(SECRET, f"{agent_tokens.TOKEN_PREFIX}{body}.{mac}", now=NOW) is None


def test_an_empty_secret_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        agent_tokens.issue(b"", agent_id=1, workspace_id=1, turn_id=1, expires_at=NOW)
