"""Errors raised by monitor_api code and rendered as JSON ``{"error": ..., "message": ...}``.

    ApiError
    ├── BadRequest       400/422: the request is well-formed JSON but not acceptable
    ├── Unauthorized     401: no or unknown token
    ├── Forbidden        403: the role may not do this
    ├── NotFound         404
    ├── Conflict         409: clashes with stored data (overlapping booking, wrong status)
    └── TooLarge         413: the request body is larger than the endpoint takes
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg.errors as pg_errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("monitor_api")


class ApiError(Exception):
    """Base of every error the API reports to its caller."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(ApiError):
    """The request cannot be processed as asked (422 when the content fails validation)."""

    status_code = 422
    code = "invalid"


class Unauthorized(ApiError):
    """No bearer token, or one that is unknown or revoked."""

    status_code = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """The token's role or scope does not allow this."""

    status_code = 403
    code = "forbidden"


class NotFound(ApiError):
    """The addressed object does not exist (or is outside the caller's view)."""

    status_code = 404
    code = "not_found"


class Conflict(ApiError):
    """The change clashes with stored data."""

    status_code = 409
    code = "conflict"


class TooLarge(ApiError):
    """The request body is larger than the endpoint takes."""

    status_code = 413
    code = "too_large"


def _body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    return body


def error_response(exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(
        _body(exc.code, exc.message, exc.details), exc.status_code, headers=headers
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or unknown token"},
    403: {"description": "Role not allowed"},
    422: {"description": "Invalid request"},
}


def install_error_handlers(app: FastAPI) -> None:
    """Render every error, including FastAPI's own, as the same JSON shape."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(
            _body(f"http_{exc.status_code}", str(exc.detail)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return JSONResponse(
            _body("invalid", f"{where}: {first['msg']}", details), status_code=422
        )

    async def database_error(_: Request, exc: Exception) -> JSONResponse:
        """Constraint and data errors are the caller's fault; anything else is ours."""
        diag = getattr(exc, "diag", None)
        text = (getattr(diag, "message_primary", None) or str(exc)).strip()
        if isinstance(exc, pg_errors.ExclusionViolation | pg_errors.UniqueViolation):
            return JSONResponse(_body("conflict", text), status_code=409)
        if isinstance(exc, pg_errors.IntegrityError | pg_errors.DataError):
            return JSONResponse(_body("invalid", text), status_code=422)
        if isinstance(exc, PoolTimeout):
            logger.warning("no database connection free: %s", text)
            return JSONResponse(
                _body("busy", "every database connection is in use; try again shortly"),
                status_code=503, headers={"Retry-After": "5"},
            )
        logger.exception("database error", exc_info=exc)
        return JSONResponse(_body("database", "database error"), status_code=503)

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return JSONResponse(_body("internal", "internal server error"), status_code=500)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(pg_errors.Error, database_error)
    app.add_exception_handler(Exception, unexpected)
