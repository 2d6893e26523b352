"""One HTTP client for the requests tests make to the servers they start.

A one-shot `httpx.get`/`httpx.request` builds a client, and with it a TLS context loaded from the CA bundle, for
every call: tens of milliseconds of CPU, paid several times a second by each loop that polls a server for a
state. Sharing one client pays that once per process. It keeps no connection alive, so a server killed and
restarted on the same port is never asked on a dead connection, and it stores no cookie, so no request is
ever sent with a session another response set (every server of a test run is on 127.0.0.1).
"""

from __future__ import annotations

from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

CLIENT = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0),
                      cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """`httpx.request`, on the shared client (a request that brings its own cookies gets a client of its own)."""
    if "cookies" in kwargs:
        return httpx.request(method, url, **kwargs)
    kwargs.setdefault("timeout", 30.0)
    return CLIENT.request(method, url, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)
