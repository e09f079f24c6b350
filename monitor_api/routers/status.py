"""Live status: board, instrument detail (timeline, power), server-sent events of changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field

from monitor_api.auth import Caller, Principal, Reader, Role
from monitor_api.db import Conn, DbConn, Pool, Settings
from monitor_api.errors import BadRequest, Forbidden, Refusal
from monitor_api.json_encoding import json_bytes, json_time
from monitor_api.queries import status as q
from monitor_api.queries.common import check_filters, named_tree
from monitor_api.routers.registry import visible_instrument
from monitor_api.schemas import (
    Category,
    Instrument,
    Limit,
    Moment,
    Offset,
    Page,
    UnitName,
)
from monitor_api.settings import ApiSettings
from monitor_api.status_feed import Changes, StatusFeed, db_now

router = APIRouter(tags=["status"])

BoardState = Annotated[
    str | None, Query(pattern="^(offline|off|idle|running|fault|maintenance)$")
]
MAX_SPAN = timedelta(days=400)


async def _scope(
    conn: Conn, caller: Principal, institution_id: str | None
) -> frozenset[str] | None:
    """The institutions a board or stream covers: ``institution_id`` and its sub-units, looked
    up once here (``named_tree``), or None for all. Lab managers see only their institution
    tree (the token's, already known): it is their default, others are refused. An id naming
    no institution is refused too, not answered with an empty board."""
    if institution_id is None:
        return caller.institutions if caller.role is Role.LAB_MANAGER else None
    if caller.role is Role.LAB_MANAGER and institution_id not in caller.institutions:
        raise Forbidden(f"institution {institution_id!r} is outside your scope")
    return await named_tree(conn, institution_id)


class StatusItem(BaseModel):
    instrument_id: str
    name: str
    institution_id: str
    institution_name: UnitName
    category_code: str | None
    online: bool
    state: str
    since: datetime | None
    user_id: str | None = Field(
        description="Who is at it, when known; a registered user sees only themselves.")
    user_name: str | None
    user_booked: bool = Field(
        description="The user is not the gateway's (which names nobody, like a power meter)"
                    " but that of the booking the running started in.")
    power_w: float | None
    last_ts: datetime | None
    gateway_id: str | None
    listed: bool = Field(description="In the catalogue: registered users see it.")


class Interval(BaseModel):
    state: str
    start: datetime
    end: datetime


class PowerPoint(BaseModel):
    ts: datetime
    avg_w: float | None
    min_w: float | None
    max_w: float | None
    samples: int


DROPPED = ("Messages its outbox dropped at its bounds (full, or too old) since it was created,"
           " as its latest birth said: data lost before reaching the platform; null: unknown.")


class GatewayStatus(BaseModel):
    id: str
    online: bool = Field(description="Its last birth has not been followed by its will.")
    since: datetime = Field(description="When it came online or went offline.")
    software: str | None
    dropped: int | None = Field(description=DROPPED)
    announces_instrument: bool = Field(
        description="Its birth lists this instrument; false: the gateway is not set up to "
                    "report it, whatever the registry says.")


class GatewayItem(BaseModel):
    id: str
    online: bool = Field(description="Its last birth has not been followed by its will.")
    since: datetime = Field(description="When it came online or went offline.")
    software: str | None
    dropped: int | None = Field(description=DROPPED)
    announced: list[str] = Field(
        description="Instruments its last birth lists (a lab manager sees their own only).")
    bound: list[str] = Field(description="Instruments the registry binds to it.")
    reporting: list[str] = Field(
        description="Instruments whose latest sample came through it.")
    last_data: datetime | None = Field(
        description="The latest sample of those instruments; null when none reported.")


class InstrumentDetail(BaseModel):
    instrument: Instrument
    status: StatusItem
    gateway: GatewayStatus | None = Field(
        description="The gateway the registry binds the instrument to, else the one it last "
                    "reported through; null when there is none or it never announced itself.")


@router.get("/status", response_model=Page[StatusItem])
async def status_board(
    conn: DbConn,
    caller: Caller,
    settings: Settings,
    institution_id: str | None = None,
    category: Category = None,
    state: BoardState = None,
    limit: Annotated[int, Query(ge=1, le=20000)] = 1000,
    offset: Offset = 0,
) -> Response:
    """Every instrument's live state; ``institution_id`` includes its sub-units.

    A lab manager sees their own institution's instruments only, a registered user the
    listed ones, named and filed (category) as an admin reviewed them."""
    await check_filters(conn, category=category)
    board = await q.status_board(
        conn, timeout=settings.heartbeat_timeout, grace=settings.no_show_grace,
        institutions=await _scope(conn, caller, institution_id),
        category=category, state=state, as_listed=caller.role is Role.USER, limit=limit,
        offset=offset,
    )
    if caller.role is Role.USER:
        board["items"] = [q.as_seen_by(item, caller.user_id) for item in board["items"]]
    # orjson, not the response model: validating 10,000 items would take longer than the query
    return Response(content=json_bytes(board), media_type="application/json")


@router.get("/gateways", response_model=Page[GatewayItem])
async def gateway_list(
    conn: DbConn, caller: Reader, online: bool | None = None, limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Every gateway as last heard of, and the instruments it serves.

    A lab manager sees the gateways bound to or reporting their institution's instruments."""
    institutions = list(caller.institutions) if caller.role is Role.LAB_MANAGER else None
    return await q.gateways(conn, institutions=institutions, online=online, limit=limit,
                            offset=offset)


def check_span(start: datetime, end: datetime) -> None:
    if end <= start:
        raise BadRequest("end must be after start")
    if end - start > MAX_SPAN:
        raise BadRequest(f"at most {MAX_SPAN.days} days per request",
                         details={"max_days": MAX_SPAN.days}, reason=Refusal.PERIOD_TOO_LONG)


@router.get("/instruments/{instrument_id}/detail", response_model=InstrumentDetail)
async def instrument_detail(
    conn: DbConn, caller: Caller, settings: Settings, instrument_id: str
) -> dict[str, Any]:
    instrument = await visible_instrument(conn, caller, instrument_id)
    board = await q.status_board(
        conn, timeout=settings.heartbeat_timeout, grace=settings.no_show_grace,
        institutions=None, category=None, state=None, instrument_ids=[instrument_id],
        as_listed=caller.role is Role.USER, limit=1, offset=0,
    )
    status = board["items"][0]
    return {"instrument": instrument,
            "status": q.as_seen_by(status, caller.user_id) if caller.role is Role.USER
            else status,
            "gateway": None if caller.role is Role.USER
            else await q.instrument_gateway(conn, instrument_id)}


@router.get("/instruments/{instrument_id}/timeline", response_model=Page[Interval])
async def instrument_timeline(
    conn: DbConn,
    caller: Caller,
    settings: Settings,
    instrument_id: str,
    start: Moment,
    end: Moment,
    limit: Limit = 500,
    offset: Offset = 0,
) -> dict[str, Any]:
    """State intervals; a gap in the data longer than the heartbeat timeout is ``offline``."""
    check_span(start, end)
    await visible_instrument(conn, caller, instrument_id)
    return await q.timeline(
        conn, instrument_id=instrument_id, lo=start, hi=end,
        timeout=settings.heartbeat_timeout, limit=limit, offset=offset,
    )


@router.get("/instruments/{instrument_id}/power", response_model=Page[PowerPoint])
async def instrument_power(
    conn: DbConn,
    caller: Caller,
    instrument_id: str,
    start: Moment,
    end: Moment,
    step_s: Annotated[int, Query(ge=1, le=31 * 86400, description="Bucket width, seconds")] = 60,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Power downsampled to ``step_s`` buckets (average, minimum, maximum)."""
    check_span(start, end)
    await visible_instrument(conn, caller, instrument_id)
    return await q.power_series(
        conn, instrument_id=instrument_id, lo=start, hi=end, step=timedelta(seconds=step_s),
        limit=limit, offset=offset,
    )


@router.get(
    "/status/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "`event: status` with one board item as JSON per change"}},
)
async def status_stream(
    request: Request,
    conn: DbConn,
    caller: Caller,
    settings: Settings,
    institution_id: str | None = None,
    category: Category = None,
    instrument_id: Annotated[str | None, Query(
        description="Only this instrument's changes, as its page follows them; refused as"
        " its detail is: 404 for an unknown id (for a registered user, one not listed too),"
        " 403 for a lab manager's instrument of another institution.")] = None,
) -> StreamingResponse:
    """Server-sent events: one ``status`` event each time an instrument's state, user or
    online flag changes. Power readings alone do not produce events. The stream ends once
    its token is revoked (checked every keep-alive interval)."""
    if instrument_id is not None:
        await visible_instrument(conn, caller, instrument_id)
    await check_filters(conn, category=category)
    return StreamingResponse(
        _events(request.app.state.status_feed, request.app.state.pool, settings,
                await _scope(conn, caller, institution_id), category, instrument_id,
                listed_for=caller.user_id if caller.role is Role.USER else None,
                token_id=caller.token_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _token_live(pool: Pool, token_id: int) -> bool:
    """Whether the token still stands; a database that does not answer now leaves the stream
    open (the feed's own poll copes with an outage; the next check decides)."""
    try:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM api_token WHERE id = %s AND revoked_at IS NULL", (token_id,))
            return await cur.fetchone() is not None
    except (PoolTimeout, psycopg.Error):
        return True


def _key(item: dict[str, Any]) -> tuple[Any, ...]:
    """What makes an entry a change to send: its state, connection, user and since. Names
    (the instrument's, its unit's) are not: an entry carries them as they are when it is sent,
    so a unit renamed meanwhile is named anew with the instrument's next change."""
    return (item["state"], item["online"], item["user_id"], item["since"])


async def _events(
    feed: StatusFeed, pool: Pool, settings: ApiSettings, institutions: frozenset[str] | None,
    category: str | None, instrument: str | None, *, listed_for: str | None, token_id: int,
) -> AsyncIterator[str]:
    """``institutions``: the stream's scope (``_scope``), None for all; ``instrument``: that
    one only; ``listed_for``: the registered user watching, who sees the catalogue's
    board."""
    as_listed = listed_for is not None
    async with feed.subscribe() as subscription:
        async with pool.connection() as conn:
            start = await db_now(conn)
            board = await q.status_board(
                conn, timeout=settings.heartbeat_timeout, grace=settings.no_show_grace,
                institutions=institutions, category=category, state=None,
                instrument_ids=None if instrument is None else [instrument],
                as_listed=as_listed, limit=1_000_000, offset=0,
            )
        seen = {item["instrument_id"]: _key(q.as_seen_by(item, listed_for) if as_listed else item)
                for item in board["items"]}
        # the feed's items carry the registry's live name and category
        listed = {item["instrument_id"]: item for item in board["items"]} if as_listed else {}
        yield f"retry: 3000\n: watching {len(seen)} instruments\n\n"
        last_beat = checked = time.monotonic()
        while True:
            if time.monotonic() - checked >= settings.sse_keepalive_s:
                if not await _token_live(pool, token_id):
                    return  # the browser's reconnection then gets the 401
                checked = time.monotonic()
            wait = max(settings.sse_keepalive_s - (time.monotonic() - last_beat), 0.0)
            try:
                changes = await asyncio.wait_for(subscription.queue.get(), wait)
            except TimeoutError:
                changes = Changes(start, [])
            if changes is None:
                return  # fell too far behind; the browser reconnects and reads the board anew
            if changes.at < start:
                continue  # polled before the board above was read, so possibly older
            for item in changes.items:
                if as_listed:
                    if (entry := listed.get(item["instrument_id"])) is None:
                        continue  # listed since the board above was read: on reconnect
                    item = q.as_seen_by({**item, "name": entry["name"],
                                         "category_code": entry["category_code"]}, listed_for)
                key = _key(item)
                if (seen.get(item["instrument_id"]) != key
                        and q.in_scope(item, institutions=institutions, category=category,
                                       instrument=instrument, as_listed=as_listed)):
                    seen[item["instrument_id"]] = key
                    payload = json_bytes(item).decode()
                    yield f"id: {json_time(changes.at)}\nevent: status\ndata: {payload}\n\n"
                    last_beat = time.monotonic()
            if time.monotonic() - last_beat >= settings.sse_keepalive_s:
                last_beat = time.monotonic()
                yield ": keepalive\n\n"
