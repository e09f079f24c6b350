"""Live status and usage sessions derived in Python from a batch's new samples.

The store reads, under the instrument's lock, what the database held before the batch
(``Before``); these pure functions then give the rows to upsert. Sessions are derived here
only when every new sample is later than the latest stored one (the common, in-order case:
only the open session and the new samples matter); late data is recomputed in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ._decode import SampleRow

RUNNING = "running"

StatusRow = tuple[str, str, str, datetime, str | None, float | None, datetime]
"""(instrument_id, gateway_id, state, since, user_id, power_w, last_ts)"""
SessionRow = tuple[str, datetime, datetime | None, datetime, str | None]
"""(instrument_id, start_ts, end_ts, last_ts, user_id); end_ts None while open."""


@dataclass(frozen=True, slots=True)
class Before:
    """One instrument as stored before the batch."""

    last_ts: datetime | None = None
    """Its latest sample."""
    last_state: str | None = None
    last_user: str | None = None
    session_start: datetime | None = None
    """Start of its latest usage session (the open one when the latest sample is running)."""
    status_state: str | None = None
    status_since: datetime | None = None
    status_last_ts: datetime | None = None


def status_row(instrument: str, live: list[SampleRow], before: Before) -> StatusRow | None:
    """The new status from ``live`` (non-historical samples sorted by time), None if unchanged.

    Only samples later than the stored status count. ``since`` is the start of the trailing
    run of the latest state among them, or the stored ``since`` when the state did not change.
    """
    stored = before.status_last_ts
    all_newer = stored is None or live[0][1] > stored
    newer = live if all_newer else [r for r in live if r[1] > stored]  # type: ignore[operator]
    if not newer:
        return None
    latest = newer[-1]
    state = latest[2]
    run_start = latest[1]
    changed = False
    for row in reversed(newer):
        if row[2] != state:
            changed = True
            break
        run_start = row[1]
    since = before.status_since if not changed and before.status_state == state else run_start
    assert since is not None
    return (instrument, latest[6], state, since, latest[4], latest[3], latest[1])


def since_from_samples(new: list[SampleRow], live: list[SampleRow], before: Before) -> bool:
    """True when samples other than the live ones (historical data from an outage) came
    after the stored status: in them the state may have changed (and come back, or begun
    before the live samples), so the ``since`` of ``status_row``, which sees the live ones
    only, is read from the stored samples (``STATUS_SINCE_FROM_SAMPLES``). ``new``: all the
    batch's samples, ``live`` among them."""
    stored = before.status_last_ts
    if stored is None:
        return False
    if before.last_ts is not None and before.last_ts > stored:
        return True
    if len(new) == len(live):  # all live: the common case
        return False
    return sum(r[1] > stored for r in new) > sum(r[1] > stored for r in live)


def in_order(rows: list[SampleRow], before: Before) -> bool:
    """True when every new sample (sorted by time) is later than the latest stored one.

    Also False if the stored sessions lack the open one a running latest sample implies
    (edited by hand): the full recompute repairs them.
    """
    if before.last_ts is None:
        return True
    if before.last_state == RUNNING and before.session_start is None:
        return False
    return rows[0][1] > before.last_ts


def appended_sessions(
    instrument: str, rows: list[SampleRow], before: Before, gap: timedelta
) -> list[SessionRow]:
    """Sessions created or changed by samples later than all stored ones (``in_order``).

    Continues the open session when the latest stored sample is running; the rules are those
    of docs/ingest.md (same user, gaps of at most ``gap``, end at the next sample within the gap).
    """
    cur: list[object] | None = None  # [start, last, user]
    if before.last_state == RUNNING and before.last_ts is not None:
        cur = [before.session_start, before.last_ts, before.last_user]
    out: list[SessionRow] = []
    for row in rows:
        ts, state, user = row[1], row[2], row[4]
        if cur is not None:
            last: datetime = cur[1]  # type: ignore[assignment]
            if state == RUNNING and user == cur[2] and ts - last <= gap:
                cur[1] = ts
                continue
            out.append((instrument, cur[0], ts if ts - last <= gap else last, last,
                        cur[2]))  # type: ignore[arg-type]
            cur = None
        if state == RUNNING:
            cur = [ts, ts, user]
    if cur is not None:
        out.append((instrument, cur[0], None, cur[1], cur[2]))  # type: ignore[arg-type]
    return out
