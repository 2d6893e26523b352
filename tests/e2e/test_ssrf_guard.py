"""User-supplied URLs Optio will call (forge remotes here, OIDC issuers in test_oidc_login) pass the SSRF guard."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow


def test_forge_urls_on_internal_addresses_are_refused_unless_allowlisted(tmp_path: Path) -> None:
    plain = OptioServer(tmp_path / "plain").start()
    allowed = OptioServer(tmp_path / "allowed", env={"OPTIO_OUTBOUND_ALLOWLIST": "127.0.0.1"}).start()
    try:
        for url in ("http://127.0.0.1:9/x.git", "http://169.254.169.254/latest", "http://[::1]:9/x.git",
                    "http://2130706433:9/x.git", "ssh://git@127.0.0.1/x.git", "git://169.254.169.254/x.git",
                    "ssh://git@10.0.0.5:22/r.git"):
            res = plain.api("POST", "/api/repos", json={"remote_url": url})
            assert res.status_code == 422 and res.json()["error"]["field"] == "remote_url", (url, res.text)
            assert "refusing to call" in res.json()["error"]["message"]
        # Allowlisted: the guard lets it through and the repo check itself answers (nothing listens there).
        res = allowed.api("POST", "/api/repos", json={"remote_url": "http://127.0.0.1:9/x.git"})
        assert res.status_code == 422 and "refusing" not in res.json()["error"]["message"]
        assert plain.api("POST", "/api/repos", json={"remote_url": "file:///a\u0000b"}).status_code == 422
    finally:
        plain.stop()
        allowed.stop()
