"""The outbound rules every provider's HTTP follows: the SSRF guard with the server's allowlist, on every
request (redirects included), and a bounded timeout so a dead tracker costs the ticket thread seconds, never
the loop anything.

Providers are built from a source config and a credential alone (see `registry`); the allowlist is the one
process-wide setting they share, set once when the server is built (`set_allowlist`) and by tests that talk to
fakes on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx

from optio.security.ssrf import Allowlist, UnsafeURLError, check_url, guarded_client
from optio.tickets.base import TicketProviderError

__all__ = ["TIMEOUT_S", "RequestHook", "allowlist", "check", "client", "credential", "guard", "guarded",
           "set_allowlist"]

RequestHook = Callable[[httpx.Request], None]

TIMEOUT_S = 15.0
_allowlist: Allowlist = Allowlist.parse(())


def set_allowlist(entries: Sequence[str]) -> None:
    global _allowlist
    _allowlist = Allowlist.parse(entries)


def allowlist() -> Allowlist:
    return _allowlist


def check(url: str) -> None:
    """Raise UnsafeURLError unless Optio may call `url`."""
    check_url(url, allowlist=_allowlist)


def guard(request: httpx.Request) -> None:
    """An httpx request hook: the SSRF check on each request a client sends."""
    check_url(request.url, allowlist=_allowlist)


def client(*, timeout: float = TIMEOUT_S, headers: dict[str, str] | None = None) -> httpx.Client:
    """An httpx client that checks every URL it calls (redirects too) against the SSRF guard."""
    return guarded_client(_allowlist, timeout=timeout, follow_redirects=False, headers=headers or {})


def credential(secret: str | None, tracker: str, what: str) -> str:
    """The source's credential, or the provider error that says which one `tracker` needs (e.g. "an API key")."""
    if not secret:
        raise TicketProviderError(f"a {tracker} source needs {what} (its credential secret)")
    return secret


def guarded(url: str, allowlist: Sequence[str] | Allowlist | None = None) -> RequestHook:
    """Check a provider's base `url` now, and return the request hook that checks every request its client sends.

    Checking at construction refuses a bad source when it is added; the hook still checks each request because a
    name can resolve elsewhere later. `allowlist` defaults to the server's as it is now: a provider keeps the
    rules it was built with.
    """
    allowed = _allowlist if allowlist is None else Allowlist.parse(allowlist)
    check_url(url, allowlist=allowed)

    def hook(request: httpx.Request) -> None:
        check_url(request.url, allowlist=allowed)

    return hook


# Re-exported for providers that report a refused URL as a provider error.
UnsafeURL = UnsafeURLError
