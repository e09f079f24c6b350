"""Instruments in fault at a moment, and since when: the 待修 (awaiting repair) part of the
national running state (docs/metrics.md, "Faults and running state")."""

from __future__ import annotations

from datetime import datetime, timedelta

from monitor_api.db import Conn, fetch_all

# The latest sample before the moment, if it is a fault within the heartbeat timeout (a longer
# silence is offline), and the first sample after the latest one in another state: the start
# of the run. Both are short index scans backwards from the moment.
_IN_FAULT = """
SELECT i.id, (SELECT min(s.ts) FROM state_sample s
              WHERE s.instrument_id = i.id AND s.ts < %(at)s
                AND s.ts > coalesce((SELECT max(o.ts) FROM state_sample o
                                     WHERE o.instrument_id = i.id AND o.ts < %(at)s
                                       AND o.state <> 'fault'), '-infinity')) AS since
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
