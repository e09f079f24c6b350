"""Bookings (request, approve, reject, cancel, complete) and their service records.

Two approved bookings of one instrument never overlap: the database's exclusion constraint
decides, so of two clients racing for a slot exactly one wins and the other gets 409. Users
book only windows still ahead, may not cancel an approved booking once it has begun (the
no-show would vanish from the evaluation), and repeated no-shows suspend their requests. A
booking nobody turns up to is voided, which frees the rest of its window (void_bookings).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg.errors as pg_errors
from fastapi import APIRouter, Query

from monitor_api.auth import Booker, Caller, Manager, Principal, Role
from monitor_api.booking_rules import check_eligible, check_no_overlap, check_not_suspended
from monitor_api.db import Conn, DbConn, Settings, fetch_one
from monitor_api.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Refusal,
    local_time,
)
from monitor_api.queries.common import Where, page
from monitor_api.schemas import Limit, Moment, Offset, Page
from monitor_api.schemas_bookings import (
    Booking,
    BookingIn,
    BookingStatus,
    Decision,
    RatingIn,
    ServiceRecord,
    ServiceRecordIn,
)
from monitor_api.void_bookings import void_lapsed

router = APIRouter(tags=["bookings"])

_COLS = (
    "b.id, b.instrument_id, b.user_id, b.kind, b.start_ts AS start, b.end_ts AS \"end\","
    " b.status, b.purpose, b.note, b.created_at, b.decided_at, b.decided_by,"
    " (SELECT bi.name FROM instrument bi WHERE bi.id = b.instrument_id) AS instrument_name,"
    " (SELECT bi.listing->>'name' FROM instrument bi WHERE bi.id = b.instrument_id)"
    " AS listed_name,"
    " (SELECT bu.name FROM platform_user bu WHERE bu.id = b.user_id) AS user_name,"
    " (SELECT bi.institution_id FROM instrument bi WHERE bi.id = b.instrument_id)"
    " AS institution_id,"
    " (SELECT bn.name FROM institution bn WHERE bn.id ="
    " (SELECT bi.institution_id FROM instrument bi WHERE bi.id = b.instrument_id))"
    " AS institution_name"
)
"""A booking's columns with its instrument's, user's and unit's names: subqueries, which a
``RETURNING`` list can hold (not joins), each one primary-key lookup per row."""
_RETURNING = _COLS.replace("b.", "")


async def _booking(conn: Conn, booking_id: int) -> dict[str, Any]:
    row = await fetch_one(
        conn,
        f"SELECT {_COLS} FROM booking b WHERE b.id = %s",
        (booking_id,),
    )
    if row is None:
        raise NotFound(f"no booking {booking_id}")
    return row


def _named_for(caller: Principal, booking: dict[str, Any]) -> dict[str, Any]:
    """A registered user sees the instrument by its listed name, as in the catalogue; staff
    by the registry's (api.md, "Catalogue review")."""
    if caller.role is Role.USER and booking["listed_name"] is not None:
        return {**booking, "instrument_name": booking["listed_name"]}
    return booking


def _visible(caller: Principal, booking: dict[str, Any]) -> bool:
    if caller.role is Role.USER:
        return bool(booking["user_id"] == caller.user_id)
    return caller.reads_all or booking["institution_id"] in caller.institutions


WRITE_ATTEMPTS = 3
"""Tries of a booking's write that PostgreSQL aborted as a deadlock (``_written``)."""


async def _written(conn: Conn, statement: tuple[str, tuple[Any, ...]]) -> dict[str, Any] | None:
    """The row a booking's write returns, in a transaction of its own, tried again when
    PostgreSQL aborts it as a deadlock: rows of overlapping windows written at once can each
    wait for the other's exclusion check, and written again, the aborted one meets the winner
    (409) instead of answering 503."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                return await fetch_one(conn, *statement)
        except pg_errors.DeadlockDetected:
            if attempt == WRITE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


@router.post("/bookings", response_model=Booking, status_code=201)
async def request_booking(
    conn: DbConn, caller: Booker, settings: Settings, body: BookingIn
) -> dict[str, Any]:
    """Request a slot (approved at once on instruments with ``auto_approve``)."""
    assert caller.user_id is not None
    if body.start <= datetime.now(UTC):
        raise BadRequest("the window has already begun: book a slot that starts in the future",
                         reason=Refusal.WINDOW_BEGUN)
    await check_not_suspended(conn, settings, caller.user_id)
    await check_eligible(
        conn, user_id=caller.user_id, instrument_id=body.instrument_id, kind=body.kind,
        start=body.start, end=body.end,
    )
    await void_lapsed(conn, settings, instrument_id=body.instrument_id)
    await check_no_overlap(conn, body.instrument_id, body.start, body.end, caller.user_id)
    auto = await fetch_one(
        conn, "SELECT auto_approve FROM instrument WHERE id = %s", (body.instrument_id,)
    )
    status = BookingStatus.APPROVED if auto and auto["auto_approve"] else BookingStatus.REQUESTED
    try:
        row = await _written(conn, (
            "INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status,"
            " purpose, decided_at) VALUES (%s, %s, %s, %s, %s, %s, %s,"
            " CASE WHEN %s THEN now() END) RETURNING " + _RETURNING,
            (body.instrument_id, caller.user_id, body.kind, body.start, body.end, status,
             body.purpose, status is BookingStatus.APPROVED)))
    except pg_errors.ExclusionViolation as exc:
        if exc.diag.constraint_name != "booking_request_once":
            raise Conflict("the instrument was just booked in that window by someone else",
                           reason=Refusal.SLOT_TAKEN) from exc
        await check_no_overlap(conn, body.instrument_id, body.start, body.end, caller.user_id)
        raise  # the winner was cancelled meanwhile: answered as the constraint's conflict
    assert row is not None
    return _named_for(caller, row)


@router.get("/bookings", response_model=Page[Booking])
async def list_bookings(
    conn: DbConn,
    caller: Caller,
    instrument_id: str | None = None,
    status: BookingStatus | None = None,
    ends_after: Annotated[Moment | None, Query(
        description="Only bookings whose window ends after this moment.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Users see their own bookings, lab managers their institution's, others all."""
    where = Where()
    where.visible_to(caller, user_column="b.user_id")
    if instrument_id is not None:
        where.add("b.instrument_id = %(inst)s", inst=instrument_id)
    if status is not None:
        where.add("b.status = %(status)s", status=status.value)
    if ends_after is not None:
        where.add("b.end_ts > %(after)s", after=ends_after)
    found = await page(
        conn,
        select=f"SELECT {_COLS} FROM booking b JOIN instrument i ON i.id = b.instrument_id"
        " WHERE {where}",
        where=where, order="b.start_ts, b.id", limit=limit, offset=offset,
    )
    return {**found, "items": [_named_for(caller, row) for row in found["items"]]}


@router.get("/bookings/{booking_id}", response_model=Booking)
async def get_booking(conn: DbConn, caller: Caller, booking_id: int) -> dict[str, Any]:
    booking = await _booking(conn, booking_id)
    if not _visible(caller, booking):
        raise NotFound(f"no booking {booking_id}")
    return _named_for(caller, booking)


async def _transition(
    conn: Conn, booking_id: int, caller: Principal, *, to: BookingStatus,
    allowed_from: tuple[BookingStatus, ...], decision: Decision | None = None,
) -> dict[str, Any]:
    """Change status only from an allowed one, atomically (a concurrent change loses)."""
    note = decision.note if decision else ""
    try:
        row = await _written(conn, (
            "UPDATE booking SET status = %s, decided_at = now(), decided_by = %s,"
            " note = CASE WHEN %s = '' THEN note ELSE %s END"
            " WHERE id = %s AND status = ANY(%s) RETURNING " + _RETURNING,
            (to, caller.signature, note, note, booking_id, [s.value for s in allowed_from])))
    except pg_errors.ExclusionViolation as exc:
        other = await fetch_one(
            conn,
            "SELECT o.id FROM booking b JOIN booking o ON o.instrument_id = b.instrument_id"
            " AND o.id <> b.id AND o.status IN ('approved', 'completed')"
            " AND tstzrange(o.start_ts, o.end_ts) && tstzrange(b.start_ts, b.end_ts)"
            " WHERE b.id = %s ORDER BY o.start_ts LIMIT 1", (booking_id,))
        if other is None:  # the one in the way was cancelled meanwhile
            raise Conflict(f"booking {booking_id} overlapped an approved booking of the same"
                           " instrument; try again") from exc
        raise Conflict(
            f"booking {booking_id} overlaps an approved booking of the same instrument"
            f" (booking {other['id']})", details={"booking_id": other["id"]},
        ) from exc
    if row is None:
        status = (await _booking(conn, booking_id))["status"]
        article = "an" if status[0] in "aeiou" else "a"
        raise Conflict(f"booking {booking_id} is already {to}" if status == to else
                       f"booking {booking_id} is {status}: {article} {status} booking cannot"
                       f" be {to}")
    return _named_for(caller, row)


async def _managed(conn: Conn, caller: Principal, booking_id: int) -> dict[str, Any]:
    """The booking, for its managers (the role was checked); 404 for another institution's
    managers, as when they read it."""
    booking = await _booking(conn, booking_id)
    if not _visible(caller, booking):
        raise NotFound(f"no booking {booking_id}")
    return booking


@router.post("/bookings/{booking_id}/approve", response_model=Booking)
async def approve_booking(
    conn: DbConn, caller: Manager, settings: Settings, booking_id: int,
    body: Decision | None = None,
) -> dict[str, Any]:
    booking = await _managed(conn, caller, booking_id)
    if booking["status"] == BookingStatus.REQUESTED:
        await check_eligible(
            conn, user_id=booking["user_id"], instrument_id=booking["instrument_id"],
            kind=booking["kind"], start=booking["start"], end=booking["end"], approving=True,
        )
        await void_lapsed(conn, settings, instrument_id=booking["instrument_id"])
    return await _transition(conn, booking_id, caller, to=BookingStatus.APPROVED,
                             allowed_from=(BookingStatus.REQUESTED,), decision=body)


@router.post("/bookings/{booking_id}/reject", response_model=Booking)
async def reject_booking(
    conn: DbConn, caller: Manager, booking_id: int, body: Decision | None = None
) -> dict[str, Any]:
    await _managed(conn, caller, booking_id)
    return await _transition(conn, booking_id, caller, to=BookingStatus.REJECTED,
                             allowed_from=(BookingStatus.REQUESTED,), decision=body)


@router.post("/bookings/{booking_id}/complete", response_model=Booking)
async def complete_booking(conn: DbConn, caller: Manager, booking_id: int) -> dict[str, Any]:
    """Once the booked window has begun: the service is then rated, which it cannot be yet."""
    booking = await _managed(conn, caller, booking_id)
    if booking["start"] > datetime.now(UTC):
        raise Conflict(f"booking {booking_id} begins at {local_time(booking['start'])}: it can"
                       " be completed once it has begun")
    return await _transition(conn, booking_id, caller, to=BookingStatus.COMPLETED,
                             allowed_from=(BookingStatus.APPROVED,))


@router.post("/bookings/{booking_id}/cancel", response_model=Booking)
async def cancel_booking(
    conn: DbConn, caller: Caller, booking_id: int, body: Decision | None = None
) -> dict[str, Any]:
    """The booking's user, before an approved booking begins, or a manager of the instrument,
    before completion (excusing a no-show, void bookings too), may cancel, saying why in an
    optional note as a rejection does."""
    booking = await _booking(conn, booking_id)
    if caller.role is Role.USER:
        if booking["user_id"] != caller.user_id:
            raise NotFound(f"no booking {booking_id}")
        if booking["status"] == BookingStatus.APPROVED and booking["start"] <= datetime.now(UTC):
            raise Conflict(f"booking {booking_id} has begun; only the instrument's managers"
                           " may cancel it now")
        cancellable: tuple[BookingStatus, ...] = (BookingStatus.REQUESTED, BookingStatus.APPROVED)
    elif caller.may_manage(booking["institution_id"]):
        cancellable = (BookingStatus.REQUESTED, BookingStatus.APPROVED, BookingStatus.VOID)
    elif not _visible(caller, booking):
        raise NotFound(f"no booking {booking_id}")
    else:
        raise Forbidden("only the booking's user or the instrument's managers may cancel it")
    return await _transition(conn, booking_id, caller, to=BookingStatus.CANCELLED,
                             allowed_from=cancellable, decision=body)


@router.put("/bookings/{booking_id}/service-record", response_model=ServiceRecord)
async def file_service_record(
    conn: DbConn, caller: Manager, booking_id: int, body: ServiceRecordIn
) -> dict[str, Any]:
    """File the contract number, fee and innovation-voucher amount of a booking."""
    booking = await _managed(conn, caller, booking_id)
    if booking["status"] not in (BookingStatus.APPROVED, BookingStatus.COMPLETED):
        raise Conflict(f"booking {booking_id} is {booking['status']}; nothing to record")
    if body.voucher_rmb > 0:
        tier = await fetch_one(
            conn, "SELECT tier FROM institution WHERE id = institution_root(%s)",
            (booking["institution_id"],)
        )
        if tier is None or tier["tier"] != "voucher":
            raise Conflict("only voucher institutions may accept innovation vouchers")
    row = await fetch_one(
        conn,
        "INSERT INTO service_record (booking_id, contract_no, fee_rmb, voucher_rmb)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (booking_id) DO UPDATE SET"
        " contract_no = EXCLUDED.contract_no, fee_rmb = EXCLUDED.fee_rmb,"
        " voucher_rmb = EXCLUDED.voucher_rmb, updated_at = now() RETURNING *",
        (booking_id, body.contract_no, body.fee_rmb, body.voucher_rmb),
    )
    assert row is not None
    return row


@router.post("/bookings/{booking_id}/rating", response_model=ServiceRecord)
async def rate_service(
    conn: DbConn, caller: Booker, booking_id: int, body: RatingIn
) -> dict[str, Any]:
    """The user rates the service quality once the booking is completed."""
    booking = await _booking(conn, booking_id)
    if booking["user_id"] != caller.user_id:
        raise NotFound(f"no booking {booking_id}")
    if booking["status"] != BookingStatus.COMPLETED:
        raise Conflict("a booking can be rated only after it is completed")
    row = await fetch_one(
        conn,
        "INSERT INTO service_record (booking_id, rating, comment, rated_at)"
        " VALUES (%s, %s, %s, now()) ON CONFLICT (booking_id) DO UPDATE SET"
        " rating = EXCLUDED.rating, comment = EXCLUDED.comment, rated_at = now(),"
        " updated_at = now() RETURNING *",
        (booking_id, body.rating, body.comment),
    )
    assert row is not None
    return row


@router.get("/bookings/{booking_id}/service-record", response_model=ServiceRecord)
async def get_service_record(conn: DbConn, caller: Caller, booking_id: int) -> dict[str, Any]:
    booking = await _booking(conn, booking_id)
    if not _visible(caller, booking):
        raise NotFound(f"no booking {booking_id}")
    row = await fetch_one(
        conn, "SELECT * FROM service_record WHERE booking_id = %s", (booking_id,)
    )
    if row is None:
        raise NotFound(f"booking {booking_id} has no service record yet")
    return row
