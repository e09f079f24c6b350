"""Errors raised by monitor_api code and rendered as JSON ``{"error": ..., "message": ...}``.

    ApiError
    ├── BadRequest       422: the request is well-formed but not acceptable
    ├── Unauthorized     401: no or unknown token
    ├── Forbidden        403: the role may not do this
    ├── NotFound         404
    ├── RequestTimeout   408: the request body stopped arriving
    ├── Conflict         409: clashes with stored data (overlapping booking, wrong status)
    ├── TooLarge         413: the request body is larger than the endpoint takes
    └── UnsupportedMedia 415: the request body is of a type the endpoint does not take
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import psycopg.errors as pg_errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from monitor_api.settings import TIMEZONE

logger = logging.getLogger("monitor_api")


class Refusal(StrEnum):
    """What stands in the way of a booking, or of a request for a period: stable codes a
    client words in its own language (the dashboard has a sentence for each)."""

    SLOT_TAKEN = "slot_taken"
    ALREADY_REQUESTED = "already_requested"
    ALREADY_BOOKED = "already_booked"
    NOT_LISTED = "not_listed"
    REGISTRATION_PENDING = "registration_pending"
    CLOSED_TO_OUTSIDE = "closed_to_outside"
    INCUBATION_POOL = "incubation_pool"
    NEEDS_CERTIFICATION = "needs_certification"
    SUSPENDED = "suspended"
    WINDOW_BEGUN = "window_begun"
    PERIOD_TOO_LONG = "period_too_long"
    """The period asked for is longer than the endpoint serves; ``details.max_days`` says how
    long it may be."""


class ApiError(Exception):
    """Base of every error the API reports to its caller."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None,
                 reason: Refusal | None = None) -> None:
        """``reason``: a stable code for what stands in the way (``slot_taken``), so that a
        client can say it in its own language; ``message`` says it in English, in detail."""
        super().__init__(message)
        self.message = message
        self.details = details
        self.reason = reason


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


class RequestTimeout(ApiError):
    """The request body stopped arriving before it was complete."""

    status_code = 408
    code = "request_timeout"


class Conflict(ApiError):
    """The change clashes with stored data."""

    status_code = 409
    code = "conflict"


class TooLarge(ApiError):
    """The request body is larger than the endpoint takes."""

    status_code = 413
    code = "too_large"


class UnsupportedMedia(ApiError):
    """The request body is of a type the endpoint does not take."""

    status_code = 415
    code = "unsupported_media_type"


MESSAGE_ZONE = ZoneInfo(TIMEZONE)
"""Messages word instants in the zone whose days the platform counts, as users read them."""


def local_time(moment: datetime) -> str:
    """An instant as a message words it: ``2026-12-08 09:00 (UTC+8)``, seconds only when it
    has some (the zone's offsets are whole hours)."""
    local = moment.astimezone(MESSAGE_ZONE)
    offset = local.utcoffset()
    hours = int(offset.total_seconds() // 3600) if offset is not None else 0
    shown = f"{local:%Y-%m-%d %H:%M:%S}" if local.second else f"{local:%Y-%m-%d %H:%M}"
    return f"{shown} (UTC{hours:+d})"


def _body(code: str, message: str, details: Any = None,
          reason: Refusal | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if reason is not None:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    return body


def error_response(exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(
        _body(exc.code, exc.message, exc.details, exc.reason), exc.status_code, headers=headers
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or unknown token"},
    403: {"description": "Role not allowed"},
    422: {"description": "Invalid request"},
    "4XX": {"description": "Refused: not found (404), body stalled (408), conflict (409), too"
            " large (413), a body of another type than JSON or, for uploads, CSV (415); the JSON"
            " body's `error` and `message` say why"},
}


_TABLE_WORDS = {"platform_user": "user", "api_token": "token"}
_KEY = re.compile(r"Key \((?P<columns>.+?)\)=\((?P<values>.*)\) "
                  r"(?:(?P<exists>already exists)|is not present in table \"(?P<table>[^\"]+)\""
                  r"|is still referenced from table \"(?P<referrer>[^\"]+)\")")


def constraint_message(exc: Exception) -> str:
    """What a refused write means in the API's words, not the schema's: "no institution
    'x'", "instrument 'y' already exists", "name may not be null"; else PostgreSQL's own."""
    if not isinstance(exc, pg_errors.Error):
        return str(exc).strip()
    diag = exc.diag
    text = (diag.message_primary or str(exc)).strip()
    if isinstance(exc, pg_errors.NotNullViolation) and diag.column_name:
        return f"{diag.column_name} may not be null"
    key = _KEY.search(diag.message_detail or "")
    if key is None:
        return text
    columns, values = key["columns"], key["values"]
    shown = f"({columns}) = ({values})" if "," in columns else repr(values)
    if key["exists"]:
        return f"{_word(diag.table_name)} {shown} already exists"
    if key["table"]:
        return f"{columns}: no {_word(key['table'])} {shown}"
    return f"{_word(diag.table_name)} {shown} is still referred to by a {_word(key['referrer'])}"


def _word(table: str | None) -> str:
    return _TABLE_WORDS.get(table or "", table or "row")


_PLUS_AS_SPACE = re.compile(r"\d \d{2}(:?\d{2})?$")
"""A time, a space, then an offset's digits: a '+' sent unencoded in a query string, which
arrives as a space."""
_TIME_UNREAD = frozenset({"datetime_parsing", "datetime_from_date_parsing"})
"""pydantic's errors for a text it could not read as a date and time."""
_UNREADABLE = ((UnicodeDecodeError, "not valid JSON: not UTF-8 text"),
               (RecursionError, "nested too deeply to read"))
"""Why FastAPI could not parse a JSON body, which it answers with a bare 400 ("There was an
error parsing the body"), by what it raised."""


def _problem(error: Mapping[str, Any], body: Any) -> dict[str, Any]:
    """One of FastAPI's validation errors as ``loc`` and ``msg``, said more plainly where its
    words mislead: a JSON syntax error says where it is; a query time whose offset's '+'
    arrived as a space says to send it as %2B."""
    loc, msg = list(error.get("loc", ())), str(error.get("msg", ""))
    if error.get("type") == "json_invalid":
        at = json.JSONDecodeError(error["ctx"]["error"], body, loc[-1])
        return {"loc": ["body"], "msg": f"not valid JSON: {at.msg} at line {at.lineno},"
                                        f" column {at.colno}"}
    value = error.get("input")
    if error.get("type") in _TIME_UNREAD:  # pydantic's words: "a valid datetime or date, ..."
        msg = (f"not a valid time ({msg.partition(', ')[2] or msg}): write it in ISO 8601 with"
               " an offset, as 2026-03-10T09:00:00+08:00 (hours 00-23, minutes and seconds"
               " 00-59, offset ±HH:MM)")
        if loc[:1] == ["query"] and isinstance(value, str) and _PLUS_AS_SPACE.search(value):
            msg += ("; a '+' in a URL's query string stands for a space: send the offset's '+'"
                    " as %2B")
    return {"loc": loc, "msg": msg}


def problem_text(loc: Sequence[Any], msg: str) -> str:
    """One validation problem in words: where (dotted path, when there is one), then what,
    without pydantic's "Value error, " in front of a validator's own sentence."""
    where = ".".join(str(p) for p in loc)
    what = msg.removeprefix("Value error, ")
    return f"{where}: {what}" if where else what


def _is_json(content_type: str) -> bool:
    """Whether FastAPI reads a body of this type as JSON: application/json or a +json type."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                            and media.endswith("+json"))


def refuse_nul_in_url(request: Request) -> None:
    """No id, date or filter holds a NUL: one in the URL (``%00``) is refused in words here,
    before the database refuses it in its own."""
    if "\x00" in request.url.path or b"%00" in request.scope["query_string"]:
        raise BadRequest("the URL holds a NUL character (%00), which no id, date or filter"
                         " may contain")


def install_error_handlers(app: FastAPI) -> None:
    """Render every error, including FastAPI's own, as the same JSON shape."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    def invalid(details: list[dict[str, Any]]) -> JSONResponse:
        first = details[0]
        return JSONResponse(
            _body("invalid", problem_text(first["loc"], first["msg"]), details), status_code=422
        )

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            for cause, words in _UNREADABLE:
                if isinstance(exc.__cause__, cause):
                    return invalid([{"loc": ["body"], "msg": words}])
        return JSONResponse(
            _body(f"http_{exc.status_code}", str(exc.detail)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [_problem(e, exc.body) for e in exc.errors()] or [
            {"loc": [], "msg": "invalid request"}]
        sent = request.headers.get("content-type", "")
        if (details[0]["loc"] == ["body"] and exc.errors()[0].get("type") != "missing"
                and not _is_json(sent)):  # a body FastAPI did not read as JSON for its type
            said = f"is {sent}" if sent else "is missing"
            return JSONResponse(_body("unsupported_media_type", "the body must be JSON, sent"
                                      f" with Content-Type: application/json; this request's"
                                      f" Content-Type {said}"), status_code=415)
        return invalid(details)

    async def database_error(_: Request, exc: Exception) -> JSONResponse:
        """Constraint and data errors are the caller's fault; anything else is ours."""
        text = constraint_message(exc)
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
