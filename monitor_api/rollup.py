"""Keeps the rollups filled in the background: availability (``state_day``, ``state_month``)
and usage (``session_month``).

A report stores the days and months it computes, but the first report over a year pays for
all of them: 44 s for 3,000 instruments, where the same report that finds them stored needs
0.1 s for availability. The filler computes the last whole months for every instrument ahead
of that report, one transaction at a time so as to leave the database to other work, and
again every ``rollup_interval_s``, which finds little left to do. Several API processes may
run it: rows are inserted with ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from monitor_api.db import Pool, fetch_all
from monitor_api.queries.availability import state_figures
from monitor_api.queries.session_month import MonthSplit, roll_up
from monitor_api.report import SHANGHAI, period_bounds

USAGE_INSTRUMENTS_PER_TRANSACTION = 50
"""Usage months hold their instruments against the ingest while rolled up (late data can
reach them). For a year of 250 sessions per instrument a transaction of 50 took 0.18-0.24 s,
one of a report's 200 0.53 s, so a batch of the ingest waits less for the filler, which
nobody waits for (the whole pass over 3,000 instruments: 10.9 s against 7.8 s)."""


def whole_months_before(now: datetime, months: int) -> tuple[date, date]:
    """First and last day of the ``months`` calendar months before ``now``'s (Asia/Shanghai)."""
    this_month = now.astimezone(SHANGHAI).date().replace(day=1)
    back = this_month.year * 12 + this_month.month - 1 - months
    return date(back // 12, back % 12 + 1, 1), this_month - timedelta(days=1)


async def fill_rollups(
    pool: Pool, *, timeout: timedelta, months: int, now: datetime, grace: timedelta
) -> int:
    """Compute and store availability and usage of every instrument over the ``months`` whole
    months before ``now`` (usage of the final ones, for the reports' no-show ``grace``);
    returns how many instruments were covered."""
    lo, hi = period_bounds(*whole_months_before(now, months))
    split = MonthSplit.of(lo, hi, now=now)
    async with pool.connection() as conn:
        ids = [r["id"] for r in await fetch_all(conn, "SELECT id FROM instrument ORDER BY id")]
    await state_figures(pool.connection, ids=ids, lo=lo, hi=hi, timeout=timeout)
    await roll_up(pool.connection, ids=ids, split=split, grace=grace,
                  per_transaction=USAGE_INSTRUMENTS_PER_TRANSACTION)
    return len(ids)
