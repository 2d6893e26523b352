"""`/docs` and `/redoc` load every script and style from the server itself, with cache headers."""

from __future__ import annotations

import re

from tests.support.optio_server import OptioServer


def test_docs_pages_reference_only_local_assets(optio_server: OptioServer) -> None:
    for page in ("/docs", "/redoc"):
        res = optio_server.api("GET", page, token="")
        assert res.status_code == 200, page
        refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", res.text)
        refs += re.findall(r"""(?:url|specUrl|spec-url)\s*[:=]\s*['"]([^'"]+)['"]""", res.text)
        assert refs, page
        assert not [r for r in refs if r.startswith(("http:", "https:", "//"))], (page, refs)
        for ref in refs:
            if ref.startswith("/static/"):
                asset = optio_server.api("GET", ref, token="")
                assert asset.status_code == 200, ref
                assert "max-age" in asset.headers["cache-control"] and asset.headers.get("etag"), ref
                assert len(asset.content) > (1000 if "vendor" in ref else 50), ref
    vendored = optio_server.api("GET", "/static/vendor/htmx/htmx.min.js", token="")
    assert vendored.status_code == 200 and "htmx" in vendored.text
    etag = vendored.headers["etag"]
    again = optio_server.api("GET", "/static/vendor/htmx/htmx.min.js", token="", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert optio_server.api("GET", "/static/../config.py", token="").status_code == 404
