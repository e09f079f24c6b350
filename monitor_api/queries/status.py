"""Live status: the board, timelines, power series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from monitor_api.db import Conn, fetch_all, fetch_one
from monitor_api.queries.common import Where, page, window_total

# Derived state: 'offline' when nothing was heard within the heartbeat timeout, or the gateway
# announced itself offline; otherwise the state last reported. Each entry names its unit
# (``institution_name``, every instrument has one) by a join on its primary key, so that no
# client looks units up. A short page streams in id order through the primary keys; the
# count, a second statement (``page``), reads nothing of the left joins, which PostgreSQL then
# drops. The rows come back in binary format and the route encodes them with
# orjson: for the 10,000-instrument board ~25 % faster than ``json_agg`` inside PostgreSQL
# (60-65 against 80-88 ms, measured side by side). Public so that what is counted elsewhere
# (monitor_api.fleet_gauges) is derived the same way: ``{where}`` is a condition on the
# derived columns; parameters ``timeout``, ``state`` (None: any) and ``as_listed``. Users
# taken from bookings come after, from ``_BOOKED_USERS``.
BOARD = """
SELECT * FROM (
    SELECT i.id AS instrument_id, i.institution_id, n.name AS institution_name, o.online,
           CASE WHEN %(as_listed)s THEN i.listing->>'name' ELSE i.name END AS name,
           CASE WHEN %(as_listed)s THEN i.listing->>'category_code' ELSE i.category_code END
               AS category_code,
           CASE WHEN o.online THEN s.state ELSE 'offline' END AS state,
           CASE WHEN o.online THEN s.since ELSE s.last_ts END AS since,
           CASE WHEN o.online THEN s.user_id END AS user_id,
           CASE WHEN o.online THEN u.name END AS user_name, false AS user_booked,
           CASE WHEN o.online THEN s.power_w END AS power_w,
           s.last_ts, s.gateway_id, i.listing IS NOT NULL AS listed
    FROM instrument i
    LEFT JOIN institution n ON n.id = i.institution_id
    LEFT JOIN instrument_status s ON s.instrument_id = i.id
    LEFT JOIN gateway g ON g.id = s.gateway_id
    LEFT JOIN platform_user u ON u.id = s.user_id
    CROSS JOIN LATERAL (
        SELECT s.instrument_id IS NOT NULL AND g.online IS NOT FALSE
               AND s.last_ts >= now() - %(timeout)s AS online
    ) o
) derived
WHERE (%(state)s::text IS NULL OR state = %(state)s) AND {where}
"""


async def status_board(
    conn: Conn,
    *,
    timeout: timedelta,
    grace: timedelta,
    institutions: frozenset[str] | None,
    category: str | None,
    state: str | None,
    instrument_ids: list[str] | None = None,
    as_listed: bool = False,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    """One page of the board, with how many items all pages hold; ``institutions``: those of
    the instruments to show (an institution tree, looked up by the caller), None for all;
    ``as_listed``: the board registered users see, listed instruments only, named and filed
    as reviewed; ``grace``: the no-show grace, which bookings users are taken from."""
    where = Where()
    if institutions is not None:
        where.add("institution_id = ANY(%(insts)s)", insts=sorted(institutions))
    if as_listed:
        where.add("listed")
    if category is not None:
        where.add("category_code LIKE %(cat)s", cat=category + "%")
    if instrument_ids is not None:
        where.add("instrument_id = ANY(%(ids)s)", ids=instrument_ids)
    where.params.update(timeout=timeout, state=state, as_listed=as_listed)
    board = await page(conn, select=BOARD, where=where, order="instrument_id", limit=limit,
                       offset=offset, binary=True)
    await _take_booked_users(conn, board["items"], grace)
    return board


# Who is at a running instrument whose gateway names nobody (a power meter): the user of the
# booking its running started in, by the rule sessions follow (session_booking(),
# docs/metrics.md "Users by booking"). A statement of its own for those entries of the page
# only: joined into the board, it would keep the count from dropping the joins and the page
# from streaming in id order (+25 % for 10,000 instruments).
_BOOKED_USERS = """
SELECT r.instrument_id, b.user_id, u.name AS user_name
FROM unnest(%(ids)s::text[], %(since)s::timestamptz[]) AS r(instrument_id, since)
CROSS JOIN LATERAL session_booking(r.instrument_id, r.since, %(grace)s) b
LEFT JOIN platform_user u ON u.id = b.user_id
"""


async def _take_booked_users(
    conn: Conn, items: list[dict[str, Any]], grace: timedelta
) -> None:
    nameless = [item for item in items if item["state"] == "running" and item["user_id"] is None]
    if not nameless:
        return
    rows = await fetch_all(conn, _BOOKED_USERS, {
        "ids": [item["instrument_id"] for item in nameless],
        "since": [item["since"] for item in nameless], "grace": grace})
    booked = {row["instrument_id"]: row for row in rows}
    for item in nameless:
        if (row := booked.get(item["instrument_id"])) is not None:
            item.update(user_id=row["user_id"], user_name=row["user_name"], user_booked=True)



def as_seen_by(item: dict[str, Any], viewer: str | None) -> dict[str, Any]:
    """A board entry as a registered user sees it: who is at the instrument only when it is
    themselves, since other people's identities are not theirs to know, and no gateway (its
    id is a broker account of the unit's equipment)."""
    someone_else = item["user_id"] is not None and item["user_id"] != viewer
    return {**item, "gateway_id": None,
            **({"user_id": None, "user_name": None, "user_booked": False}
               if someone_else else {})}


def in_scope(
    item: dict[str, Any], *, institutions: frozenset[str] | None, category: str | None,
    instrument: str | None, as_listed: bool,
) -> bool:
    """Whether a board entry belongs on a board filtered as ``status_board`` filters it."""
    code = item["category_code"]
    return ((instrument is None or item["instrument_id"] == instrument)
            and (institutions is None or item["institution_id"] in institutions)
            and (category is None or (code is not None and code.startswith(category)))
            and (item["listed"] or not as_listed))


async def instrument_gateway(conn: Conn, instrument_id: str) -> dict[str, Any] | None:
    """The gateway the registry binds the instrument to, else the one it last reported
    through, as last heard of; None when there is none or it never announced itself."""
    return await fetch_one(
        conn,
        """
        SELECT g.id, g.online, g.changed_at AS since, g.software, g.dropped,
               i.id = ANY(g.instruments) AS announces_instrument
        FROM instrument i
        LEFT JOIN instrument_status s ON s.instrument_id = i.id
        JOIN gateway g ON g.id = coalesce(i.gateway_id, s.gateway_id)
        WHERE i.id = %s
        """,
        (instrument_id,),
    )


# Gateways as last heard of, with the caller's instruments each announces, is bound to in the
# registry, and last reported through (the latest sample among those). ``%(all)s``: every
# instrument is the caller's; else those of the institutions ``%(insts)s``.
_GATEWAYS = """
WITH mine AS (
    SELECT i.id, i.gateway_id FROM instrument i
    WHERE %(all)s OR i.institution_id = ANY(%(insts)s)
), bound AS (
    SELECT gateway_id, array_agg(id ORDER BY id) AS ids
    FROM mine WHERE gateway_id IS NOT NULL GROUP BY gateway_id
), reporting AS (
    SELECT s.gateway_id, array_agg(s.instrument_id ORDER BY s.instrument_id) AS ids,
           max(s.last_ts) AS last_data
    FROM instrument_status s JOIN mine ON mine.id = s.instrument_id
    GROUP BY s.gateway_id
)
SELECT g.id, g.online, g.changed_at AS since, g.software, g.dropped,
       ARRAY(SELECT a FROM unnest(g.instruments) a
             WHERE %(all)s OR a IN (SELECT id FROM mine) ORDER BY a) AS announced,
       coalesce(b.ids, '{{}}') AS bound, coalesce(r.ids, '{{}}') AS reporting, r.last_data
FROM gateway g
LEFT JOIN bound b ON b.gateway_id = g.id
LEFT JOIN reporting r ON r.gateway_id = g.id
WHERE (%(all)s OR b.ids IS NOT NULL OR r.ids IS NOT NULL) AND {where}
"""


async def gateways(
    conn: Conn, *, institutions: list[str] | None, online: bool | None, limit: int, offset: int
) -> dict[str, Any]:
    """A page of gateways; with ``institutions``, only those serving their instruments."""
    where = Where()
    where.params.update(all=institutions is None, insts=institutions or [])
    if online is not None:
        where.add("g.online = %(online)s", online=online)
    return await page(conn, select=_GATEWAYS, where=where, order="g.id", limit=limit,
                      offset=offset)


async def changed_instruments(
    conn: Conn, *, timeout: timedelta, since: datetime, now: datetime
) -> list[str]:
    """Instruments whose board entry may have changed in (since, now]: new data, a gateway
    going on/offline, or the heartbeat timeout expiring."""
    rows = await fetch_all(
        conn,
        """
        SELECT instrument_id FROM instrument_status
        WHERE updated_at > %(since)s AND updated_at <= %(now)s
           OR (last_ts + %(timeout)s > %(since)s AND last_ts + %(timeout)s <= %(now)s)
        UNION
        SELECT s.instrument_id FROM instrument_status s JOIN gateway g ON g.id = s.gateway_id
        WHERE g.changed_at > %(since)s AND g.changed_at <= %(now)s
        """,
        {"since": since, "now": now, "timeout": timeout},
    )
    return [r["instrument_id"] for r in rows]


async def timeline(
    conn: Conn, *, instrument_id: str, lo: datetime, hi: datetime, timeout: timedelta,
    limit: int, offset: int,
) -> dict[str, Any]:
    """Merged state intervals (consecutive equal states joined), one page of them."""
    rows = await fetch_all(
        conn,
        """
        WITH seg AS (
            SELECT * FROM state_segments(%(id)s, %(lo)s, least(%(hi)s, now()), %(timeout)s)
        ), marked AS (
            SELECT *, CASE WHEN lag(state) OVER w = state AND lag(seg_end) OVER w = seg_start
                           THEN 0 ELSE 1 END AS brk
            FROM seg WINDOW w AS (ORDER BY seg_start)
        ), grouped AS (
            SELECT *, sum(brk) OVER (ORDER BY seg_start) AS grp FROM marked
        )
        SELECT state, min(seg_start) AS start, max(seg_end) AS "end", count(*) OVER () AS n
        FROM grouped GROUP BY grp, state ORDER BY min(seg_start)
        LIMIT %(limit)s OFFSET %(offset)s
        """,
        {"id": instrument_id, "lo": lo, "hi": hi, "timeout": timeout,
         "limit": limit, "offset": offset},
    )
    total = await window_total(rows, offset, lambda: timeline(
        conn, instrument_id=instrument_id, lo=lo, hi=hi, timeout=timeout, limit=1, offset=0))
    items = [{"state": r["state"], "start": r["start"], "end": r["end"]} for r in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


# Whole hours come from power_hours() (migration 0027: the raw samples, or TimescaleDB's
# continuous aggregate), the rest from the raw samples; each part gives sums and counts (per
# hour, or per bucket already), so a bucket's average is the same whichever part made it.
_POWER = """
WITH parts AS (
    SELECT hour AS ts, sum_w, min_w, max_w, samples
    FROM power_hours(%(id)s, %(hours_lo)s, %(hours_hi)s)
    UNION ALL
    SELECT date_bin(%(step)s, ts, %(lo)s), sum(power_w), min(power_w), max(power_w),
           count(power_w)
    FROM state_sample
    WHERE instrument_id = %(id)s AND power_w IS NOT NULL
      AND (ts >= %(lo)s AND ts < %(hours_lo)s OR ts >= %(hours_hi)s AND ts < %(hi)s)
    GROUP BY 1
)
SELECT date_bin(%(step)s, ts, %(lo)s) AS ts,
       sum(sum_w) / sum(samples)::double precision AS avg_w, min(min_w) AS min_w,
       max(max_w) AS max_w, sum(samples)::bigint AS samples, count(*) OVER () AS n
FROM parts GROUP BY 1 ORDER BY 1 LIMIT %(limit)s OFFSET %(offset)s
"""
_HOUR = timedelta(hours=1)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # on the hour, like the hourly sums


def whole_hours(lo: datetime, hi: datetime, step: timedelta) -> tuple[datetime, datetime]:
    """The part of ``[lo, hi)`` hourly sums can serve: none unless every bucket is made of
    whole hours (``lo`` on the hour, ``step`` whole hours), else up to the last full hour."""
    if step % _HOUR or (lo - _EPOCH) % _HOUR:
        return hi, hi
    return lo, max(lo, hi - (hi - _EPOCH) % _HOUR)


async def power_series(
    conn: Conn, *, instrument_id: str, lo: datetime, hi: datetime, step: timedelta,
    limit: int, offset: int,
) -> dict[str, Any]:
    """Power averaged (with min and max) over buckets of ``step`` aligned on ``lo``."""
    hours_lo, hours_hi = whole_hours(lo, hi, step)
    rows = await fetch_all(conn, _POWER, {
        "id": instrument_id, "lo": lo, "hi": hi, "hours_lo": hours_lo, "hours_hi": hours_hi,
        "step": step, "limit": limit, "offset": offset,
    })
    total = await window_total(rows, offset, lambda: power_series(
        conn, instrument_id=instrument_id, lo=lo, hi=hi, step=step, limit=1, offset=0))
    items = [{k: r[k] for k in ("ts", "avg_w", "min_w", "max_w", "samples")} for r in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset}
