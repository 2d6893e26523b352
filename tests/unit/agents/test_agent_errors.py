"""Pure failure classification and its retry policies."""

from __future__ import annotations

import pytest

from optio.domain.agent_errors import ERROR_KINDS, classify_error, parse_retry_after, policy_for


@pytest.mark.parametrize(
    ("text", "exit_code", "status", "kind"),
    [
        ('{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}', 1, None, "auth"),
        ("Invalid API key · Fix external API key", 1, None, "auth"),
        ("OAuth token has expired. Please obtain a new token or refresh your existing token.", 1, None, "auth"),
        ("unexpected status 401 Unauthorized: Incorrect API key provided.", 1, None, "auth"),
        ("anything", 1, 403, "auth"),
        ("API Error: Request rejected (429) · Rate limited: too many requests", 1, None, "rate_limited"),
        ("exceeded retry limit, last status: 429 Too Many Requests", 1, None, "rate_limited"),
        ("Overloaded", 1, 529, "rate_limited"),
        ("[API Error: Quota exceeded ... (Status: RESOURCE_EXHAUSTED)]", 1, None, "rate_limited"),
        ("prompt is too long: 212345 tokens > 200000 maximum", 1, None, "context_too_long"),
        ("This model's maximum context length is 128000 tokens", 1, None, "context_too_long"),
        ("model_not_found: The model `gpt-9` does not exist", 1, None, "model_not_found"),
        ('{"type":"not_found_error","message":"model: claude-x"}', 1, 404, "model_not_found"),
        ("Connection error: ECONNREFUSED 127.0.0.1:443", 1, None, "network"),
        ("stream disconnected before completion", 1, None, "network"),
        ("upstream said no", 1, 503, "network"),
        ("the run timed out after 3600s", 124, None, "timeout"),
        ("Your credit balance is too low to access the Anthropic API", 1, None, "budget"),
        ("You exceeded your current quota, please check your plan and billing details", 1, 429, "budget"),
        ("thread 'main' panicked at src/main.rs:1", 101, None, "crashed"),
        ("", -9, None, "crashed"),
        ("", 0, None, "unknown"),
    ],
)
def test_classification(text: str, exit_code: int, status: int | None, kind: str) -> None:
    assert classify_error(text, exit_code=exit_code, http_status=status).kind == kind


def test_auth_failures_fail_fast_and_name_the_secret() -> None:
    error = classify_error("invalid x-api-key", exit_code=1, secret_name="TEAM_ANTHROPIC_KEY")
    assert error.kind == "auth" and not error.retryable
    assert "TEAM_ANTHROPIC_KEY" in error.message and error.secret_name == "TEAM_ANTHROPIC_KEY"
    assert classify_error("rate_limit_error", exit_code=1, secret_name="X").secret_name is None


def test_rate_limits_carry_retry_after_and_lower_concurrency() -> None:
    error = classify_error("429 Too Many Requests; retry-after: 30", exit_code=1)
    assert error.kind == "rate_limited" and error.retryable and error.retry_after_s == 30
    assert "30s" in error.message
    policy = policy_for("rate_limited")
    assert policy.retry and policy.backoff and policy.lower_concurrency


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("retry-after: 12", 12.0),
        ('"retry-after": "2.5"', 2.5),
        ("Please try again in 20s.", 20.0),
        ("Please try again in 250ms", 0.25),
        ("Please retry in 3.5s", 3.5),
        ("try again in 2 minutes", 120.0),
        ('"retryDelay": "7s"', 7.0),
        ("no hint here", None),
    ],
)
def test_retry_after_parsing(text: str, seconds: float | None) -> None:
    assert parse_retry_after(text) == seconds


def test_every_kind_has_a_policy_and_only_transient_kinds_retry() -> None:
    retrying = {kind for kind in ERROR_KINDS if policy_for(kind).retry}
    assert retrying == {"rate_limited", "network", "crashed", "unknown"}
    assert {k for k in ERROR_KINDS if policy_for(k).lower_concurrency} == {"rate_limited"}
