"""Per-instrument figures for a period, computed from usage sessions (docs/metrics.md).

One SQL statement returns one row per instrument; grouping by institution, category or
region happens in Python (``monitor_api.report``) because distinct outside users must be
counted across instruments, not added up.

The statement reads the period's sessions once. Each session's clipped interval is
computed once (``OFFSET 0`` keeps PostgreSQL from inlining the expressions into every
aggregate that uses them), and the sums are taken per instrument and user, which also yields
the distinct outside users. Booked time and no-shows need interval unions; only the few
sessions that touch a booking window take part in them, which cannot change either figure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from monitor_api.db import Conn, fetch_all
from monitor_api.queries.availability import up_seconds
from monitor_api.queries.common import Where, tune_for_reports

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
ORDER BY i.id
"""

_PER_INSTRUMENT = """
WITH RECURSIVE roots(id, root, region) AS (
    SELECT id, id, region FROM institution WHERE parent_id IS NULL
    UNION ALL
    SELECT c.id, r.root, CASE WHEN c.region <> '' THEN c.region ELSE r.region END
    FROM institution c JOIN roots r ON c.parent_id = r.id
), inst AS MATERIALIZED (
    SELECT i.id, i.name, i.institution_id, r.root AS root_id, r.region, i.category_code,
           i.value_rmb
    FROM instrument i JOIN roots r ON r.id = i.institution_id
    WHERE i.id = ANY(%(ids)s)
), users AS MATERIALIZED (
    SELECT u.id, u.approved, r.root AS root_id,
           coalesce(r.root, 'org:' || nullif(u.organisation, ''), 'user:' || u.id) AS org
    FROM platform_user u LEFT JOIN roots r ON r.id = u.institution_id
), bk AS MATERIALIZED (
    SELECT b.instrument_id, b.start_ts, b.end_ts
    FROM booking b
    WHERE b.instrument_id = ANY(%(ids)s) AND b.status IN ('approved', 'completed')
      AND b.start_ts < %(hi)s AND b.end_ts > %(lo)s - interval '31 days'
), windows AS MATERIALIZED (
    -- booking windows per instrument, as booked and widened by the grace period (the
    -- latter only for bookings starting in the period, which the no-show check counts)
    SELECT bk.instrument_id, range_agg(tstzrange(bk.start_ts, bk.end_ts)) AS booked_mr,
           range_agg(tstzrange(bk.start_ts - %(grace)s, bk.end_ts + %(grace)s))
               FILTER (WHERE bk.start_ts >= %(lo)s) AS wide_mr
    FROM bk GROUP BY bk.instrument_id
), clipped AS (
    -- noise filter, then margins, then clipping to the period; an open session ends at its
    -- last running sample. Sessions up to a day beyond the period feed the no-show check.
    -- [a, b) is the effective time (margins added), [ra, rb) the running time alone.
    SELECT s.instrument_id, s.user_id, s.start_ts, s.end_ts, p.booked_mr, p.wide_mr,
           greatest(s.start_ts - p.warm, %(lo)s) AS a, least(s.end_ts + p.cool, %(hi)s) AS b,
           greatest(s.start_ts, %(lo)s) AS ra, least(s.end_ts, %(hi)s) AS rb
    FROM (
        SELECT instrument_id, user_id, start_ts, coalesce(end_ts, last_ts) AS end_ts
        FROM usage_session
        WHERE instrument_id = ANY(%(ids)s)
          AND start_ts < %(hi_pad)s AND coalesce(end_ts, last_ts) > %(lo_pad)s
          AND (end_ts > %(lo_pad)s OR end_ts IS NULL)  -- implied; usage_session_end_idx
    ) s JOIN (
        SELECT i.id, make_interval(secs => i.warmup_s) AS warm,
               make_interval(secs => i.cooldown_s) AS cool,
               make_interval(secs => i.min_session_s) AS min_len, w.booked_mr, w.wide_mr
        FROM instrument i LEFT JOIN windows w ON w.instrument_id = i.id
        WHERE i.id = ANY(%(ids)s)
        OFFSET 0
    ) p ON p.id = s.instrument_id
    WHERE s.end_ts - s.start_ts >= p.min_len
    OFFSET 0
), sess AS (
    SELECT c.instrument_id, c.user_id,
           greatest(date_part('epoch', c.b - c.a), 0) AS secs,
           greatest(date_part('epoch', c.rb - c.ra), 0) AS run_secs,
           c.user_id IS NOT NULL AND (v.valid IS NULL OR NOT v.valid @> c.start_ts)
               AS uncertified,
           -- the running intervals touching a booking window, which booked running time and
           -- no-shows are made of (nested CASEs: cheap tests first, ranges built only when
           -- they matter); margins are not running time, so unbooked use leaves them out
           CASE WHEN c.booked_mr IS NOT NULL THEN CASE WHEN c.rb > c.ra THEN
               CASE WHEN tstzrange(c.ra, c.rb) && c.booked_mr
                    THEN tstzmultirange(tstzrange(c.ra, c.rb)) END END
           END AS used_hit,
           CASE WHEN c.wide_mr IS NOT NULL THEN
               CASE WHEN tstzrange(c.start_ts, c.end_ts) && c.wide_mr
                    THEN tstzmultirange(tstzrange(c.start_ts, c.end_ts)) END
           END AS raw_hit
    FROM clipped c LEFT JOIN (
        -- when each user held a valid certification for each instrument (one revoked
        -- before it began never was)
        SELECT user_id, instrument_id,
               range_agg(tstzrange(valid_from, greatest(valid_from, least(
                   coalesce(valid_until, 'infinity'), coalesce(revoked_at, 'infinity'))))) AS valid
        FROM certification WHERE instrument_id = ANY(%(ids)s) AND valid_from < %(hi_pad)s
        GROUP BY user_id, instrument_id
    ) v ON v.user_id = c.user_id AND v.instrument_id = c.instrument_id
    OFFSET 0
), per_user AS (
    SELECT instrument_id, user_id,
           count(*) FILTER (WHERE secs > 0) AS sessions, sum(secs) AS used_s,
           sum(run_secs) AS run_s,
           count(*) FILTER (WHERE secs > 0 AND uncertified) AS uncertified_sessions,
           coalesce(sum(secs) FILTER (WHERE uncertified), 0) AS uncertified_s,
           multirange_union_agg(used_hit) AS used_mr, multirange_union_agg(raw_hit) AS raw_mr
    FROM sess
    GROUP BY instrument_id, user_id
), s_sums AS (
    -- institution roots as parameters, not CTEs: the planner then knows the tables' sizes
    -- and hashes the small sides
    SELECT p.instrument_id,
           sum(p.sessions)::bigint AS sessions, sum(p.used_s) AS effective_s,
           sum(p.run_s) AS running_s,
           coalesce(sum(p.used_s) FILTER (WHERE o.outside), 0) AS external_s,
           sum(p.uncertified_sessions)::bigint AS uncertified_sessions,
           sum(p.uncertified_s) AS uncertified_s,
           coalesce(sum(p.used_s) FILTER (WHERE p.user_id IS NULL), 0) AS unattributed_s,
           array_agg(p.user_id) FILTER (WHERE o.outside AND p.sessions > 0) AS outside_users,
           array_agg(o.org) FILTER (WHERE o.outside AND p.sessions > 0) AS outside_orgs,
           multirange_union_agg(p.used_mr) AS used_mr, multirange_union_agg(p.raw_mr) AS raw_mr
    FROM per_user p
    JOIN instrument i ON i.id = p.instrument_id
    JOIN unnest(%(inst_ids)s::text[], %(inst_roots)s::text[]) ir(id, root)
        ON ir.id = i.institution_id
    LEFT JOIN platform_user u ON u.id = p.user_id
    LEFT JOIN unnest(%(inst_ids)s::text[], %(inst_roots)s::text[]) ur(id, root)
        ON ur.id = u.institution_id
    CROSS JOIN LATERAL (
        SELECT coalesce(u.approved AND ur.root IS DISTINCT FROM ir.root, false) AS outside,
               coalesce(ur.root, 'org:' || nullif(u.organisation, ''), 'user:' || u.id) AS org
    ) o
    GROUP BY p.instrument_id
), b_agg AS (
    SELECT bk.instrument_id,
           count(*) FILTER (WHERE bk.start_ts >= %(lo)s) AS bookings,
           count(*) FILTER (WHERE bk.start_ts >= %(lo)s AND bk.end_ts + %(grace)s <= now()
               AND NOT coalesce(s.raw_mr && tstzrange(bk.start_ts - %(grace)s,
                                                      bk.end_ts + %(grace)s), false))
               AS no_shows
    FROM bk LEFT JOIN s_sums s ON s.instrument_id = bk.instrument_id
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
)
SELECT inst.id AS instrument_id, inst.name, inst.institution_id, inst.root_id,
       inst.region, inst.category_code, inst.value_rmb::float8 AS value_rmb,
       coalesce(s.sessions, 0) AS sessions, coalesce(s.effective_s, 0) AS effective_s,
       coalesce(s.running_s, 0) AS running_s,
       coalesce(s.external_s, 0) AS external_s, coalesce(s.uncertified_s, 0) AS uncertified_s,
       coalesce(s.uncertified_sessions, 0) AS uncertified_sessions,
       coalesce(s.unattributed_s, 0) AS unattributed_s,
       coalesce(s.outside_users, '{}') AS outside_users,
       coalesce(s.outside_orgs, '{}') AS outside_orgs,
       coalesce((SELECT sum(date_part('epoch', upper(r) - lower(r)))
                 FROM unnest(s.used_mr * w.booked_mr) r), 0) AS booked_s,
       coalesce(ba.bookings, 0) AS bookings, coalesce(ba.no_shows, 0) AS no_shows,
       coalesce(v.income_rmb, 0) AS income_rmb,
       coalesce(v.external_income_rmb, 0) AS external_income_rmb,
       coalesce(v.voucher_rmb, 0) AS voucher_rmb,
       coalesce(v.ratings, 0) AS ratings, coalesce(v.rating_sum, 0) AS rating_sum
FROM inst
LEFT JOIN windows w ON w.instrument_id = inst.id
LEFT JOIN s_sums s ON s.instrument_id = inst.id
LEFT JOIN b_agg ba ON ba.instrument_id = inst.id
LEFT JOIN svc v ON v.instrument_id = inst.id
ORDER BY inst.id
"""

Connect = Callable[[], AbstractAsyncContextManager[Conn]]
"""Lends a connection, committed when returned, as ``Pool.connection`` does."""

PARALLEL_MIN_INSTRUMENTS = 500
"""Fewer instruments than this run as one statement: splitting would cost more than it saves."""


async def per_instrument(
    connect: Connect,
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
    parallel: int = 1,
) -> tuple[list[dict[str, Any]], float]:
    """Rows of raw sums per instrument (in id order), and the seconds of the period that have
    passed.

    Each instrument's figures depend on its own rows only, so a large report is split into
    ``parallel`` runs of consecutive instruments, each on its own connection, and availability
    runs on another; PostgreSQL works on them at once (one statement uses one core).
    """
    where = Where()
    if institutions is not None:
        where.add("i.institution_id = ANY(%(insts)s)", insts=institutions)
    if category is not None:
        where.add("i.category_code LIKE %(cat)s", cat=category + "%")
    if region is not None:
        where.add("r.region = %(region)s", region=region)
    if instrument_id is not None:
        where.add("i.id = %(iid)s", iid=instrument_id)
    async with connect() as conn:
        roots = await fetch_all(conn, _ROOTS)
        ids = [
            r["id"] for r in await fetch_all(
                conn, sql.SQL(_SELECTED).format(where=where.sql()), where.params
            )
        ]
    pad = timedelta(days=1)  # warm-up and cool-down margins and the grace are at most a day
    now = datetime.now(lo.tzinfo)
    hi_now = min(hi, now)
    params = {"inst_ids": [r["id"] for r in roots], "inst_roots": [r["root"] for r in roots],
              "lo": lo, "hi": hi, "lo_pad": lo - pad, "hi_pad": hi + pad, "grace": grace}

    async def figures(part: list[str]) -> list[dict[str, Any]]:
        async with connect() as conn:
            await tune_for_reports(conn)
            return await fetch_all(conn, _PER_INSTRUMENT, {**params, "ids": part},
                                   prepare=False)

    async def availability() -> dict[str, float] | None:
        if not with_availability:
            return None
        if hi_now <= lo:
            return {}
        async with connect() as conn:
            return await up_seconds(conn, ids=ids, lo=lo, hi=hi_now, timeout=timeout)

    parts = _runs(ids, parallel if len(ids) >= PARALLEL_MIN_INSTRUMENTS else 1)
    up, *chunks = await asyncio.gather(availability(), *(figures(p) for p in parts))
    rows = [row for chunk in chunks for row in chunk]  # runs in id order, each sorted by id
    for row in rows:
        row["up_s"] = None if up is None else up.get(row["instrument_id"], 0.0)
        row["outside_orgs"] = sorted(set(row["outside_orgs"]))  # orgs shared by several users
    return rows, max((hi_now - lo).total_seconds(), 0.0)


def _runs(ids: list[str], n: int) -> list[list[str]]:
    """``ids`` cut into ``n`` runs of consecutive ids, as even as can be."""
    size = max(-(-len(ids) // n), 1)
    return [ids[k:k + size] for k in range(0, len(ids), size)] or [[]]
