"""One error shape for every failure: `{"error": {"code", "message", "field"}}`."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from optio.control.ports import ForgeBusy
from optio.errors import AppError
from optio.store.db import DatabaseUnavailable
from optio.store.disk_full import STORAGE_ERRORS, is_disk_full

# What a client is told to wait before asking again while the database is busy or unreachable.
DATABASE_RETRY_AFTER_S = 5


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message, "field": field}})


def _field_of(loc: Any) -> str | None:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]  # where it came from, not a field (a field may itself be called `body`)
    return ".".join(parts) or None


def _field_of_error(error: dict[str, Any], body: Any) -> str | None:
    """The field an error is about, as the client spelled it.

    In a tagged union (`POST /api/tasks`) pydantic puts the chosen tag into the location (`repo_task.title`);
    it is dropped so the field reads as sent (`title`). A missing or unknown tag is about the tag's field.
    """
    loc = list(error.get("loc", ()))
    if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        discriminator = str((error.get("ctx") or {}).get("discriminator", "")).strip("'")
        return _field_of([*loc, discriminator]) if discriminator else _field_of(loc)
    if (len(loc) >= 3 and loc[0] == "body" and isinstance(body, dict) and isinstance(loc[1], str)
            and loc[1] not in body and loc[1] in [v for v in body.values() if isinstance(v, str)]):
        del loc[1]
    return _field_of(loc)


def install(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        """The generated document with the error schema that `ERROR_RESPONSES` refers to."""
        if app.openapi_schema is None:
            schema = generate()
            body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(body.pop("$defs", {}))
            components["ErrorBody"] = body
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(AppError)
    async def _app_error(_req: Request, exc: AppError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field)

    @app.exception_handler(ForgeBusy)
    async def _forge_busy(_req: Request, exc: ForgeBusy) -> JSONResponse:
        # A hosted forge's rate limit or outage: the client may ask again, never a 500.
        response = error_response(503, "forge_busy", f"the forge cannot answer now: {exc.reason}")
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        return response

    @app.exception_handler(DatabaseUnavailable)
    async def _database_unavailable(_req: Request, exc: DatabaseUnavailable) -> JSONResponse:
        # Another writer holds SQLite, or PostgreSQL is restarting: the request may be sent again, never a 500.
        response = error_response(503, "database_busy", f"the database cannot answer now, try again: {exc.reason}")
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return response

    async def _storage(_req: Request, exc: Exception) -> JSONResponse:
        # A full disk is the operator's to fix and passes: say so, and let the client ask again later.
        if not is_disk_full(exc):
            raise exc
        response = error_response(503, "disk_full", "the server's disk is full: nothing was saved; free disk space "
                                  "on the data directory and try again")
        response.headers["Retry-After"] = "30"
        return response

    for storage_error in STORAGE_ERRORS:
        app.add_exception_handler(storage_error, _storage)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        field = _field_of_error(dict(first), exc.body)
        message = str(first.get("msg", "invalid request"))
        if field:
            message = f"{field}: {message}"
        return error_response(422, "invalid", message, field)

    @app.exception_handler(OverflowError)
    async def _overflow(_req: Request, exc: OverflowError) -> JSONResponse:
        # An id too large for a database integer names no row; anything else is a real bug.
        if "INTEGER" not in str(exc) and "too large" not in str(exc):
            raise exc
        return error_response(404, "not_found", "not found")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden",
                413: "payload_too_large", 429: "rate_limited"}.get(
            exc.status_code, "error"
        )
        return error_response(exc.status_code, code, str(exc.detail))


def error_doc(description: str) -> dict[str, Any]:
    # A reference, not `{"model": ErrorBody}`: FastAPI builds a pydantic field for each model response of each
    # route (seven per route here, about 1,000 in all: a tenth of a server's start) only to name this
    # schema in the OpenAPI document; `install` adds the schema itself once.
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ERROR_REF}}}}


ERROR_REF = "#/components/schemas/ErrorBody"
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error_doc("Malformed request (e.g. a body that is not JSON)"),
    401: error_doc("No valid credentials"),
    403: error_doc("Your role in this workspace does not allow it"),
    404: error_doc("Not found"),
    409: error_doc("Conflict"),
    413: error_doc("Request body too large"),
    422: error_doc("Invalid input"),
}
