"""Retention on plain PostgreSQL: what TimescaleDB's policies do (docs/data-model.md), run by
``instrushare db prune``, e.g. daily from cron.

Raw samples go after ``samples_days`` and the dedup log after ``messages_days``; usage
sessions, events and the rollups stay, so every report keeps its figures. Availability is
computed from samples where no ``state_day`` row is stored, so an instrument's old samples go
only once the days they cover are rolled up, and the samples a later day needs stay: all
from the start of the day (Asia/Shanghai) of its last sample before the cutoff, and the one
sample before that day (the state carried into it). Dead letters go once they have not arrived
again for ``dead_letters_days``, with TimescaleDB too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from instrushare.db import LOCK_INSTRUMENTS
from instrushare.protocol import MAX_PAST_AGE, MIN_RETENTION_DAYS
from monitor_api.db import Conn, Connect, fetch_all, fetch_one
from monitor_api.queries.availability import state_figures
from monitor_api.report import day_start


@dataclass(frozen=True, slots=True)
class Retention:
    """Days each kind of row is kept (the defaults of the TimescaleDB policies)."""

    samples_days: int = 400
    messages_days: int = 60
    dead_letters_days: int = 90

    def __post_init__(self) -> None:
        for name in ("samples_days", "messages_days"):
            if getattr(self, name) < MIN_RETENTION_DAYS:
                raise ValueError(f"{name} must be at least {MIN_RETENTION_DAYS}: the ingest"
                                 f" accepts data up to {MAX_PAST_AGE.days} days old")
        if self.dead_letters_days < 1:
            raise ValueError("dead_letters_days must be at least 1")


@dataclass(slots=True)
class Pruned:
    """Rows deleted (or, in a dry run, that would be)."""

    samples: int = 0
    messages: int = 0
    dead_letters: int = 0
    timescaledb: bool = False
    """Samples and messages were left to TimescaleDB's retention policies."""


_GATEWAYS = """
WITH RECURSIVE g (gateway_id) AS (  -- one index probe per gateway, not a scan of every row
    (SELECT gateway_id FROM ingested_message ORDER BY gateway_id LIMIT 1)
    UNION ALL
    SELECT (SELECT m.gateway_id FROM ingested_message m WHERE m.gateway_id > g.gateway_id
            ORDER BY m.gateway_id LIMIT 1)
    FROM g WHERE g.gateway_id IS NOT NULL
)
SELECT gateway_id FROM g WHERE gateway_id IS NOT NULL
"""

_BEFORE = """
SELECT (SELECT max(ts) FROM state_sample WHERE instrument_id = %(id)s AND ts < %(t)s) AS last,
       (SELECT min(ts) FROM state_sample WHERE instrument_id = %(id)s) AS first
"""


async def prune(
    connect: Connect, *, retention: Retention, now: datetime, timeout: timedelta,
    dry_run: bool = False, progress: Callable[[int, int], None] | None = None,
) -> Pruned:
    """Delete what ``retention`` lets go as of ``now``; ``timeout`` is the heartbeat timeout
    the API's availability rollups use. ``progress(done, total)`` follows the instruments."""
    pruned = Pruned()
    async with connect() as conn:
        pruned.timescaledb = await fetch_one(
            conn, "SELECT 1 AS yes FROM pg_extension WHERE extname = 'timescaledb'") is not None
        dead_cutoff = now - timedelta(days=retention.dead_letters_days)
        pruned.dead_letters = await _delete(
            conn, "dead_letter WHERE coalesce(last_received_at, received_at) < %s",
            (dead_cutoff,), dry_run)
        if pruned.timescaledb:
            return pruned
        ids = [r["id"] for r in await fetch_all(conn, "SELECT id FROM instrument ORDER BY id")]
        gateways = [r["gateway_id"] for r in await fetch_all(conn, _GATEWAYS)]
    message_cutoff = now - timedelta(days=retention.messages_days)
    for gateway in gateways:
        async with connect() as conn:
            pruned.messages += await _delete(
                conn, "ingested_message WHERE gateway_id = %s AND created_at < %s",
                (gateway, message_cutoff), dry_run)
    cutoff = day_start(now - timedelta(days=retention.samples_days))
    for done, instrument in enumerate(ids, 1):
        pruned.samples += await _prune_samples(connect, instrument, cutoff, timeout, dry_run)
        if progress is not None:
            progress(done, len(ids))
    return pruned


async def _prune_samples(
    connect: Connect, instrument: str, cutoff: datetime, timeout: timedelta, dry_run: bool
) -> int:
    async with connect() as conn:
        old = await _before(conn, instrument, cutoff)
        if old["last"] is None:
            return 0
        keep_from = day_start(old["last"])
        carried = (await _before(conn, instrument, keep_from))["last"]
    if carried is None:
        return 0  # nothing before the day of its last sample before the cutoff
    if not dry_run:  # store the days those samples cover, as a report would
        await state_figures(connect, ids=[instrument], lo=day_start(old["first"]),
                            hi=keep_from, timeout=timeout)
    async with connect() as conn:
        if not dry_run:  # reports computing from these samples wait, as for the ingest
            await conn.execute(LOCK_INSTRUMENTS, ([instrument],))
        return await _delete(conn, "state_sample WHERE instrument_id = %s AND ts < %s",
                             (instrument, carried), dry_run)


async def _before(conn: Conn, instrument: str, t: datetime) -> dict[str, Any]:
    """The instrument's last sample before ``t`` and its first sample."""
    row = await fetch_one(conn, _BEFORE, {"id": instrument, "t": t})
    assert row is not None
    return row


async def _delete(conn: Conn, where: str, params: tuple[Any, ...], dry_run: bool) -> int:
    """Rows matching ``where`` (a table and its condition): deleted, or counted."""
    if dry_run:
        row = await fetch_one(conn, f"SELECT count(*) AS n FROM {where}", params)
        return int(row["n"]) if row else 0
    cur = await conn.execute(f"DELETE FROM {where}", params)
    return cur.rowcount
