"""One GitLab instance as one token sees it: python-gitlab's HTTP layer with Optio's rules around it.

python-gitlab does the auth header, URL building, JSON and error parsing. Around it this module adds what the
repo loop needs of every call:

* never wait inside a call: python-gitlab sleeps through a 429 by default (``obey_rate_limit``) and can retry
  5xx; here both raise :class:`ForgeBusy` at once with the time to come back (``Retry-After`` or
  ``RateLimit-Reset``), and control defers the task instead of a worker thread sleeping;
* conditional GETs: GitLab answers GETs with an ``ETag`` and a matching ``If-None-Match`` with 304, so the
  poller's idle look at a repo costs a 304 and no body;
* the token never leaves the ``PRIVATE-TOKEN`` header: every message that leaves this module is redacted.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import structlog

from optio.forge.base import ForgeBusy
from optio.observability import metrics

if TYPE_CHECKING:
    import gitlab
    import requests

log = structlog.get_logger("optio.forge.gitlab")

ETAG_CACHE_ENTRIES = 4096
# When a 5xx or a dropped connection says nothing about when to come back.
DEFAULT_BUSY_RETRY_S = 15.0
REQUEST_TIMEOUT_S = 30.0


class GitLabError(RuntimeError):
    """GitLab answered with an error that waiting alone will not fix (a missing project, a refused token).

    Not an `AppError`: in the loop it is an executor error (recorded on the task, retried with backoff and
    given up after a bound), which is what an unexpected answer from a forge should be.
    """

    def __init__(self, message: str, response_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.response_code = response_code


def encode_path(path: str) -> str:
    """A project path (``group/sub/proj``) or branch name as one URL path segment, as GitLab's API wants it."""
    return quote(path, safe="")


@dataclass
class Counts:
    """Requests this client sent, by outcome (what the idle-polling guarantee is measured with)."""

    sent: int = 0
    not_modified: int = 0


class GitLabApi:
    def __init__(self, base_url: str, token: str, *, redact: Callable[[str], str] = lambda s: s,
                 timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._redact = redact
        # python-gitlab (with the gql and requests it loads) is imported by the first client, not by every
        # server start: most servers never talk to a GitLab.
        import gitlab
        import requests

        session = requests.Session()
        session.trust_env = False  # no proxy, no ~/.netrc from the server's environment
        # ...but a self-managed instance's own CA, named the way git is told about it, is trusted alike.
        ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
        if ca:
            session.verify = ca
        session.hooks["response"].append(self._remember)
        self._local = threading.local()
        self.gl = gitlab.Gitlab(self.base_url, private_token=token, session=session, timeout=timeout_s,
                                retry_transient_errors=False, per_page=100)
        self._etags: OrderedDict[str, tuple[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.counts = Counts()

    # --- what callers use ------------------------------------------------------------------------------

    def get(self, path: str, query: Mapping[str, Any] | None = None, *, conditional: bool = True) -> Any:
        """A conditional GET: a 304 answers from the body remembered with the ETag (``conditional=False``:
        a plain GET whose body is not kept, e.g. a job trace)."""
        if not conditional:
            return _body(self._request("get", path, query=query))
        key = f"{path}?{urlencode(sorted((query or {}).items()), doseq=True)}"
        with self._lock:
            cached = self._etags.get(key)
        headers = {"If-None-Match": cached[0]} if cached else None
        try:
            resp = self._request("get", path, query=query, headers=headers)
        except _NotModified:
            assert cached is not None
            with self._lock:
                self.counts.not_modified += 1
                self._etags.move_to_end(key)
            return cached[1]
        body = _body(resp)
        etag = resp.headers.get("ETag")
        if etag:
            with self._lock:
                self._etags[key] = (etag, body)
                self._etags.move_to_end(key)
                while len(self._etags) > ETAG_CACHE_ENTRIES:
                    self._etags.popitem(last=False)
        return body

    def post(self, path: str, data: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None) -> Any:
        return _body(self._request("post", path, query=query, data=data))

    def put(self, path: str, data: Mapping[str, Any] | None = None) -> Any:
        return _body(self._request("put", path, data=data))

    def delete(self, path: str) -> None:
        self._request("delete", path)

    def clean(self, text: str) -> str:
        """``text`` with the token (and every secret the redactor knows) masked."""
        return self._redact(text.replace(self._token, "[REDACTED]") if self._token else text)

    # --- the one place requests are made ---------------------------------------------------------------

    def _remember(self, resp: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        self._local.last = resp
        return resp

    def _request(self, verb: str, path: str, *, query: Mapping[str, Any] | None = None,
                 data: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
                 ) -> requests.Response:
        with metrics.forge_call("gitlab"):
            return self._send(verb, path, query=query, data=data, headers=headers)

    def _send(self, verb: str, path: str, *, query: Mapping[str, Any] | None,
              data: Mapping[str, Any] | None, headers: Mapping[str, str] | None) -> requests.Response:
        with self._lock:
            self.counts.sent += 1
        self._local.last = None
        import gitlab  # loaded by __init__ already
        import requests

        try:
            return self.gl.http_request(verb, path, query_data=dict(query or {}),
                                        post_data=dict(data) if data is not None else None,
                                        obey_rate_limit=False, retry_transient_errors=False,
                                        extra_headers=dict(headers) if headers else None)
        except gitlab.exceptions.GitlabError as exc:  # GitlabHttpError, and GitlabAuthenticationError for a 401
            if exc.response_code == 304 and headers and "If-None-Match" in headers:
                raise _NotModified() from None
            if exc.response_code is not None:
                raise self._translate(verb, path, exc) from None
            raise GitLabError(self.clean(f"GitLab {verb.upper()} {path}: {exc}")) from None
        except requests.RequestException as exc:
            # No answer at all (refused, reset, timed out): the instance is down for now, like a 5xx.
            raise ForgeBusy(self.clean(f"GitLab did not answer {verb.upper()} {path}: {type(exc).__name__}"),
                            DEFAULT_BUSY_RETRY_S) from None

    def _translate(self, verb: str, path: str, exc: gitlab.exceptions.GitlabError) -> Exception:
        code = exc.response_code or 0
        last: requests.Response | None = getattr(self._local, "last", None)
        resp_headers = last.headers if last is not None else {}
        message = self.clean(f"GitLab answered {code} to {verb.upper()} {path}: {exc.error_message}")
        if code == 429:
            return ForgeBusy(message, retry_after(resp_headers, default=60.0))
        if code >= 500:
            return ForgeBusy(message, retry_after(resp_headers, default=DEFAULT_BUSY_RETRY_S))
        return GitLabError(message, code)


class _NotModified(Exception):
    metrics_outcome = "not_modified"


def _body(resp: requests.Response) -> Any:
    if not resp.content:
        return None
    if "json" in resp.headers.get("Content-Type", ""):
        return resp.json()
    return resp.text


def retry_after(headers: Mapping[str, str], *, default: float, now: float | None = None) -> float:
    """Seconds to wait, from ``Retry-After`` (seconds or an HTTP date) or ``RateLimit-Reset`` (epoch seconds)."""
    now = time.time() if now is None else now
    value = headers.get("Retry-After")
    if value:
        try:
            return max(1.0, float(value))
        except ValueError:
            try:
                return max(1.0, parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = headers.get("RateLimit-Reset")
    if reset:
        try:
            return max(1.0, float(reset) - now)
        except ValueError:
            pass
    return default
