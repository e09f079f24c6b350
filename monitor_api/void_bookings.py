"""Release lapsed bookings: an approved booking that nobody has started using within the void
period after its start becomes ``void``, so the rest of its window can be booked again (the
facility rule "a booking is void when nobody turns up within 30-60 minutes"). A void booking
counts as a no-show (docs/metrics.md, "Bookings").

Running time by anyone counts as use, from the no-show grace before the start on (an operator
may start assisted work early). Only what the platform has heard decides: the instrument must
have sent a sample from the end of the void period on, since gateways deliver in order, so
a gateway cut off from the network (its samples still in its outbox) or an instrument without
one never has its bookings voided. The API runs the release in the background every
``booking_sweep_interval_s``, and for one instrument right before booking or approving a slot
on it, so a released window is free at once.
"""

from __future__ import annotations

from monitor_api.db import Conn, Pool, fetch_all
from monitor_api.settings import ApiSettings

VOIDED_BY = "system:void"

_VOID = """
UPDATE booking b
SET status = 'void', decided_at = now(), decided_by = %(by)s
WHERE b.status = 'approved'
  AND b.end_ts > now() AND b.start_ts <= now() - %(after)s
  AND (%(instrument)s::text IS NULL OR b.instrument_id = %(instrument)s)
  AND running_seconds(b.instrument_id, b.start_ts - %(grace)s, now()) = 0
  AND heard_since(b.instrument_id, b.start_ts + %(after)s)
RETURNING b.id
"""


async def void_lapsed(
    conn: Conn, settings: ApiSettings, *, instrument_id: str | None = None
) -> list[int]:
    """Void the lapsed bookings (of one instrument, or all) in ``conn``'s transaction, unless
    the release is off; returns their ids."""
    if settings.booking_void_after_s == 0:
        return []
    rows = await fetch_all(conn, _VOID, {
        "by": VOIDED_BY, "after": settings.booking_void_after,
        "grace": settings.no_show_grace, "instrument": instrument_id})
    return [row["id"] for row in rows]


async def void_all_lapsed(pool: Pool, settings: ApiSettings) -> str:
    """One round of the background release, in a transaction of its own."""
    async with pool.connection() as conn:
        voided = await void_lapsed(conn, settings)
    return f"voided bookings {', '.join(map(str, voided))}" if voided else ""
