"""Per-instrument figures for a period, computed from usage sessions (docs/metrics.md).

One SQL statement returns one row per instrument; grouping by institution, category or
region happens in Python (``monitor_api.metrics``) because distinct outside users must be
counted across instruments, not added up.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from monitor_api.db import Conn, fetch_all
from monitor_api.queries.common import Where

_ROOTS = """
WITH RECURSIVE roots(id, root) AS (
    SELECT id, id FROM institution WHERE parent_id IS NULL
    UNION ALL
    SELECT c.id, r.root FROM institution c JOIN roots r ON c.parent_id = r.id
)
SELECT id, root FROM roots
"""

_SELECTED = """
WITH RECURSIVE roots(id, root, region) AS (
    SELECT id, id, region FROM institution WHERE parent_id IS NULL
    UNION ALL
    SELECT c.id, r.root, CASE WHEN c.region <> '' THEN c.region ELSE r.region END
    FROM institution c JOIN roots r ON c.parent_id = r.id
)
SELECT i.id FROM instrument i JOIN roots r ON r.id = i.institution_id WHERE {where}
"""

_PER_INSTRUMENT = """
WITH RECURSIVE roots(id, root, region) AS (
    SELECT id, id, region FROM institution WHERE parent_id IS NULL
    UNION ALL
    SELECT c.id, r.root, CASE WHEN c.region <> '' THEN c.region ELSE r.region END
    FROM institution c JOIN roots r ON c.parent_id = r.id
), inst AS MATERIALIZED (
    SELECT i.id, i.name, i.institution_id, r.root AS root_id, r.region, i.category_code,
           i.value_rmb,
           make_interval(secs => i.warmup_s) AS warm, make_interval(secs => i.cooldown_s) AS cool,
           make_interval(secs => i.min_session_s) AS min_len
    FROM instrument i JOIN roots r ON r.id = i.institution_id
    WHERE i.id = ANY(%(ids)s)
), users AS MATERIALIZED (
    SELECT u.id, u.approved, r.root AS root_id,
           coalesce(r.root, 'org:' || nullif(u.organisation, ''), 'user:' || u.id) AS org
    FROM platform_user u LEFT JOIN roots r ON r.id = u.institution_id
), bk AS MATERIALIZED (
    SELECT b.id, b.instrument_id, b.start_ts, b.end_ts
    FROM booking b
    WHERE b.instrument_id = ANY(%(ids)s) AND b.status IN ('approved', 'completed')
      AND b.start_ts < %(hi)s AND b.end_ts > %(lo)s - interval '31 days'
), sess AS NOT MATERIALIZED (
    -- plain tables and parameters only (no CTE scans): PostgreSQL may use parallel workers
    SELECT s.instrument_id, s.user_id, s.start_ts,
           tstzrange(s.start_ts, coalesce(s.end_ts, s.last_ts)) AS raw,
           greatest(s.start_ts - make_interval(secs => i.warmup_s), %(lo)s) AS a,
           least(coalesce(s.end_ts, s.last_ts) + make_interval(secs => i.cooldown_s), %(hi)s)
               AS b,
           coalesce(u.approved AND ur.root IS DISTINCT FROM ir.root, false) AS outside,
           coalesce(ur.root, 'org:' || nullif(u.organisation, ''), 'user:' || u.id) AS org
    FROM usage_session s
    JOIN instrument i ON i.id = s.instrument_id
    JOIN unnest(%(inst_ids)s::text[], %(inst_roots)s::text[]) ir(id, root)
        ON ir.id = i.institution_id
    LEFT JOIN platform_user u ON u.id = s.user_id
    LEFT JOIN unnest(%(inst_ids)s::text[], %(inst_roots)s::text[]) ur(id, root)
        ON ur.id = u.institution_id
    WHERE s.instrument_id = ANY(%(ids)s)
      AND s.start_ts < %(hi_pad)s AND coalesce(s.end_ts, s.last_ts) > %(lo_pad)s
      AND coalesce(s.end_ts, s.last_ts) - s.start_ts >= make_interval(secs => i.min_session_s)
), s_sums AS (
    SELECT sess.instrument_id,
           count(*) AS sessions,
           sum(extract(epoch FROM sess.b - sess.a))::float8 AS effective_s,
           coalesce(sum(extract(epoch FROM sess.b - sess.a)) FILTER (WHERE sess.outside), 0)
               ::float8 AS external_s,
           count(*) FILTER (WHERE sess.user_id IS NOT NULL
                            AND (c.valid IS NULL OR NOT c.valid @> sess.start_ts))
               AS uncertified_sessions,
           coalesce(sum(extract(epoch FROM sess.b - sess.a)) FILTER (
               WHERE sess.user_id IS NOT NULL
                 AND (c.valid IS NULL OR NOT c.valid @> sess.start_ts)), 0)::float8
               AS uncertified_s,
           coalesce(sum(extract(epoch FROM sess.b - sess.a)) FILTER (
               WHERE sess.user_id IS NULL), 0)::float8 AS unattributed_s
    FROM sess LEFT JOIN (
        -- when each user held a valid certification for each instrument
        SELECT user_id, instrument_id,
               range_agg(tstzrange(valid_from, least(coalesce(valid_until, 'infinity'),
                                                     coalesce(revoked_at, 'infinity')))) AS valid
        FROM certification WHERE instrument_id = ANY(%(ids)s) AND valid_from < %(hi_pad)s
        GROUP BY user_id, instrument_id
    ) c ON c.user_id = sess.user_id AND c.instrument_id = sess.instrument_id
    WHERE sess.b > sess.a
    GROUP BY sess.instrument_id
), outsiders AS (
    SELECT instrument_id, array_agg(DISTINCT user_id) AS outside_users,
           array_agg(DISTINCT org) AS outside_orgs
    FROM sess WHERE outside AND b > a
    GROUP BY instrument_id
), ranges AS (
    -- only instruments with bookings need these; raw ranges reach a day beyond the period,
    -- for the no-show check of late bookings
    SELECT s.instrument_id, range_agg(s.raw) AS raw_mr,
           range_agg(tstzrange(s.a, s.b)) FILTER (WHERE s.b > s.a) AS used_mr
    FROM sess s WHERE s.instrument_id = ANY(%(booked)s)
    GROUP BY s.instrument_id
), b_agg AS (
    SELECT bk.instrument_id,
           range_agg(tstzrange(bk.start_ts, bk.end_ts)) AS booked_mr,
           count(*) FILTER (WHERE bk.start_ts >= %(lo)s) AS bookings,
           count(*) FILTER (WHERE bk.start_ts >= %(lo)s AND bk.end_ts + %(grace)s <= now()
               AND NOT coalesce(s.raw_mr && tstzrange(bk.start_ts - %(grace)s,
                                                      bk.end_ts + %(grace)s), false))
               AS no_shows
    FROM bk LEFT JOIN ranges s ON s.instrument_id = bk.instrument_id
    GROUP BY bk.instrument_id
), svc AS (
    SELECT b.instrument_id, sum(r.fee_rmb)::float8 AS income_rmb,
           coalesce(sum(r.fee_rmb) FILTER (
               WHERE u.approved AND u.root_id IS DISTINCT FROM inst.root_id), 0)::float8
               AS external_income_rmb,
           sum(r.voucher_rmb)::float8 AS voucher_rmb,
           count(r.rating) AS ratings, coalesce(sum(r.rating), 0) AS rating_sum
    FROM service_record r JOIN booking b ON b.id = r.booking_id
    JOIN inst ON inst.id = b.instrument_id LEFT JOIN users u ON u.id = b.user_id
    WHERE b.start_ts >= %(lo)s AND b.start_ts < %(hi)s
      AND b.status IN ('approved', 'completed')
    GROUP BY b.instrument_id
), avail AS (
    SELECT inst.id AS instrument_id,
           coalesce(sum(extract(epoch FROM seg.seg_end - seg.seg_start))
               FILTER (WHERE seg.state NOT IN ('offline', 'fault')), 0)::float8 AS up_s
    FROM inst LEFT JOIN LATERAL state_segments(inst.id, %(lo)s, %(hi_now)s, %(timeout)s) seg
        ON %(with_availability)s
    GROUP BY inst.id
)
SELECT inst.id AS instrument_id, inst.name, inst.institution_id, inst.root_id,
       inst.region, inst.category_code, inst.value_rmb::float8 AS value_rmb,
       coalesce(s.sessions, 0) AS sessions, coalesce(s.effective_s, 0) AS effective_s,
       coalesce(s.external_s, 0) AS external_s, coalesce(s.uncertified_s, 0) AS uncertified_s,
       coalesce(s.uncertified_sessions, 0) AS uncertified_sessions,
       coalesce(s.unattributed_s, 0) AS unattributed_s,
       coalesce(o.outside_users, '{}') AS outside_users,
       coalesce(o.outside_orgs, '{}') AS outside_orgs,
       coalesce((SELECT sum(extract(epoch FROM upper(r) - lower(r)))
                 FROM unnest(rg.used_mr * ba.booked_mr) r), 0)::float8 AS booked_s,
       coalesce(ba.bookings, 0) AS bookings, coalesce(ba.no_shows, 0) AS no_shows,
       coalesce(v.income_rmb, 0) AS income_rmb,
       coalesce(v.external_income_rmb, 0) AS external_income_rmb,
       coalesce(v.voucher_rmb, 0) AS voucher_rmb,
       coalesce(v.ratings, 0) AS ratings, coalesce(v.rating_sum, 0) AS rating_sum,
       av.up_s
FROM inst
LEFT JOIN s_sums s ON s.instrument_id = inst.id
LEFT JOIN outsiders o ON o.instrument_id = inst.id
LEFT JOIN ranges rg ON rg.instrument_id = inst.id
LEFT JOIN b_agg ba ON ba.instrument_id = inst.id
LEFT JOIN svc v ON v.instrument_id = inst.id
LEFT JOIN avail av ON av.instrument_id = inst.id
ORDER BY inst.id
"""


async def per_instrument(
    conn: Conn,
    *,
    lo: datetime,
    hi: datetime,
    timeout: timedelta,
    grace: timedelta,
    institutions: list[str] | None,
    category: str | None,
    region: str | None,
    instrument_id: str | None,
    with_availability: bool = True,
) -> tuple[list[dict[str, Any]], float]:
    """Rows of raw sums per instrument, and the seconds of the period that have passed."""
    where = Where()
    if institutions is not None:
        where.add("i.institution_id = ANY(%(insts)s)", insts=institutions)
    if category is not None:
        where.add("i.category_code LIKE %(cat)s", cat=category + "%")
    if region is not None:
        where.add("r.region = %(region)s", region=region)
    if instrument_id is not None:
        where.add("i.id = %(iid)s", iid=instrument_id)
    roots = await fetch_all(conn, _ROOTS)
    ids = [
        r["id"] for r in await fetch_all(
            conn, sql.SQL(_SELECTED).format(where=where.sql()), where.params
        )
    ]
    pad = timedelta(days=1)  # warm-up and cool-down margins are at most a day
    now = datetime.now(lo.tzinfo)
    hi_now = min(hi, now)
    booked = [
        r["instrument_id"] for r in await fetch_all(
            conn,
            "SELECT DISTINCT instrument_id FROM booking WHERE instrument_id = ANY(%s)"
            " AND status IN ('approved', 'completed') AND start_ts < %s"
            " AND end_ts > %s - interval '31 days'",
            (ids, hi, lo),
        )
    ]
    # Large sorts stay in memory; JIT compilation costs more than it saves on this query.
    await conn.execute("SET LOCAL work_mem = '64MB'")
    await conn.execute("SET LOCAL jit = off")
    rows = await fetch_all(
        conn,
        _PER_INSTRUMENT,
        {"ids": ids, "booked": booked, "inst_ids": [r["id"] for r in roots],
         "inst_roots": [r["root"] for r in roots], "lo": lo, "hi": hi,
         "lo_pad": lo - pad, "hi_pad": hi + pad,
         "hi_now": max(hi_now, lo), "timeout": timeout, "grace": grace,
         "with_availability": with_availability},
        prepare=False,
    )
    return rows, max((hi_now - lo).total_seconds(), 0.0)
