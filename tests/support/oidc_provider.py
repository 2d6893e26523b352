"""A minimal OpenID Connect provider on 127.0.0.1 speaking the real protocol, for sign-in tests.

Discovery, an authorization endpoint that signs the user in at once and redirects back with a code,
a token endpoint that checks the client's credentials and the PKCE verifier and returns an RS256 ID
token, and the JWKS. `mode` makes it misbehave the ways a forged or misdirected token would:
"bad_signature" signs with a key it does not publish, "wrong_audience" issues the token to another client.
`subject`, `email`, `email_verified` (None leaves the claim out) and `preferred_username` say who signs in;
`reset()` puts them back to Ada's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from tests.support.http_listener import never_blocks_in_accept


class OidcProvider:
    def __init__(self, client_id: str = "optio-test", client_secret: str = "s3cret-client") -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.rogue_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.reset()
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_requests = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self._json(200, provider.metadata())
                elif url.path == "/jwks":
                    self._json(200, KeySet([provider.key]).as_dict(private=False))
                elif url.path == "/authorize":
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = q
                    self.send_response(302)
                    self.send_header("Location", q["redirect_uri"] + "?" + urlencode({"code": code,
                                                                                      "state": q["state"]}))
                    self.end_headers()
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                if urlparse(self.path).path != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                provider.token_requests += 1
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"]))
                                                     .decode()).items()}
                expected = "Basic " + base64.b64encode(f"{provider.client_id}:{provider.client_secret}".encode()
                                                       ).decode()
                if self.headers.get("Authorization") != expected:
                    self._json(401, {"error": "invalid_client"})
                    return
                req = provider.codes.pop(form.get("code", ""), None)
                challenge = base64.urlsafe_b64encode(
                    hashlib.sha256(form.get("code_verifier", "").encode()).digest()).decode().rstrip("=")
                if req is None or req["code_challenge"] != challenge or req["redirect_uri"] != form["redirect_uri"]:
                    self._json(400, {"error": "invalid_grant"})
                    return
                self._json(200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                                 "id_token": provider.id_token(req["nonce"])})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        never_blocks_in_accept(self.server)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reset(self) -> None:
        self.mode = "good"
        self.subject = "user-123"
        self.email = "ada@example.com"
        self.email_verified: bool | str | None = True
        self.preferred_username = "ada"

    def metadata(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "authorization_endpoint": self.issuer + "/authorize",
                "token_endpoint": self.issuer + "/token", "jwks_uri": self.issuer + "/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"]}

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": self.subject, "aud": self.client_id, "iat": now, "exp": now + 300,
                  "nonce": nonce, "email": self.email, "preferred_username": self.preferred_username, "name": "Ada"}
        if self.email_verified is not None:
            claims["email_verified"] = self.email_verified
        if self.mode == "wrong_audience":
            claims["aud"] = "some-other-client"
        key = self.rogue_key if self.mode == "bad_signature" else self.key
        return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)

    def __enter__(self) -> OidcProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def sign_in(server: Any) -> tuple[httpx.Client, httpx.Response]:
    """Browser-like: Optio → provider → Optio callback, carrying cookies; returns the callback's answer."""
    browser = httpx.Client(timeout=30)
    start = browser.get(server.url + "/auth/oidc/login")
    assert start.status_code == 302, start.text
    at_provider = browser.get(start.headers["location"])
    assert at_provider.status_code == 302
    return browser, browser.get(at_provider.headers["location"])
