"""Classifies why an agent run failed, and what to do about it.

Vendor CLIs report failures as free text on stderr, as an error event in their stream, or only as an
exit code. Whether a run should be retried depends on which failure it was: a rate limit passes on
its own (retry later, and run fewer agents at once against that repo), a bad key never does (fail at
once and say which secret to fix). This module turns the evidence into one of a few kinds, each with
a fixed policy, without any I/O so the decision stays testable with plain strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ErrorKind = Literal[
    "auth",
    "rate_limited",
    "context_too_long",
    "model_not_found",
    "network",
    "crashed",
    "timeout",
    "budget",
    "config",
    "unknown",
]

ERROR_KINDS: tuple[ErrorKind, ...] = (
    "auth",
    "rate_limited",
    "context_too_long",
    "model_not_found",
    "network",
    "crashed",
    "timeout",
    "budget",
    "config",
    "unknown",
)


@dataclass(frozen=True)
class RetryPolicy:
    """What a failure of one kind means for its run (applied by ``optio.domain.retry``).

    ``retry`` false fails the run at once: retrying an invalid key, a model that does not exist or a
    prompt that does not fit only burns time and money. ``extra_attempts`` are granted beyond the run's
    ``max_retries``, for failures that are not the agent's fault.
    """

    retry: bool
    backoff: bool
    lower_concurrency: bool
    extra_attempts: int = 0


@dataclass(frozen=True)
class AgentError:
    kind: ErrorKind
    retryable: bool
    retry_after_s: float | None
    message: str
    secret_name: str | None = None


# A rate limit is not the agent's fault: it gets this many attempts beyond ``max_retries`` before giving up.
RATE_LIMIT_EXTRA_ATTEMPTS = 5

# The one error-policy table: the retry decisions of every run kind and the agent adapters read it.
_POLICIES: dict[ErrorKind, RetryPolicy] = {
    "auth": RetryPolicy(retry=False, backoff=False, lower_concurrency=False),
    "rate_limited": RetryPolicy(retry=True, backoff=True, lower_concurrency=True,
                                extra_attempts=RATE_LIMIT_EXTRA_ATTEMPTS),
    "context_too_long": RetryPolicy(retry=False, backoff=False, lower_concurrency=False),
    "model_not_found": RetryPolicy(retry=False, backoff=False, lower_concurrency=False),
    "network": RetryPolicy(retry=True, backoff=True, lower_concurrency=False),
    "crashed": RetryPolicy(retry=True, backoff=True, lower_concurrency=False),
    "timeout": RetryPolicy(retry=False, backoff=False, lower_concurrency=False),
    "budget": RetryPolicy(retry=False, backoff=False, lower_concurrency=False),
    # The agent could not even be configured (a bad agent config, a missing secret): it will not fix itself.
    "config": RetryPolicy(retry=False, backoff=False, lower_concurrency=False),
    "unknown": RetryPolicy(retry=True, backoff=True, lower_concurrency=False),
}


def policy_for(kind: ErrorKind) -> RetryPolicy:
    """Retry-or-fail policy of a failure kind; callers still cap the number of attempts."""
    return _POLICIES[kind]


def as_error_kind(kind: str | None) -> ErrorKind | None:
    """A stored or reported kind as an ``ErrorKind``; one this version does not know counts as ``unknown``."""
    if kind is None:
        return None
    for known in ERROR_KINDS:
        if known == kind:
            return known
    return "unknown"


def _rx(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(patterns), re.IGNORECASE)


_AUTH = _rx(
    r"authentication[_ ]error",
    r"invalid[ _-]?(x-)?api[ _-]?key",
    r"incorrect api key",
    r"api key (is )?(not valid|invalid|missing)",
    r"invalid bearer token",
    r"\bunauthori[sz]ed\b",
    r"oauth token (has )?expired",
    r"token (has )?expired",
    r"expired (oauth |access )?token",
    r"not logged in",
    r"please run /login",
    r"\bstatus(?: code)?:? ?401\b",
    r"\b401 (unauthorized|status)",
    r"permission[_ ]denied.*api key",
    r"missing (an )?api key",
    r"no api key",
)
_BUDGET = _rx(
    r"insufficient[_ ]quota",
    r"exceeded your current quota",
    r"credit balance is too low",
    r"max[_ ]budget",
    r"budget (exceeded|exhausted|reached)",
    r"billing",
    r"spend(ing)? limit",
)
_RATE = _rx(
    r"rate[_ ]limit",
    r"too many requests",
    r"\b429\b",
    r"overloaded",
    r"\b529\b",
    r"resource[_ ]exhausted",
    r"quota exceeded",
    r"usage limit",
)
_CONTEXT = _rx(
    r"prompt is too long",
    r"context[_ ]length[_ ]exceeded",
    r"maximum context length",
    r"context window",
    r"input is too long",
    r"too many (input )?tokens",
    r"exceeds the (maximum )?(context|token)",
    r"request too large",
)
_MODEL = _rx(
    r"model[_ ]not[_ ]found",
    r"model .{0,80}(not found|does not exist|is not supported|unknown)",
    r"unknown model",
    r"invalid model",
    r"no such model",
    r"not_found_error.{0,80}model",
)
_NETWORK = _rx(
    r"econnrefused",
    r"econnreset",
    r"enotfound",
    r"eai_again",
    r"etimedout",
    r"connection (refused|reset|error|closed)",
    r"network (error|is unreachable)",
    r"socket hang up",
    r"fetch failed",
    r"unable to connect",
    r"could not resolve host",
    r"stream disconnected",
    r"error sending request",
    r"dns error",
    r"\b50[234]\b.{0,40}(gateway|unavailable)",
)
_TIMEOUT = _rx(r"timed out", r"\btimeout\b", r"deadline exceeded")
_CRASH = _rx(r"segmentation fault", r"panicked at", r"fatal error", r"out of memory", r"killed")

_UNIT = r"\s*(ms|s|sec|seconds?|m|min|minutes?)?"
_RETRY_AFTER = [
    re.compile(r"retry[- ]after[\"']?\s*[:=]?\s*[\"']?(\d+(?:\.\d+)?)\s*(ms|s|sec|seconds?)?", re.IGNORECASE),
    re.compile(r"(?:try|retry) again in\s*(\d+(?:\.\d+)?)" + _UNIT, re.IGNORECASE),
    re.compile(r"retry in\s*(\d+(?:\.\d+)?)" + _UNIT, re.IGNORECASE),
    re.compile(r"retryDelay[\"']?\s*:\s*[\"'](\d+(?:\.\d+)?)(s|ms)[\"']", re.IGNORECASE),
]


def parse_retry_after(text: str) -> float | None:
    """Seconds to wait, from a Retry-After header echoed in text or a vendor's "try again in Ns"."""
    for pattern in _RETRY_AFTER:
        match = pattern.search(text)
        if match:
            value = float(match.group(1))
            unit = (match.group(2) or "s").lower()
            if unit == "ms":
                return value / 1000
            if unit.startswith("m"):
                return value * 60
            return value
    return None


def _auth_message(detail: str, secret_name: str | None) -> str:
    fix = (
        f"check the secret {secret_name}: it is missing, invalid or expired"
        if secret_name
        else "check the agent's API key or login token"
    )
    return f"authentication failed ({detail}); {fix}"


def _first_line(text: str, limit: int = 300) -> str:
    for line in text.strip().splitlines():
        line = line.strip()
        if line:
            return line[:limit]
    return ""


def classify_error(
    text: str,
    *,
    exit_code: int | None,
    http_status: int | None = None,
    secret_name: str | None = None,
) -> AgentError:
    """Maps the evidence of a failed run to a kind and its retry policy.

    ``text`` is whatever the run said about the failure (an error event's message, a stderr tail);
    ``http_status`` is the model API's status when known; ``secret_name`` is the name of the secret
    that holds the model credentials, so an auth failure can say exactly what to fix.
    """
    detail = _first_line(text) or (f"exit code {exit_code}" if exit_code is not None else "no output")
    kind = _kind(text, exit_code=exit_code, http_status=http_status)
    retry_after = parse_retry_after(text) if kind == "rate_limited" else None
    return describe_error(
        kind, detail, exit_code=exit_code, retry_after_s=retry_after, secret_name=secret_name
    )


def describe_error(
    kind: ErrorKind,
    detail: str,
    *,
    exit_code: int | None = None,
    retry_after_s: float | None = None,
    secret_name: str | None = None,
) -> AgentError:
    """An ``AgentError`` of a known kind, with a message a person can act on."""
    if kind == "auth":
        message = _auth_message(detail, secret_name)
    elif kind == "rate_limited":
        wait = f"; retry after {retry_after_s:g}s" if retry_after_s is not None else ""
        message = f"rate limited by the model API ({detail}){wait}"
    elif kind == "context_too_long":
        message = f"the conversation no longer fits the model's context window ({detail})"
    elif kind == "model_not_found":
        message = f"the model is not available to this account or endpoint ({detail})"
    elif kind == "network":
        message = f"could not reach the model API ({detail})"
    elif kind == "timeout":
        message = f"the agent timed out ({detail})"
    elif kind == "budget":
        message = f"spending limit reached ({detail})"
    elif kind == "config":
        message = f"the agent could not be configured ({detail})"
    elif kind == "crashed":
        message = f"the agent exited unexpectedly with code {exit_code} ({detail})"
    else:
        message = detail
    return AgentError(
        kind=kind,
        retryable=policy_for(kind).retry,
        retry_after_s=retry_after_s if kind == "rate_limited" else None,
        message=message,
        secret_name=secret_name if kind == "auth" else None,
    )


def _kind(text: str, *, exit_code: int | None, http_status: int | None) -> ErrorKind:
    if http_status in (401, 403) or _AUTH.search(text):
        return "auth"
    if _BUDGET.search(text):
        return "budget"
    if http_status in (429, 529) or _RATE.search(text):
        return "rate_limited"
    if http_status == 413 or _CONTEXT.search(text):
        return "context_too_long"
    if _MODEL.search(text) or (http_status == 404 and "model" in text.lower()):
        return "model_not_found"
    if _NETWORK.search(text) or (http_status is not None and http_status >= 500):
        return "network"
    if exit_code == 124 or _TIMEOUT.search(text):
        return "timeout"
    if _CRASH.search(text) or (exit_code is not None and exit_code != 0):
        return "crashed"
    return "unknown"
