"""The monthly rollup of usage (``session_month``): each instrument's sums per final calendar
month, stored once, so a report over a year reads twelve rows instead of its sessions
(docs/metrics.md, "Monthly rollup").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from instrushare.db import SHARE_INSTRUMENTS, SHARE_ROLLUPS
from monitor_api.db import Connect, fetch_all
from monitor_api.queries.common import INSTITUTION_ROOTS, tune_for_reports
from monitor_api.queries.session_sums import PAD, PADDED, consecutive, sums
from monitor_api.report import SHANGHAI, month_start

_MONTH_PIECES = """
    -- the months not rolled up yet that are final (docs/metrics.md, "Monthly rollup"); every
    -- running interval and session is kept, as if the whole time line were booked
    SELECT i.id, m.month, m.lo, m.hi, m.lo - %(pad)s AS lo_pad, m.hi + %(pad)s AS hi_pad,
           make_interval(secs => i.warmup_s) AS warm, make_interval(secs => i.cooldown_s) AS cool,
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
                      WHERE sm.instrument_id = i.id AND sm.month = m.month
                        AND sm.grace = %(grace)s)
"""

_FILL_MONTHS = """
WITH months AS (
    SELECT d::date AS month, d::timestamp AT TIME ZONE 'Asia/Shanghai' AS lo,
           (d + interval '1 month')::timestamp AT TIME ZONE 'Asia/Shanghai' AS hi
    FROM unnest(%(months)s::date[]) d
""" + sums(_MONTH_PIECES, ranges=PADDED) + """
)
INSERT INTO session_month (instrument_id, month, grace, sessions, carried, effective_s,
                           running_s, external_s, uncertified_sessions, uncertified_carried,
                           uncertified_s, unattributed_s, outside_users, outside_orgs,
                           running_mr, raw_mr)
SELECT p.id, p.month, %(grace)s, coalesce(s.sessions, 0), coalesce(s.carried, 0),
       coalesce(s.effective_s, 0), coalesce(s.running_s, 0), coalesce(s.external_s, 0),
       coalesce(s.uncertified_sessions, 0), coalesce(s.uncertified_carried, 0),
       coalesce(s.uncertified_s, 0), coalesce(s.unattributed_s, 0),
       coalesce(s.outside_users, '{}'), coalesce(s.outside_orgs, '{}'),
       coalesce(s.used_mr, '{}'), coalesce(s.raw_mr, '{}')
FROM pieces p LEFT JOIN piece_sums s ON s.instrument_id = p.id AND s.month = p.month
ORDER BY p.id, p.month  -- one order for every writer: concurrent reports cannot deadlock
ON CONFLICT DO NOTHING
"""

ROLLUP_INSTRUMENTS_PER_TRANSACTION = 200
"""Instruments whose months one transaction rolls up; it holds them against the ingest for
that long (half a second for a year of 200 instruments with 250 sessions each)."""

_COMPLETE = """
SELECT instrument_id FROM session_month
WHERE instrument_id = ANY(%(ids)s) AND month = ANY(%(months)s::date[]) AND grace = %(grace)s
GROUP BY instrument_id
HAVING count(*) = cardinality(%(months)s::date[])
"""


async def roll_up(
    connect: Connect, *, ids: list[str], split: MonthSplit, grace: timedelta, parallel: int = 1,
    per_transaction: int = ROLLUP_INSTRUMENTS_PER_TRANSACTION,
) -> set[str]:
    """Roll up the final ones of ``split``'s months not rolled up yet for the no-show
    ``grace`` (which also widens the windows that attribute sessions to bookings); return the
    instruments with every one of those months rolled up. Each transaction holds
    ``per_transaction`` instruments against the ingest while it runs."""
    months = split.months

    async def complete(among: list[str]) -> set[str]:
        async with connect() as conn:
            rows = await fetch_all(conn, _COMPLETE,
                                   {"ids": among, "months": months, "grace": grace})
        return {r["instrument_id"] for r in rows}

    slots = asyncio.Semaphore(parallel)

    async def fill(part: list[str]) -> None:
        async with slots, connect() as conn:
            await tune_for_reports(conn)
            await conn.execute(SHARE_ROLLUPS)  # until the rows are committed
            await conn.execute(SHARE_INSTRUMENTS, (part,))
            roots = await fetch_all(conn, INSTITUTION_ROOTS)
            await conn.execute(_FILL_MONTHS, {
                "inst_ids": [r["id"] for r in roots], "inst_roots": [r["root"] for r in roots],
                "lo_pad": split.lo - PAD, "hi_pad": split.hi + PAD, "pad": PAD, "ids": part,
                "months": months, "grace": grace}, prepare=False)

    if not months:
        return set()
    done = await complete(ids)
    missing = [i for i in ids if i not in done]
    if not missing:
        return done
    chunks = -(-len(missing) // per_transaction)
    await asyncio.gather(*(fill(part) for part in consecutive(missing, chunks)))
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
        """The parameters a period's statement over stored months (``metrics``) takes besides
        the period's."""
        parts = self.parts
        return {"months": self.months,
                "first_month": min([self.months[0], *(first for first, _, _ in parts)]),
                "pad": PAD, "part_months": [p[0] for p in parts],
                "part_lo": [p[1] for p in parts], "part_hi": [p[2] for p in parts],
                **{f"part{k}_lo_pad": p[1] - PAD for k, p in enumerate(parts)},
                **{f"part{k}_hi_pad": p[2] + PAD for k, p in enumerate(parts)}}
