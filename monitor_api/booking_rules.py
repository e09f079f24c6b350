"""Who may book what, checked before a booking is written or approved: a listed instrument,
an approved user, outside users only where the instrument is open and its institution may
serve, self-operation only with a certification for the whole window, no overlap with a
booking in the way, and no suspension for repeated no-shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from monitor_api.db import Conn, fetch_all, fetch_one
from monitor_api.errors import Conflict, Forbidden, NotFound, Refusal, local_time
from monitor_api.json_encoding import json_time
from monitor_api.schemas_bookings import BookingKind, BookingStatus
from monitor_api.settings import ApiSettings


async def check_no_overlap(
    conn: Conn, instrument_id: str, start: datetime, end: datetime, user_id: str
) -> None:
    """A booking in the way: someone's approved one, or the user's own pending request (sent
    twice, from two tabs or by a retry, it would only burden the managers)."""
    row = await fetch_one(
        conn,
        "SELECT id, status, user_id FROM booking WHERE instrument_id = %s"
        " AND tstzrange(start_ts, end_ts) && tstzrange(%s, %s)"
        " AND (status IN ('approved', 'completed') OR status = 'requested' AND user_id = %s)"
        " ORDER BY status = 'requested', start_ts LIMIT 1",
        (instrument_id, start, end, user_id),
    )
    if row is None:
        return
    if row["status"] == BookingStatus.REQUESTED:
        raise Conflict(
            f"you have already requested this instrument in that window (booking {row['id']});"
            " wait for the managers' decision, or cancel that request first",
            details={"booking_id": row["id"]}, reason=Refusal.ALREADY_REQUESTED,
        )
    if row["user_id"] == user_id:
        raise Conflict(
            f"you have already booked this instrument in that window (booking {row['id']})",
            details={"booking_id": row["id"]}, reason=Refusal.ALREADY_BOOKED,
        )
    raise Conflict(
        f"the instrument is already booked in that window (booking {row['id']})",
        details={"booking_id": row["id"]}, reason=Refusal.SLOT_TAKEN,
    )


async def check_eligible(
    conn: Conn, *, user_id: str, instrument_id: str, kind: str, start: datetime, end: datetime,
    approving: bool = False,
) -> None:
    """Listed instrument; approved user; outside users only where the instrument is open and
    its institution may serve; self-operation only with a self-level certification valid for
    the whole window. The user requesting is refused (403, told what to do); a manager
    ``approving`` a request that no longer qualifies gets 409, told why."""
    row = await fetch_one(
        conn,
        """
        SELECT u.approved, i.open_to_outside, ii.tier, i.listing IS NOT NULL AS listed,
               (u.institution_id IS NULL OR institution_root(u.institution_id)
                    IS DISTINCT FROM institution_root(i.institution_id)) AS outside,
               EXISTS (SELECT 1 FROM certification c
                       WHERE c.user_id = u.id AND c.instrument_id = i.id AND c.level = 'self'
                         AND c.valid_from <= %(start)s
                         AND (c.valid_until IS NULL OR c.valid_until >= %(end)s)
                         AND c.revoked_at IS NULL) AS certified
        FROM platform_user u, instrument i
        JOIN institution ii ON ii.id = institution_root(i.institution_id)  -- it serves as one
        WHERE u.id = %(user)s AND i.id = %(instrument)s
        """,
        {"user": user_id, "instrument": instrument_id, "start": start, "end": end},
    )
    if row is None:
        # users exist: the caller, or a booking's
        raise NotFound(f"no instrument {instrument_id!r}")
    if not row["listed"]:
        raise Conflict(f"instrument {instrument_id!r} is not in the catalogue: it is booked once"
                       " an admin has reviewed and listed it", reason=Refusal.NOT_LISTED)
    refusal = _refusal(row, user_id, kind)
    if refusal is not None and approving:
        raise Conflict(f"the request can no longer be approved: {refusal[2]}")
    if refusal is not None:
        raise Forbidden(refusal[1], reason=refusal[0])


def _refusal(row: dict[str, Any], user_id: str, kind: str) -> tuple[Refusal, str, str] | None:
    """Why the user may not have the booking: (reason code, what they are told, what a
    manager approving the request is told); None if nothing stands in the way."""
    if not row["approved"]:
        return (Refusal.REGISTRATION_PENDING, "your registration has not been approved yet",
                f"user {user_id!r} is not an approved user")
    if row["outside"] and not row["open_to_outside"]:
        closed = "this instrument is not open to outside users"
        return (Refusal.CLOSED_TO_OUTSIDE, closed, closed)
    if row["outside"] and row["tier"] == "incubation":
        incubated = "institutions in the incubation pool may not serve outside users"
        return (Refusal.INCUBATION_POOL, incubated, incubated)
    if kind == BookingKind.SELF and not row["certified"]:
        return (Refusal.NEEDS_CERTIFICATION,
                "self-operated bookings need a self-operation certification valid for the whole"
                " window; book an operator-assisted session instead",
                f"user {user_id!r} holds no self-operation certification valid for the whole"
                " window")
    return None


_NO_SHOWS = """
SELECT b.id, b.start_ts
FROM booking b
WHERE b.user_id = %(user)s AND b.start_ts >= now() - %(window)s
  AND (b.status = 'void'
       OR b.status IN ('approved', 'completed')
          AND window_missed(b.instrument_id, b.start_ts, b.end_ts, %(grace)s))
ORDER BY b.start_ts
"""


async def check_not_suspended(conn: Conn, settings: ApiSettings, user_id: str) -> None:
    """``no_show_limit`` no-shows within the window suspend new requests until enough of
    them age out of it, or the instrument's managers cancel one (excusing it)."""
    if settings.no_show_limit == 0:
        return
    rows = await fetch_all(conn, _NO_SHOWS, {
        "user": user_id, "window": settings.no_show_window, "grace": settings.no_show_grace})
    if len(rows) < settings.no_show_limit:
        return
    resumes = rows[len(rows) - settings.no_show_limit]["start_ts"] + settings.no_show_window
    ids = [row["id"] for row in rows]
    raise Forbidden(
        f"booking is suspended after {len(rows)} no-shows in the last"
        f" {settings.no_show_window_days} days (bookings {', '.join(map(str, ids))});"
        f" it resumes at {local_time(resumes)}, or sooner if the"
        " instruments' managers cancel a no-show",
        details={"no_shows": ids, "resumes_at": json_time(resumes)}, reason=Refusal.SUSPENDED,
    )
