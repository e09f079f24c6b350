"""Seconds each instrument was up (neither offline nor in fault) in a period, and how many
faults began in it, from the per-day rollup ``state_day`` where it can (docs/metrics.md,
"Availability" and "Faults and running state")."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from instrushare.db import SHARE_INSTRUMENTS
from instrushare.protocol import MAX_PAST_AGE
from monitor_api.db import Connect, fetch_all
from monitor_api.queries.common import tune_for_reports
from monitor_api.report import month_start

# Seconds up and fault onsets per instrument in [lo, hi), from two rollup levels
# (Asia/Shanghai). A whole
# calendar month inside the period comes from state_month when stored there. Every other day
# (days outside whole months, and all days of a whole month an instrument has no month row
# for) goes day by day: a whole day comes from state_day when stored there; any other day is
# computed from the samples (state_time), and a whole day that is final (a later sample
# exists, so appends in time order cannot change it) is stored for the next report. A month
# whose days are all final (stored or computed now) is stored too, as the sums of its days:
# from the figures read and computed here, since sibling data-modifying CTEs do not see each
# other's rows. Work starts from instruments x whole months, anti-joined to state_month; only
# the missing pairs are expanded to days.
_STATE_FIGURES = """
WITH p AS (
    SELECT %(lo)s::timestamptz AS lo, %(hi)s::timestamptz AS hi, %(timeout)s::interval AS timeout
), days AS MATERIALIZED (
    SELECT d.day::date AS day, b.d1 - b.d0 AS length, b.d0 >= lo AND b.d1 <= hi AS whole,
           greatest(b.d0, lo) AS lo, least(b.d1, hi) AS hi, b.d1,
           date_trunc('month', d.day)::date AS month,
           date_trunc('month', d.day) AT TIME ZONE 'Asia/Shanghai' >= lo
           AND (date_trunc('month', d.day) + interval '1 month') AT TIME ZONE 'Asia/Shanghai'
               <= hi AS in_month  -- the day lies in a whole month of the period
    FROM p
    CROSS JOIN generate_series(date_trunc('day', lo AT TIME ZONE 'Asia/Shanghai'),
                               (hi - interval '1 microsecond') AT TIME ZONE 'Asia/Shanghai',
                               interval '1 day') d (day)  -- local midnights
    CROSS JOIN LATERAL (
        SELECT d.day AT TIME ZONE 'Asia/Shanghai' AS d0,
               (d.day + interval '1 day') AT TIME ZONE 'Asia/Shanghai' AS d1
    ) b
), months AS MATERIALIZED (
    SELECT DISTINCT month FROM days WHERE in_month
), loose AS MATERIALIZED (  -- days outside whole months
    SELECT * FROM days WHERE NOT in_month
), ids AS MATERIALIZED (
    -- instruments with a sample before the period's end: the others were offline all along
    -- (up 0, no faults), and their days, never final, would be computed on every report
    SELECT i.id FROM unnest(%(ids)s::text[]) i (id)
    WHERE EXISTS (SELECT 1 FROM state_sample s
                  WHERE s.instrument_id = i.id AND s.ts < (SELECT hi FROM p))
), stored_months AS MATERIALIZED (
    SELECT sm.instrument_id AS id, sm.month, sm.up_s, sm.faults
    FROM state_month sm
    WHERE sm.instrument_id = ANY(%(ids)s) AND sm.timeout = (SELECT timeout FROM p)
      AND sm.month IN (SELECT month FROM months)
), missing_months AS MATERIALIZED (
    SELECT ids.id, months.month
    FROM ids CROSS JOIN months
    WHERE NOT EXISTS (SELECT 1 FROM stored_months s
                      WHERE s.id = ids.id AND s.month = months.month)
), month_days AS MATERIALIZED (  -- stored days of those months: one range read per pair
    SELECT mm.id, sd.day, sd.up_s, sd.fault_s, sd.faults
    FROM missing_months mm CROSS JOIN LATERAL (
        SELECT sd.day, sd.up_s, sd.fault_s, sd.faults FROM state_day sd
        WHERE sd.instrument_id = mm.id AND sd.timeout = (SELECT timeout FROM p)
          AND sd.day >= mm.month AND sd.day < (mm.month + interval '1 month')::date
        OFFSET 0
    ) sd
), stored_loose AS MATERIALIZED (  -- stored whole days outside whole months, per instrument
    SELECT sd.instrument_id AS id, sum(sd.up_s) AS up_s, sum(sd.faults) AS faults,
           count(*) AS n
    FROM (SELECT min(day) AS d0, max(day) AS d1 FROM loose WHERE whole  -- before and after
          GROUP BY day < (SELECT coalesce(min(month), 'infinity') FROM months)) r
    CROSS JOIN LATERAL (
        SELECT sd.instrument_id, sd.up_s, sd.faults FROM state_day sd
        WHERE sd.instrument_id = ANY(%(ids)s) AND sd.timeout = (SELECT timeout FROM p)
          AND sd.day >= r.d0 AND sd.day <= r.d1
        OFFSET 0
    ) sd
    GROUP BY sd.instrument_id
), daily AS MATERIALIZED (  -- the (instrument, day) pairs that go day by day
    SELECT i.id, loose.*, NULL::float8 AS stored_up_s, NULL::float8 AS stored_fault_s,
           NULL::integer AS stored_faults
    FROM ids i
    LEFT JOIN stored_loose s ON s.id = i.id
    CROSS JOIN loose
    WHERE NOT loose.whole  -- only instruments short of some whole day look up which
       OR coalesce(s.n, 0) < (SELECT count(*) FROM loose WHERE whole)
          -- OFFSET 0 keeps this a key lookup per pair: otherwise the planner, misjudging
          -- how many pairs there are, may hash all of state_day (1.1 million rows after a
          -- year of 3,000 instruments: a second) to answer a one-day report
          AND NOT EXISTS (SELECT 1 FROM state_day sd
                          WHERE sd.instrument_id = i.id AND sd.day = loose.day
                            AND sd.timeout = (SELECT timeout FROM p)
                          OFFSET 0)
    UNION ALL
    SELECT mm.id, days.*, md.up_s, md.fault_s, md.faults
    FROM missing_months mm
    JOIN days ON days.month = mm.month
    LEFT JOIN month_days md ON md.id = mm.id AND md.day = days.day
), computed AS MATERIALIZED (
    SELECT m.id, m.day, m.month, m.in_month, m.length, t.up_s, t.fault_s,
           fault_onsets(m.id, m.lo, m.hi, (SELECT timeout FROM p)) AS faults,
           m.whole AND m.d1 <= now()
           AND EXISTS (SELECT 1 FROM state_sample n
                       WHERE n.instrument_id = m.id AND n.ts >= m.d1) AS final
    FROM daily m CROSS JOIN LATERAL state_time(m.id, m.lo, m.hi, (SELECT timeout FROM p)) t
    WHERE m.stored_up_s IS NULL
), saved AS (
    INSERT INTO state_day (instrument_id, day, timeout, up_s, fault_s, offline_s, faults)
    SELECT id, day, (SELECT timeout FROM p), up_s, fault_s,
           extract(epoch FROM length)::float8 - up_s - fault_s, faults
    FROM computed WHERE final
    ORDER BY id, day  -- one order for every writer: concurrent reports cannot deadlock
    ON CONFLICT DO NOTHING
), month_figures AS (  -- all days of each whole month lacking a month row: read or computed
    SELECT id, month, length, stored_up_s AS up_s, stored_fault_s AS fault_s,
           stored_faults AS faults, true AS final
    FROM daily WHERE in_month AND stored_up_s IS NOT NULL
    UNION ALL
    SELECT id, month, length, up_s, fault_s, faults, final
    FROM computed WHERE in_month
), saved_months AS (
    INSERT INTO state_month (instrument_id, month, timeout, up_s, fault_s, offline_s, faults)
    SELECT id, month, (SELECT timeout FROM p), sum(up_s), sum(fault_s),
           sum(extract(epoch FROM length)::float8 - up_s - fault_s), sum(faults)
    FROM month_figures
    GROUP BY id, month
    HAVING bool_and(final)
    ORDER BY id, month
    ON CONFLICT DO NOTHING
)
SELECT id AS instrument_id, sum(up_s) AS up_s,
       coalesce(sum(faults), 0)::integer AS faults  -- unknown (NULL) before migration 0015
FROM (
    SELECT id, up_s, faults FROM stored_months
    UNION ALL
    SELECT id, up_s, faults FROM stored_loose
    UNION ALL
    SELECT id, stored_up_s, stored_faults FROM daily WHERE stored_up_s IS NOT NULL
    UNION ALL
    SELECT id, up_s, faults FROM computed
) u
GROUP BY id
"""


INSTRUMENTS_PER_TRANSACTION = 200
"""Instruments whose days one transaction reads and stores."""

LATE_REACH = MAX_PAST_AGE + timedelta(days=1)
"""How far back the ingest can still change availability: it accepts samples up to 30 days
old, and a late sample changes the state only from the sample before it, and only when that
one lies within the heartbeat timeout (a longer gap is offline either way); a day more for
clocks."""


def settled_before(now: datetime, timeout: timedelta) -> datetime:
    """The start (Asia/Shanghai) of the first month the ingest may still change."""
    return month_start(now - LATE_REACH - timeout)


@dataclass(slots=True)
class StateFigures:
    """An instrument's seconds up and fault onsets in a period."""

    up_s: float = 0.0
    faults: int = 0


async def state_figures(
    connect: Connect, *, ids: list[str], lo: datetime, hi: datetime, timeout: timedelta,
    parallel: int = 1,
) -> dict[str, StateFigures]:
    """Seconds up and fault onsets of every instrument in [lo, hi); ``hi`` must not lie in
    the future.

    Months the ingest may still change (``settled_before``) are computed in transactions
    that hold their instruments' ingest locks in shared mode before they read the samples,
    until the days and months computed are stored: a batch of late samples for them either
    committed before (and is read) or waits, then deletes those rows (docs/metrics.md,
    "Availability"). Earlier months need no lock, so computing them, which takes long the
    first time (a year of days), never holds up the ingest. ``parallel`` transactions, of
    ``INSTRUMENTS_PER_TRANSACTION`` instruments each, run at once."""
    cut = min(max(settled_before(datetime.now(UTC), timeout), lo), hi)
    slots = asyncio.Semaphore(parallel)

    async def run(part: list[str], a: datetime, b: datetime) -> list[dict[str, Any]]:
        async with slots, connect() as conn:
            await tune_for_reports(conn)
            if b > cut:
                await conn.execute(SHARE_INSTRUMENTS, (part,))
            return await fetch_all(conn, _STATE_FIGURES, {"ids": part, "lo": a, "hi": b,
                                                          "timeout": timeout}, prepare=False)

    step = INSTRUMENTS_PER_TRANSACTION
    parts = await asyncio.gather(*(run(ids[k:k + step], a, b)
                                   for a, b in ((lo, cut), (cut, hi)) if a < b
                                   for k in range(0, len(ids), step)))
    figures = {i: StateFigures() for i in ids}
    for rows in parts:
        for r in rows:
            f = figures[r["instrument_id"]]
            f.up_s += r["up_s"]
            f.faults += r["faults"]
    return figures
