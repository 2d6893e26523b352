"""Turns how an agent process ended into a classified failure, shared by the vendor adapters."""

from __future__ import annotations

from collections.abc import Sequence

from optio.agents.events import AgentEvent, ErrorEvent, ResultEvent
from optio.domain.agent_errors import AgentError, as_error_kind, classify_error, describe_error, parse_retry_after

_GENERIC = ("unknown", "crashed")


class _DefaultSecret:
    """Marks a ``secret_name`` left out, as opposed to one given as None."""


_DEFAULT_SECRET = _DefaultSecret()


class ClassifiesFailures:
    """``classify_failure`` for an adapter, naming ``api_key_secret`` when the caller names no secret.

    The secret only words the message of an auth failure; None means the adapter has no single
    default credential.
    """

    api_key_secret: str | None = None

    def classify_failure(
        self,
        exit_code: int | None,
        stderr_tail: str,
        events: Sequence[AgentEvent],
        *,
        secret_name: str | _DefaultSecret | None = _DEFAULT_SECRET,
    ) -> AgentError | None:
        name = self.api_key_secret if isinstance(secret_name, _DefaultSecret) else secret_name
        return classify_run(exit_code, stderr_tail, events, secret_name=name)


def classify_run(
    exit_code: int | None,
    stderr_tail: str,
    events: Sequence[AgentEvent],
    *,
    secret_name: str | None = None,
) -> AgentError | None:
    """None when the run succeeded; otherwise the failure, classified from all the evidence.

    A run succeeded when it exited 0 and did not report a failed result. An error event the
    parser already classified (from the vendor's own API error) names the cause more precisely
    than an exit code or a stderr tail, so it wins.
    """
    results = [e for e in events if isinstance(e, ResultEvent)]
    failed_result = bool(results) and not results[-1].success
    if exit_code == 0 and not failed_result:
        return None
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    specific = next((e for e in reversed(errors) if e.kind not in _GENERIC), None)
    if specific is not None:
        retry_after = specific.retry_after_s
        if retry_after is None and specific.kind == "rate_limited":
            retry_after = parse_retry_after(stderr_tail)
        return describe_error(
            as_error_kind(specific.kind) or "unknown",
            specific.message,
            exit_code=exit_code,
            retry_after_s=retry_after,
            secret_name=secret_name,
        )
    parts = [e.message for e in errors]
    if failed_result and results[-1].summary:
        parts.append(results[-1].summary)
    if stderr_tail.strip():
        parts.append(stderr_tail.strip())
    return classify_error("\n".join(parts), exit_code=exit_code, secret_name=secret_name)


def error_event(text: str, *, http_status: int | None = None) -> ErrorEvent:
    """An error event for a vendor's error text: classified kind, the vendor's own words as message."""
    error = classify_error(text, exit_code=None, http_status=http_status)
    first = next((line.strip() for line in text.splitlines() if line.strip()), text.strip())
    return ErrorEvent(
        kind=error.kind,
        message=first[:500],
        retryable=error.retryable,
        retry_after_s=error.retry_after_s,
    )
