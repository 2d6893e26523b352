"""Static files served from the package: the dashboard's CSS/JS and vendored third-party assets.

Everything a page loads comes from here, never from a CDN, so a machine without internet gets working pages.
Vendored files are pinned npm releases (see `static/vendor/VENDOR.md`); they are cached by browsers for a day
and revalidated by ETag, so a new Optio version is picked up without a cache-busting URL scheme.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"
CACHE_CONTROL = "public, max-age=86400"


class CachedStaticFiles(StaticFiles):
    """StaticFiles with a Cache-Control header on every answer (ETag and Last-Modified come from Starlette)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = CACHE_CONTROL
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def static_files() -> CachedStaticFiles:
    return CachedStaticFiles(directory=STATIC_DIR)
