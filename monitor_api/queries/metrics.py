"""Per-instrument figures for a period, computed from usage sessions (docs/metrics.md).

One SQL statement returns one row per instrument; grouping by institution, category or
region happens in Python (``monitor_api.report``) because distinct outside users must be
counted across instruments, not added up.

The statement reads the period's sessions once (``session_sums``). A period's whole, final
months are read from the monthly rollup (``session_month``) and only the days before and
after them computed from the sessions, cut the same way (docs/metrics.md, "Monthly rollup").
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from psycopg import sql

from monitor_api.db import Connect, fetch_all
from monitor_api.evaluation import due_on_platform, on_platform_since
from monitor_api.queries.availability import StateFigures, state_figures
from monitor_api.queries.common import INSTITUTION_ROOTS, ROOTS_CTE, Where, tune_for_reports
from monitor_api.queries.session_month import MonthSplit, roll_up
from monitor_api.queries.session_sums import PAD, PADDED, consecutive, sums

_SELECTED = ROOTS_CTE + """
SELECT i.id, i.monitored_since, i.networked_on, i.accepted_on
FROM instrument i JOIN roots r ON r.id = i.institution_id WHERE {where}
ORDER BY i.id
"""

_HEAD = ROOTS_CTE.rstrip() + """, inst AS MATERIALIZED (
    -- heard: its latest sample; no-shows are counted only up to it (what was heard)
    SELECT i.id, i.name, i.institution_id, u.name AS institution_name, r.root AS root_id,
           r.region, i.category_code, i.value_rmb,
           (SELECT max(s.ts) FROM state_sample s WHERE s.instrument_id = i.id) AS heard
    FROM instrument i JOIN roots r ON r.id = i.institution_id
    JOIN institution u ON u.id = i.institution_id
    WHERE i.id = ANY(%(ids)s)
), users AS MATERIALIZED (
    SELECT u.id, u.approved, r.root AS root_id,
           coalesce(r.root, 'org:' || nullif(u.organisation, ''), 'user:' || u.id) AS org
    FROM platform_user u LEFT JOIN roots r ON r.id = u.institution_id
), bk AS MATERIALIZED (
    -- void bookings count as bookings and no-shows; their windows were released
    SELECT b.instrument_id, b.start_ts, b.end_ts, b.status = 'void' AS void
    FROM booking b
    WHERE b.instrument_id = ANY(%(ids)s) AND b.status IN ('approved', 'completed', 'void')
      AND b.start_ts < %(hi)s AND b.end_ts > %(lo)s - interval '31 days'
), windows AS MATERIALIZED (
    -- booking windows per instrument, as booked and widened by the grace period (the
    -- latter only for bookings starting in the period, which the no-show check counts)
    SELECT bk.instrument_id,
           range_agg(tstzrange(bk.start_ts, bk.end_ts)) FILTER (WHERE NOT bk.void)
               AS booked_mr,
           range_agg(tstzrange(bk.start_ts - %(grace)s, bk.end_ts + %(grace)s))
               FILTER (WHERE bk.start_ts >= %(lo)s AND NOT bk.void) AS wide_mr
    FROM bk GROUP BY bk.instrument_id
"""

_TAIL = """
), b_agg AS (
    SELECT bk.instrument_id,
           count(*) FILTER (WHERE bk.start_ts >= %(lo)s) AS bookings,
           count(*) FILTER (WHERE bk.start_ts >= %(lo)s AND (bk.void
               OR bk.end_ts + %(grace)s <= least(now(), coalesce(inst.heard, '-infinity'))
                  AND NOT coalesce(s.raw_mr && tstzrange(bk.start_ts - %(grace)s,
                                                         bk.end_ts + %(grace)s), false)))
               AS no_shows
    FROM bk JOIN inst ON inst.id = bk.instrument_id
    LEFT JOIN s_sums s ON s.instrument_id = bk.instrument_id
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
SELECT inst.id AS instrument_id, inst.name, inst.institution_id, inst.institution_name,
       inst.root_id, inst.region, inst.category_code, inst.value_rmb::float8 AS value_rmb,
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
       coalesce(v.ratings, 0) AS ratings, coalesce(v.rating_sum, 0) AS rating_sum,
       s.instrument_id IS NOT NULL AS summed
FROM inst
LEFT JOIN windows w ON w.instrument_id = inst.id
LEFT JOIN s_sums s ON s.instrument_id = inst.id
LEFT JOIN b_agg ba ON ba.instrument_id = inst.id
LEFT JOIN svc v ON v.instrument_id = inst.id
ORDER BY inst.id
"""

_PIECES = """
    -- the period as one piece, or the parts of it outside its whole months (each computed
    -- like a month); either way keeping only the running intervals booking windows touch.
    -- A piece ends now at the latest: a session that has just ended is still cooling down.
    SELECT i.id, p.month, p.lo, least(p.hi, now()) AS hi, p.lo - %(pad)s AS lo_pad,
           p.hi + %(pad)s AS hi_pad,
           make_interval(secs => i.warmup_s) AS warm, make_interval(secs => i.cooldown_s) AS cool,
           w.booked_mr, w.wide_mr
    FROM instrument i LEFT JOIN windows w ON w.instrument_id = i.id
    CROSS JOIN unnest(%(part_months)s::date[], %(part_lo)s::timestamptz[],
                      %(part_hi)s::timestamptz[]) AS p (month, lo, hi)
    WHERE i.id = ANY(%(ids)s)
"""

_PER_INSTRUMENT = _HEAD + sums(_PIECES, ranges=PADDED) + """
), s_sums AS (
    SELECT * FROM piece_sums
""" + _TAIL

# The period's whole months from the rollup, and the parts before and after them (keyed by
# their first day) from the sessions. A session crossing the start of a month or part is
# counted in both: the sum subtracts it from every one but the first.
_STORED_SUMS = """
), s_sums AS (
    -- months and parts do not overlap, nor do their running intervals: booked time adds up
    SELECT m.instrument_id,
           sum(m.sessions - CASE WHEN m.month > %(first_month)s THEN m.carried ELSE 0 END)
               ::bigint AS sessions,
           sum(m.effective_s) AS effective_s, sum(m.running_s) AS running_s,
           sum(m.external_s) AS external_s,
           sum(m.uncertified_sessions
               - CASE WHEN m.month > %(first_month)s THEN m.uncertified_carried ELSE 0 END)
               ::bigint AS uncertified_sessions,
           sum(m.uncertified_s) AS uncertified_s, sum(m.unattributed_s) AS unattributed_s,
           array_cat_agg(m.outside_users) AS outside_users,
           array_cat_agg(m.outside_orgs) AS outside_orgs,
           range_agg(m.running_mr * w.booked_mr) FILTER (WHERE w.booked_mr IS NOT NULL)
               AS used_mr,
           range_agg(m.raw_mr * w.wide_mr) FILTER (WHERE w.wide_mr IS NOT NULL) AS raw_mr
    FROM (
        SELECT instrument_id, month, true AS stored, sessions, carried, effective_s,
               running_s, external_s, uncertified_sessions, uncertified_carried,
               uncertified_s, unattributed_s, outside_users, outside_orgs, running_mr, raw_mr
        FROM session_month
        WHERE instrument_id = ANY(%(ids)s) AND month = ANY(%(months)s::date[])
          AND grace = %(grace)s
        UNION ALL
        SELECT instrument_id, month, false, sessions, carried, effective_s, running_s,
               external_s, uncertified_sessions, uncertified_carried, uncertified_s,
               unattributed_s, coalesce(outside_users, '{}'), coalesce(outside_orgs, '{}'),
               coalesce(used_mr, '{}'), coalesce(raw_mr, '{}')
        FROM piece_sums
    ) m LEFT JOIN windows w ON w.instrument_id = m.instrument_id
    GROUP BY m.instrument_id
    -- else not summed: see per_instrument
    HAVING count(*) FILTER (WHERE m.stored) = cardinality(%(months)s::date[])
"""
_PER_INSTRUMENT_STORED = [
    _HEAD + sums(_PIECES, ranges=[(f"%(part{k}_lo_pad)s", f"%(part{k}_hi_pad)s")
                                        for k in range(parts)]) + _STORED_SUMS + _TAIL
    for parts in range(3)
]
"""By the number of parts outside the whole months: none, before or after them, or both."""

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
    working_days: int,
    with_availability: bool = True,
    parallel: int = 1,
) -> list[dict[str, Any]]:
    """Rows of raw sums per instrument (in id order), each with ``on_s``, the seconds of the
    period gone while the instrument was on the platform (``on_platform_since``; registration
    deadlines ``working_days`` after acceptance): what its availability is a share of.

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
    async with connect() as conn:
        roots = await fetch_all(conn, INSTITUTION_ROOTS)
        selected = await fetch_all(conn, sql.SQL(_SELECTED).format(where=where.sql()),
                                   where.params)
    ids = [r["id"] for r in selected]
    now = datetime.now(lo.tzinfo)
    hi_now = min(hi, now)
    on_s = {}
    for r in selected:
        since = on_platform_since(r["monitored_since"], due_on_platform(
            r["networked_on"], r["accepted_on"], working_days))
        on_s[r["id"]] = max((hi_now - max(lo, since or lo)).total_seconds(), 0.0)
    params = {"inst_ids": [r["id"] for r in roots], "inst_roots": [r["root"] for r in roots],
              "lo": lo, "hi": hi, "lo_pad": lo - PAD, "hi_pad": hi + PAD, "grace": grace,
              "pad": PAD, "part_months": [None], "part_lo": [lo], "part_hi": [hi]}
    split = MonthSplit.of(lo, hi, now=now)
    rolled = await roll_up(connect, ids=ids, split=split, grace=grace, parallel=parallel)
    raw = [i for i in ids if i not in rolled]

    async def figures(statement: str, part: list[str], **extra: Any) -> list[dict[str, Any]]:
        async with connect() as conn:
            await tune_for_reports(conn)
            return await fetch_all(conn, statement, {**params, "ids": part, **extra},
                                   prepare=False)

    async def availability() -> dict[str, StateFigures] | None:
        if not with_availability:
            return None
        if hi_now <= lo:
            return {}
        return await state_figures(connect, ids=ids, lo=lo, hi=hi_now, timeout=timeout,
                                   parallel=parallel)

    stored = sorted(rolled)
    runs = [figures(_PER_INSTRUMENT, part) for part in consecutive(raw, _split(raw, parallel))
            if part or not stored]
    runs += [figures(_PER_INSTRUMENT_STORED[len(split.parts)], part, **split.params())
             for part in consecutive(stored, _split(stored, parallel)) if part]
    up, *chunks = await asyncio.gather(availability(), *runs)
    by_id = {row["instrument_id"]: row for chunk in chunks for row in chunk}
    # the ingest may have deleted months of an instrument since roll_up found them all
    if lost := [i for i in stored if not by_id[i]["summed"]]:
        by_id.update((row["instrument_id"], row) for row in await figures(_PER_INSTRUMENT, lost))
    rows = sorted(by_id.values(), key=itemgetter("instrument_id"))
    for row in rows:
        del row["summed"]
        state = None if up is None else up.get(row["instrument_id"], StateFigures())
        row["up_s"] = None if state is None else state.up_s
        row["on_s"] = on_s[row["instrument_id"]]
        row["faults"] = None if state is None else state.faults
        # users active in several months, orgs shared by several users
        row["outside_users"] = sorted(set(row["outside_users"]))
        row["outside_orgs"] = sorted(set(row["outside_orgs"]))
    return rows


def _split(ids: list[str], parallel: int) -> int:
    """Statements to split ``ids`` into: one for a few instruments."""
    return parallel if len(ids) >= PARALLEL_MIN_INSTRUMENTS else 1
