"""`/docs` (Swagger UI) and `/redoc`, loading their scripts and styles from the package instead of a CDN.

FastAPI's defaults point at jsdelivr (and Google Fonts for ReDoc), so on a machine without internet the
pages are blank; these routes render the same pages with the vendored copies under `/static/vendor`.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse

SWAGGER = "/static/vendor/swagger-ui"
REDOC = "/static/vendor/redoc"


def router_for(app: FastAPI) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    oauth2_redirect = "/docs/oauth2-redirect"

    @router.get("/docs")
    def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} · API",
            swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js", swagger_css_url=f"{SWAGGER}/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg", oauth2_redirect_url=oauth2_redirect,
        )

    @router.get(oauth2_redirect)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get("/redoc")
    def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} · API reference",
            redoc_js_url=f"{REDOC}/redoc.standalone.js", redoc_favicon_url="/static/favicon.svg",
            with_google_fonts=False,
        )

    return router
