"""Talking to one GitHub (github.com or Enterprise Server) through githubkit: auth, the SSRF guard, conditional
requests, and GitHub's "not now" turned into `ForgeBusy`.

* Auth is a token (a named secret) or a GitHub App: an installation token is minted with the App's JWT and
  kept until a minute before it expires; the same token serves git (through GIT_ASKPASS) and the API, and
  every minted token is added to the redactor before it is used anywhere.
* Every request, redirects included, passes the SSRF guard (`OPTIO_OUTBOUND_ALLOWLIST` for private hosts).
* GETs are conditional: a stored ETag is sent as ``If-None-Match`` and a 304 (which costs no rate limit)
  answers from the stored value, so an idle repo polled for hours spends nothing.
* A rate limit (``X-RateLimit-Remaining: 0`` with its reset time, a secondary limit's ``Retry-After``), a 5xx
  or an unreachable host raises `ForgeBusy`: the caller puts the work off, it never fails a task.
* Errors never carry the token: messages are built here from the status and GitHub's own message.
"""

from __future__ import annotations

import functools
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from optio.errors import AppError
from optio.forge.base import ForgeBusy
from optio.forge.hosted import retry_after_s
from optio.observability import metrics
from optio.security.redact import default_redactor
from optio.security.ssrf import Allowlist, check_url

if TYPE_CHECKING:
    from githubkit import GitHub
    from githubkit.response import Response

# githubkit itself is imported by the first request, not by every server start: most servers never talk to a
# GitHub, and the package costs a start a fifth of a second.

T = TypeVar("T")


@functools.cache
def _tls() -> ssl.SSLContext:
    """The TLS settings every GitHub client shares: a client is made per request, and loading the CA bundle
    into a new context each time cost each request tens of milliseconds of CPU."""
    return httpx.create_ssl_context(trust_env=False)

# How long to wait after a 5xx or an unreachable GitHub when it does not say.
SERVER_ERROR_WAIT_S = 5.0
# An installation token is used until this long before it expires, then a new one is minted.
TOKEN_MARGIN_S = 60.0
USER_AGENT = "optio"


class GitHubError(AppError):
    """GitHub answered with an error that is not "not now": the message is GitHub's, never a credential."""

    status = 502
    code = "forge_error"

    def __init__(self, message: str, *, status_code: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


def github_message(response: httpx.Response) -> str:
    """GitHub's own words for an error (``message`` and any ``errors``), short and without request details."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    if not isinstance(data, dict):
        return str(data)[:300]
    parts = [str(data.get("message") or "")]
    for error in data.get("errors") or []:
        if isinstance(error, dict):
            parts.append(str(error.get("message") or error.get("code") or ""))
        else:
            parts.append(str(error))
    return "; ".join(p for p in parts if p)[:500]


class GitHubClient:
    """One repo's connection to its GitHub: a githubkit client for its API root and credentials."""

    def __init__(self, api_url: str, *, token: Callable[[], str], allowlist: Sequence[str] | Allowlist = (),
                 on_busy: Callable[[ForgeBusy], ForgeBusy] = lambda busy: busy, timeout_s: float = 30.0) -> None:
        self.api_url = api_url
        self._token = token
        self._on_busy = on_busy
        allowed = Allowlist.parse(allowlist)

        def guard(request: httpx.Request) -> None:
            check_url(request.url, allowlist=allowed)

        self._guard = guard
        self._timeout = timeout_s
        self._etags: dict[tuple[Any, ...], tuple[str, Any]] = {}
        self._lock = threading.Lock()
        self.requests = 0  # made by this client (a 304 included), for the poller's accounting

    def github(self) -> GitHub[Any]:
        """A githubkit client with the current token (an App's is re-minted when it nears its expiry)."""
        from githubkit import GitHub, TokenAuthStrategy

        return GitHub(TokenAuthStrategy(self._token()), base_url=self.api_url, user_agent=USER_AGENT,
                      timeout=self._timeout, auto_retry=False, http_cache=False, trust_env=False, ssl_verify=_tls(),
                      follow_redirects=True, event_hooks={"request": [self._guard]})

    def call(self, what: str, request: Callable[[GitHub[Any]], Response[T]]) -> Response[T]:
        """Make one request; GitHub's "not now" becomes ForgeBusy, any other error a GitHubError."""
        with metrics.forge_call("github"):
            return self._call(what, request)

    def _call(self, what: str, request: Callable[[GitHub[Any]], Response[T]]) -> Response[T]:
        from githubkit.exception import RateLimitExceeded, RequestError, RequestFailed, RequestTimeout

        self.requests += 1
        try:
            with self.github() as gh:
                return request(gh)
        except RateLimitExceeded as exc:
            wait = exc.retry_after.total_seconds() if exc.retry_after else 60.0
            wait = retry_after_s(dict(exc.response.raw_response.headers), now=time.time(), default=wait)
            raise self._on_busy(ForgeBusy(f"GitHub rate limit ({what}): waiting {wait:.0f}s for its reset",
                                          wait)) from None
        except RequestFailed as exc:
            raw = exc.response.raw_response
            if raw.status_code >= 500 or raw.status_code == 429:
                wait = retry_after_s(dict(raw.headers), now=time.time(), default=SERVER_ERROR_WAIT_S)
                raise self._on_busy(ForgeBusy(f"GitHub answered {raw.status_code} ({what})", wait)) from None
            if raw.status_code == 403 and raw.headers.get("x-ratelimit-remaining") == "0":
                wait = retry_after_s(dict(raw.headers), now=time.time(), default=60.0)
                raise self._on_busy(ForgeBusy(f"GitHub rate limit ({what})", wait)) from None
            raise GitHubError(f"GitHub refused {what}: {raw.status_code} {github_message(raw)}",
                              status_code=raw.status_code, detail=github_message(raw)) from None
        except (RequestTimeout, RequestError) as exc:
            reason = type(getattr(exc, "error", exc)).__name__
            raise self._on_busy(ForgeBusy(f"GitHub unreachable ({what}): {reason}", SERVER_ERROR_WAIT_S)) from None

    def graphql(self, what: str, query: str, variables: dict[str, Any]) -> Any:
        """One GraphQL request (for what REST cannot do), with the same "not now" handling as REST."""
        with metrics.forge_call("github"):
            return self._graphql(what, query, variables)

    def _graphql(self, what: str, query: str, variables: dict[str, Any]) -> Any:
        from githubkit.exception import GraphQLFailed, RateLimitExceeded, RequestError, RequestFailed, RequestTimeout

        self.requests += 1
        try:
            with self.github() as gh:
                return gh.graphql.request(query, variables)
        except GraphQLFailed as exc:
            raise GitHubError(f"GitHub refused {what}: {'; '.join(e.message for e in exc.response.errors or [])}"
                              ) from None
        except RateLimitExceeded as exc:
            wait = exc.retry_after.total_seconds() if exc.retry_after else 60.0
            raise self._on_busy(ForgeBusy(f"GitHub rate limit ({what})", wait)) from None
        except RequestFailed as exc:
            raw = exc.response.raw_response
            if raw.status_code >= 500:
                raise self._on_busy(ForgeBusy(f"GitHub answered {raw.status_code} ({what})", SERVER_ERROR_WAIT_S)
                                    ) from None
            raise GitHubError(f"GitHub refused {what}: {raw.status_code} {github_message(raw)}",
                              status_code=raw.status_code) from None
        except (RequestTimeout, RequestError):
            raise self._on_busy(ForgeBusy(f"GitHub unreachable ({what})", SERVER_ERROR_WAIT_S)) from None

    def cached(self, key: tuple[Any, ...], what: str,
               request: Callable[[GitHub[Any], Mapping[str, str]], Response[Any]],
               parse: Callable[[Response[Any]], T]) -> T:
        """A conditional GET: the stored value when GitHub answers 304 to its ETag, else the fresh one."""
        with self._lock:
            stored = self._etags.get(key)
        headers = {"If-None-Match": stored[0]} if stored else {}
        response = self.call(what, lambda gh: request(gh, headers))
        if response.status_code == 304 and stored is not None:
            return stored[1]  # type: ignore[no-any-return]
        value = parse(response)
        etag = response.headers.get("etag")
        if etag:
            with self._lock:
                self._etags[key] = (etag, value)
        return value


class AppTokens:
    """Installation tokens of GitHub Apps, minted on demand and kept until just before they expire."""

    def __init__(self, *, allowlist: Sequence[str] | Allowlist = (), clock: Callable[[], float] = time.time) -> None:
        self._allowlist = Allowlist.parse(allowlist)
        self._clock = clock
        self._tokens: dict[tuple[str, int, int], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def token(self, api_url: str, app_id: int, installation_id: int, private_key: str) -> str:
        key = (api_url, app_id, installation_id)
        with self._lock:
            found = self._tokens.get(key)
        if found is not None and found[1] - TOKEN_MARGIN_S > self._clock():
            return found[0]
        allowed = self._allowlist
        from githubkit import AppAuthStrategy, GitHub
        from githubkit.exception import RequestError, RequestFailed, RequestTimeout

        def guard(request: httpx.Request) -> None:
            check_url(request.url, allowlist=allowed)

        try:
            with GitHub(AppAuthStrategy(str(app_id), private_key), base_url=api_url, user_agent=USER_AGENT,
                        auto_retry=False, http_cache=False, trust_env=False, ssl_verify=_tls(),
                        event_hooks={"request": [guard]}) as gh:
                minted = gh.rest.apps.create_installation_access_token(installation_id).parsed_data
        except RequestFailed as exc:
            raw = exc.response.raw_response
            if raw.status_code >= 500:
                raise ForgeBusy(f"GitHub answered {raw.status_code} minting an App token", SERVER_ERROR_WAIT_S) \
                    from None
            raise GitHubError(f"the GitHub App could not get an installation token: {raw.status_code} "
                              f"{github_message(raw)}", status_code=raw.status_code) from None
        except (RequestTimeout, RequestError):
            raise ForgeBusy("GitHub unreachable minting an App token", SERVER_ERROR_WAIT_S) from None
        except ValueError as exc:  # a key that is not a PEM private key
            raise GitHubError(f"the GitHub App's private key does not load: {type(exc).__name__}") from None
        default_redactor.add(minted.token)
        expires = datetime.fromisoformat(minted.expires_at.replace("Z", "+00:00")).astimezone(UTC).timestamp()
        with self._lock:
            self._tokens[key] = (minted.token, expires)
        return minted.token
