"""Seconds each instrument was up (neither offline nor in fault) in a period, from the
per-day rollup ``state_day`` where it can (docs/metrics.md, "Availability")."""

from __future__ import annotations

from datetime import datetime, timedelta

from monitor_api.db import Conn, fetch_all

# Seconds up per instrument in [lo, hi), day by day (Asia/Shanghai): a whole day comes from
# state_day when stored there; any other day is computed from the samples (state_time), and a
# whole day that is final (a later sample exists, so appends in time order cannot change it)
# is stored for the next report. Stored days are summed per instrument first; only
# instruments short of some whole day look up which days they lack.
_UP_SECONDS = """
WITH days AS MATERIALIZED (
    SELECT d.day::date AS day, b.d1 - b.d0 AS length, b.d0 >= lo AND b.d1 <= hi AS whole,
           greatest(b.d0, lo) AS lo, least(b.d1, hi) AS hi, b.d1
    FROM (SELECT %(lo)s::timestamptz AS lo, %(hi)s::timestamptz AS hi) p
    CROSS JOIN generate_series(date_trunc('day', lo AT TIME ZONE 'Asia/Shanghai'),
                               (hi - interval '1 microsecond') AT TIME ZONE 'Asia/Shanghai',
                               interval '1 day') d (day)  -- local midnights
    CROSS JOIN LATERAL (
        SELECT d.day AT TIME ZONE 'Asia/Shanghai' AS d0,
               (d.day + interval '1 day') AT TIME ZONE 'Asia/Shanghai' AS d1
    ) b
), stored AS (
    SELECT sd.instrument_id, sum(sd.up_s) AS up_s, count(*) AS n
    FROM state_day sd
    WHERE sd.instrument_id = ANY(%(ids)s) AND sd.timeout = %(timeout)s
      AND sd.day >= (SELECT min(day) FROM days WHERE whole)
      AND sd.day <= (SELECT max(day) FROM days WHERE whole)
    GROUP BY sd.instrument_id
), missing AS MATERIALIZED (
    SELECT i.id, days.*
    FROM unnest(%(ids)s::text[]) i (id)
    LEFT JOIN stored s ON s.instrument_id = i.id
    CROSS JOIN days
    WHERE NOT days.whole
       OR coalesce(s.n, 0) < (SELECT count(*) FROM days WHERE whole)
          AND NOT EXISTS (SELECT 1 FROM state_day sd
                          WHERE sd.instrument_id = i.id AND sd.day = days.day
                            AND sd.timeout = %(timeout)s)
), computed AS (
    SELECT m.id, m.day, m.length, t.up_s, t.fault_s,
           m.whole AND m.d1 <= now()
           AND EXISTS (SELECT 1 FROM state_sample n
                       WHERE n.instrument_id = m.id AND n.ts >= m.d1) AS final
    FROM missing m CROSS JOIN LATERAL state_time(m.id, m.lo, m.hi, %(timeout)s) t
), saved AS (
    INSERT INTO state_day (instrument_id, day, timeout, up_s, fault_s, offline_s)
    SELECT id, day, %(timeout)s, up_s, fault_s,
           extract(epoch FROM length)::float8 - up_s - fault_s
    FROM computed WHERE final
    ON CONFLICT DO NOTHING
)
SELECT id AS instrument_id, sum(up_s) AS up_s FROM (
    SELECT instrument_id AS id, up_s FROM stored
    UNION ALL
    SELECT id, up_s FROM computed
) u
GROUP BY id
"""



async def up_seconds(
    conn: Conn, *, ids: list[str], lo: datetime, hi: datetime, timeout: timedelta
) -> dict[str, float]:
    """Seconds up per instrument in [lo, hi); ``hi`` must not lie in the future."""
    rows = await fetch_all(conn, _UP_SECONDS,
                           {"ids": ids, "lo": lo, "hi": hi, "timeout": timeout}, prepare=False)
    return {r["instrument_id"]: r["up_s"] for r in rows}
