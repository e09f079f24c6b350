"""Instruments in fault at a moment, and since when: the 待修 (awaiting repair) part of the
national running state (docs/metrics.md, "Faults and running state")."""

from __future__ import annotations

from datetime import datetime, timedelta

from monitor_api.db import Conn, fetch_all

# The latest sample before the moment, if it is a fault within the heartbeat timeout (a longer
# silence is offline), and the start of its run: among the fault samples after the latest
# sample in another state, the first, or the latest one after a silence longer than the
# timeout (offline in between ends a fault: fault_onsets, migration 0015, counts it so too).
_IN_FAULT = """
SELECT i.id, (SELECT max(f.ts) FROM (
                  SELECT s.ts, s.ts - lag(s.ts) OVER (ORDER BY s.ts) AS gap
                  FROM state_sample s
                  WHERE s.instrument_id = i.id AND s.ts < %(at)s
                    AND s.ts > coalesce((SELECT max(o.ts) FROM state_sample o
                                         WHERE o.instrument_id = i.id AND o.ts < %(at)s
                                           AND o.state <> 'fault'), '-infinity')) f
              WHERE f.gap IS NULL OR f.gap > %(timeout)s) AS since
FROM instrument i
CROSS JOIN LATERAL (SELECT s.state, s.ts FROM state_sample s
                    WHERE s.instrument_id = i.id AND s.ts < %(at)s
                    ORDER BY s.ts DESC LIMIT 1) last
WHERE last.state = 'fault' AND last.ts >= %(at)s - %(timeout)s
"""


async def in_fault(conn: Conn, *, at: datetime, timeout: timedelta) -> dict[str, datetime]:
    """Instruments in fault just before ``at``, each with the start of its fault run."""
    rows = await fetch_all(conn, _IN_FAULT, {"at": at, "timeout": timeout})
    return {r["id"]: r["since"] for r in rows}
