"""One instrument's usage sessions, each with what the reports make of it: whom its time
counts for (reported, or by booking), whether that user is an outside one and whether they
ran it uncertified (docs/metrics.md). The reports sum the same rules over many sessions
(``session_sums``); this lists them one by one, so that a figure can be traced to its
sessions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from monitor_api.db import Conn, fetch_all
from monitor_api.queries.common import window_total
from monitor_api.queries.session_sums import CERTIFIED_UNTIL, OPERATED

_SESSIONS = """
SELECT u.start_ts AS start, u.end_ts AS "end", u.last_ts,
       date_part('epoch', coalesce(u.end_ts, u.last_ts) - u.start_ts) AS running_s,
       coalesce(u.end_ts, u.last_ts) - u.start_ts >= make_interval(secs => i.min_session_s)
           AS counted,
       pu_id.user_id, pu.name AS user_name,
       CASE WHEN u.user_id IS NOT NULL THEN 'reported'
            WHEN b.user_id IS NOT NULL THEN 'booking' END AS user_from,
       b.kind AS booking_kind,
       outside_user(pu.approved, pu.institution_id, i.institution_id) AS outside,
       -- who operated it (reported, or of a self-operated booking) held no certification of
       -- any level valid at its start and not yet revoked
       {operated} AND NOT EXISTS (
           SELECT 1 FROM certification cert
           WHERE cert.user_id = pu_id.user_id AND cert.instrument_id = u.instrument_id
             AND cert.valid_from <= u.start_ts AND u.start_ts < {certified_until}
       ) AS uncertified,
       count(*) OVER () AS n
FROM usage_session u
JOIN instrument i ON i.id = u.instrument_id
LEFT JOIN LATERAL (
    SELECT * FROM session_booking(u.instrument_id, u.start_ts, %(grace)s)
    WHERE u.user_id IS NULL
) b ON true
CROSS JOIN LATERAL (SELECT coalesce(u.user_id, b.user_id) AS user_id) pu_id
LEFT JOIN platform_user pu ON pu.id = pu_id.user_id
WHERE u.instrument_id = %(id)s AND u.start_ts < %(hi)s AND coalesce(u.end_ts, u.last_ts) > %(lo)s
  AND (%(user)s::text IS NULL OR pu_id.user_id = %(user)s)
ORDER BY u.start_ts
LIMIT %(limit)s OFFSET %(offset)s
""".replace("{operated}", OPERATED).replace("{certified_until}", CERTIFIED_UNTIL)


async def instrument_sessions(
    conn: Conn, *, instrument_id: str, lo: datetime, hi: datetime, grace: timedelta,
    user_id: str | None = None, limit: int | None, offset: int,
) -> dict[str, Any]:
    """The sessions of ``instrument_id`` overlapping ``[lo, hi)`` in start order, unclipped,
    one page of them (``limit`` None: all from ``offset``); ``user_id``: only those whose
    time counts for that user."""
    rows = await fetch_all(conn, _SESSIONS, {
        "id": instrument_id, "lo": lo, "hi": hi, "grace": grace, "user": user_id,
        "limit": limit, "offset": offset})
    total = await window_total(rows, offset, lambda: instrument_sessions(
        conn, instrument_id=instrument_id, lo=lo, hi=hi, grace=grace, user_id=user_id,
        limit=1, offset=0))
    items = [{k: v for k, v in r.items() if k != "n"} for r in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset}
