"""Per-instrument figures for a period, computed from usage sessions (docs/metrics.md).

One SQL statement returns one row per instrument; grouping by institution, category or
region happens in Python (``monitor_api.report``) because distinct outside users must be
counted across instruments, not added up.

The statement reads the period's sessions once. Each session's clipped interval is
computed once (``OFFSET 0`` keeps PostgreSQL from inlining the expressions into every
aggregate that uses them), and the sums are taken per instrument and user, which also yields
the distinct outside users. Booked time and no-shows need interval unions; only the few
sessions that touch a booking window take part in them, which cannot change either figure.

The same pipeline, cut into calendar months instead of the period, fills the monthly rollup
(``session_month``). A period's whole, final months are then read from it and only the days
before and after them computed from the sessions, cut the same way (docs/metrics.md,
"Monthly rollup").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from operator import itemgetter
from typing import Any

from psycopg import sql

from instrushare.db import SHARE_INSTRUMENTS
from monitor_api.db import Connect, fetch_all
from monitor_api.queries.availability import StateFigures, state_figures
from monitor_api.queries.common import Where, tune_for_reports
from monitor_api.report import SHANGHAI, month_start

ROOTS_CTE = """
WITH RECURSIVE roots(id, root, region) AS (
    SELECT id, id, region FROM institution WHERE parent_id IS NULL
    UNION ALL
    SELECT c.id, r.root, CASE WHEN c.region <> '' THEN c.region ELSE r.region END
    FROM institution c JOIN roots r ON c.parent_id = r.id
)
"""
"""Every institution with its top-level one and its region (its own, else its parent's), in
one pass (``institution_root()`` per row costs a recursive query each)."""

_ROOTS = ROOTS_CTE + "SELECT id, root FROM roots"

_SELECTED = ROOTS_CTE + """
SELECT i.id FROM instrument i JOIN roots r ON r.id = i.institution_id WHERE {where}
ORDER BY i.id
"""

_HEAD = ROOTS_CTE.rstrip() + """, inst AS MATERIALIZED (
    -- heard: its latest sample; no-shows are counted only up to it (what was heard)
    SELECT i.id, i.name, i.institution_id, r.root AS root_id, r.region, i.category_code,
           i.value_rmb,
           (SELECT max(s.ts) FROM state_sample s WHERE s.instrument_id = i.id) AS heard
    FROM instrument i JOIN roots r ON r.id = i.institution_id
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

_SUMS_FROM_SESSIONS = """
), pieces AS MATERIALIZED (
{pieces}
), clipped AS (
    -- noise filter, then margins, then clipping to the piece; an open session ends at its
    -- last running sample. Sessions up to a day beyond the period feed the no-show check.
    -- [a, b) is the effective time (margins added), [ra, rb) the running time alone.
    SELECT s.instrument_id, p.month, s.user_id, s.start_ts, s.end_ts, p.booked_mr, p.wide_mr,
           greatest(s.start_ts - p.warm, p.lo) AS a, least(s.end_ts + p.cool, p.hi) AS b,
           greatest(s.start_ts, p.lo) AS ra, least(s.end_ts, p.hi) AS rb,
           s.start_ts - p.warm < p.lo AS carried
    FROM (
        SELECT instrument_id, user_id, start_ts, coalesce(end_ts, last_ts) AS end_ts
        FROM usage_session
        WHERE instrument_id = ANY(%(ids)s) AND ({overlapping})
    ) s JOIN pieces p
        ON p.id = s.instrument_id AND s.start_ts < p.hi_pad AND s.end_ts > p.lo_pad
    WHERE s.end_ts - s.start_ts >= p.min_len
    OFFSET 0
), sess AS (
    SELECT c.instrument_id, c.month, c.user_id, c.carried,
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
    SELECT instrument_id, month, user_id,
           count(*) FILTER (WHERE secs > 0) AS sessions,
           count(*) FILTER (WHERE secs > 0 AND carried) AS carried, sum(secs) AS used_s,
           sum(run_secs) AS run_s,
           count(*) FILTER (WHERE secs > 0 AND uncertified) AS uncertified_sessions,
           count(*) FILTER (WHERE secs > 0 AND uncertified AND carried) AS uncertified_carried,
           coalesce(sum(secs) FILTER (WHERE uncertified), 0) AS uncertified_s,
           multirange_union_agg(used_hit) AS used_mr, multirange_union_agg(raw_hit) AS raw_mr
    FROM sess
    GROUP BY instrument_id, month, user_id
), piece_sums AS (
    -- institution roots as parameters, not CTEs: the planner then knows the tables' sizes
    -- and hashes the small sides
    SELECT p.instrument_id, p.month,
           sum(p.sessions)::bigint AS sessions, sum(p.carried)::bigint AS carried,
           sum(p.used_s) AS effective_s,
           sum(p.run_s) AS running_s,
           coalesce(sum(p.used_s) FILTER (WHERE o.outside), 0) AS external_s,
           sum(p.uncertified_sessions)::bigint AS uncertified_sessions,
           sum(p.uncertified_carried)::bigint AS uncertified_carried,
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
    GROUP BY p.instrument_id, p.month
"""

_OVERLAPPING = """
          start_ts < {hi} AND coalesce(end_ts, last_ts) > {lo}
          AND (end_ts > {lo} OR end_ts IS NULL)  -- implied; usage_session_end_idx
"""


def _sums(pieces: str, *, ranges: list[tuple[str, str]]) -> str:
    """``_SUMS_FROM_SESSIONS`` over ``pieces``, reading the sessions that overlap any of
    ``ranges`` (SQL for their bounds: the pieces' with their pads)."""
    overlapping = " OR ".join(_OVERLAPPING.format(lo=lo, hi=hi) for lo, hi in ranges)
    return (_SUMS_FROM_SESSIONS.replace("{pieces}", pieces)
            .replace("{overlapping}", overlapping or "false"))


_PADDED = [("%(lo_pad)s", "%(hi_pad)s")]
"""The one range of a period or of the months being rolled up."""

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
    -- like a month); either way keeping only the running intervals booking windows touch
    SELECT i.id, p.month, p.lo, p.hi, p.lo - %(pad)s AS lo_pad, p.hi + %(pad)s AS hi_pad,
           make_interval(secs => i.warmup_s) AS warm, make_interval(secs => i.cooldown_s) AS cool,
           make_interval(secs => i.min_session_s) AS min_len, w.booked_mr, w.wide_mr
    FROM instrument i LEFT JOIN windows w ON w.instrument_id = i.id
    CROSS JOIN unnest(%(part_months)s::date[], %(part_lo)s::timestamptz[],
                      %(part_hi)s::timestamptz[]) AS p (month, lo, hi)
    WHERE i.id = ANY(%(ids)s)
"""

_MONTH_PIECES = """
    -- the months not rolled up yet that are final (docs/metrics.md, "Monthly rollup"); every
    -- running interval and session is kept, as if the whole time line were booked
    SELECT i.id, m.month, m.lo, m.hi, m.lo - %(pad)s AS lo_pad, m.hi + %(pad)s AS hi_pad,
           make_interval(secs => i.warmup_s) AS warm, make_interval(secs => i.cooldown_s) AS cool,
           make_interval(secs => i.min_session_s) AS min_len,
           '{(,)}'::tstzmultirange AS booked_mr, '{(,)}'::tstzmultirange AS wide_mr
    FROM (
        SELECT i.id, i.warmup_s, i.cooldown_s, i.min_session_s,
               (SELECT max(n.ts) FROM state_sample n WHERE n.instrument_id = i.id) AS last_ts,
               (SELECT min(u.start_ts) FROM usage_session u
                WHERE u.instrument_id = i.id AND u.end_ts IS NULL) AS open_since
        FROM instrument i
        WHERE i.id = ANY(%(ids)s)
        OFFSET 0
    ) i CROSS JOIN months m
    WHERE m.hi + %(pad)s <= i.last_ts AND m.hi + %(pad)s <= now()
      AND (i.open_since IS NULL OR i.open_since >= m.hi + %(pad)s)
      AND NOT EXISTS (SELECT 1 FROM session_month sm
                      WHERE sm.instrument_id = i.id AND sm.month = m.month)
"""

_PER_INSTRUMENT = _HEAD + _sums(_PIECES, ranges=_PADDED) + """
), s_sums AS (
    SELECT * FROM piece_sums
""" + _TAIL

_FILL_MONTHS = """
WITH months AS (
    SELECT d::date AS month, d::timestamp AT TIME ZONE 'Asia/Shanghai' AS lo,
           (d + interval '1 month')::timestamp AT TIME ZONE 'Asia/Shanghai' AS hi
    FROM unnest(%(months)s::date[]) d
""" + _sums(_MONTH_PIECES, ranges=_PADDED) + """
)
INSERT INTO session_month (instrument_id, month, sessions, carried, effective_s, running_s,
                           external_s, uncertified_sessions, uncertified_carried, uncertified_s,
                           unattributed_s, outside_users, outside_orgs, running_mr, raw_mr)
SELECT p.id, p.month, coalesce(s.sessions, 0), coalesce(s.carried, 0),
       coalesce(s.effective_s, 0), coalesce(s.running_s, 0), coalesce(s.external_s, 0),
       coalesce(s.uncertified_sessions, 0), coalesce(s.uncertified_carried, 0),
       coalesce(s.uncertified_s, 0), coalesce(s.unattributed_s, 0),
       coalesce(s.outside_users, '{}'), coalesce(s.outside_orgs, '{}'),
       coalesce(s.used_mr, '{}'), coalesce(s.raw_mr, '{}')
FROM pieces p LEFT JOIN piece_sums s ON s.instrument_id = p.id AND s.month = p.month
ORDER BY p.id, p.month  -- one order for every writer: concurrent reports cannot deadlock
ON CONFLICT DO NOTHING
"""

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
    _HEAD + _sums(_PIECES, ranges=[(f"%(part{k}_lo_pad)s", f"%(part{k}_hi_pad)s")
                                        for k in range(parts)]) + _STORED_SUMS + _TAIL
    for parts in range(3)
]
"""By the number of parts outside the whole months: none, before or after them, or both."""

PARALLEL_MIN_INSTRUMENTS = 500
"""Fewer instruments than this run as one statement: splitting would cost more than it saves."""

ROLLUP_INSTRUMENTS_PER_TRANSACTION = 200
"""Instruments whose months one transaction rolls up; it holds them against the ingest for
that long (half a second for a year of 200 instruments with 250 sessions each)."""

PAD = timedelta(days=1)
"""Warm-up and cool-down margins and the no-show grace are at most a day."""

_COMPLETE = """
SELECT instrument_id FROM session_month
WHERE instrument_id = ANY(%(ids)s) AND month = ANY(%(months)s::date[])
GROUP BY instrument_id
HAVING count(*) = cardinality(%(months)s::date[])
"""


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
    async with connect() as conn:
        roots = await fetch_all(conn, _ROOTS)
        ids = [
            r["id"] for r in await fetch_all(
                conn, sql.SQL(_SELECTED).format(where=where.sql()), where.params
            )
        ]
    now = datetime.now(lo.tzinfo)
    hi_now = min(hi, now)
    params = {"inst_ids": [r["id"] for r in roots], "inst_roots": [r["root"] for r in roots],
              "lo": lo, "hi": hi, "lo_pad": lo - PAD, "hi_pad": hi + PAD, "grace": grace,
              "pad": PAD, "part_months": [None], "part_lo": [lo], "part_hi": [hi]}
    split = MonthSplit.of(lo, hi, now=now)
    rolled = await roll_up(connect, ids=ids, split=split, parallel=parallel)
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
    runs = [figures(_PER_INSTRUMENT, part) for part in _runs(raw, _split(raw, parallel))
            if part or not stored]
    runs += [figures(_PER_INSTRUMENT_STORED[len(split.parts)], part, **split.params())
             for part in _runs(stored, _split(stored, parallel)) if part]
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
        row["faults"] = None if state is None else state.faults
        # users active in several months, orgs shared by several users
        row["outside_users"] = sorted(set(row["outside_users"]))
        row["outside_orgs"] = sorted(set(row["outside_orgs"]))
    return rows, max((hi_now - lo).total_seconds(), 0.0)


async def roll_up(
    connect: Connect, *, ids: list[str], split: MonthSplit, parallel: int = 1,
    per_transaction: int = ROLLUP_INSTRUMENTS_PER_TRANSACTION,
) -> set[str]:
    """Roll up the final ones of ``split``'s months not rolled up yet; return the instruments
    with every one of those months rolled up. Each transaction holds ``per_transaction``
    instruments against the ingest while it runs."""
    months = split.months

    async def complete(among: list[str]) -> set[str]:
        async with connect() as conn:
            rows = await fetch_all(conn, _COMPLETE, {"ids": among, "months": months})
        return {r["instrument_id"] for r in rows}

    slots = asyncio.Semaphore(parallel)

    async def fill(part: list[str]) -> None:
        async with slots, connect() as conn:
            await tune_for_reports(conn)
            await conn.execute(SHARE_INSTRUMENTS, (part,))  # until the rows are committed
            await conn.execute(_FILL_MONTHS, {
                "inst_ids": [r["id"] for r in roots], "inst_roots": [r["root"] for r in roots],
                "lo_pad": split.lo - PAD, "hi_pad": split.hi + PAD, "pad": PAD, "ids": part,
                "months": months}, prepare=False)

    if not months:
        return set()
    done = await complete(ids)
    missing = [i for i in ids if i not in done]
    if not missing:
        return done
    async with connect() as conn:
        roots = await fetch_all(conn, _ROOTS)
    chunks = -(-len(missing) // per_transaction)
    await asyncio.gather(*(fill(part) for part in _runs(missing, chunks)))
    return done | await complete(missing)


@dataclass(frozen=True, slots=True)
class MonthSplit:
    """A period [lo, hi) cut at month starts in Asia/Shanghai: the whole months inside it
    that can be final (ended a day ago), spanning [``lo``, ``hi``), and the parts of the
    period before and after them."""

    months: list[date]
    lo: datetime
    hi: datetime
    parts: list[tuple[date, datetime, datetime]]
    """(first day, start, end) of the part before the months and of the part after them."""

    @classmethod
    def of(cls, lo: datetime, hi: datetime, *, now: datetime) -> MonthSplit:
        month = month_start(lo.astimezone(SHANGHAI), up=True)
        months_lo = month
        months: list[date] = []
        end = min(hi, now - PAD)
        while (following := month_start(month + timedelta(days=32))) <= end:
            months.append(month.date())
            month = following
        if not months:
            return cls([], lo, lo, [])
        parts = []
        if lo < months_lo:
            parts.append((lo.astimezone(SHANGHAI).date(), lo, months_lo))
        if month < hi:
            parts.append((month.date(), month, hi))
        return cls(months, months_lo, month, parts)

    def params(self) -> dict[str, Any]:
        """The parameters ``_PER_INSTRUMENT_STORED`` takes besides the period's."""
        parts = self.parts
        return {"months": self.months,
                "first_month": min([self.months[0], *(first for first, _, _ in parts)]),
                "pad": PAD, "part_months": [p[0] for p in parts],
                "part_lo": [p[1] for p in parts], "part_hi": [p[2] for p in parts],
                **{f"part{k}_lo_pad": p[1] - PAD for k, p in enumerate(parts)},
                **{f"part{k}_hi_pad": p[2] + PAD for k, p in enumerate(parts)}}


def _split(ids: list[str], parallel: int) -> int:
    """Statements to split ``ids`` into: one for a few instruments."""
    return parallel if len(ids) >= PARALLEL_MIN_INSTRUMENTS else 1


def _runs(ids: list[str], n: int) -> list[list[str]]:
    """``ids`` cut into ``n`` runs of consecutive ids, as even as can be."""
    size = max(-(-len(ids) // n), 1)
    return [ids[k:k + size] for k in range(0, len(ids), size)] or [[]]
