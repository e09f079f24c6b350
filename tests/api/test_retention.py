"""``instrushare db prune`` on plain PostgreSQL: old raw rows go, every day's availability
stays what it was, and a dry run deletes nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from monitor_api.db import make_pool
from monitor_api.queries.availability import StateFigures, state_figures
from monitor_api.report import SHANGHAI
from monitor_api.retention import Pruned, Retention, prune
from tests.api.conftest import SEED, make_settings

NOW = datetime(2026, 6, 15, 12, tzinfo=SHANGHAI)  # samples go before 05-15 00:00 (31 days)
TIMEOUT = timedelta(minutes=90)
RETENTION = Retention(samples_days=31, messages_days=31, dead_letters_days=10)


def _at(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


def _hourly(first: datetime, last: datetime) -> list[datetime]:
    return [first + timedelta(hours=k) for k in range((last - first) // timedelta(hours=1) + 1)]


# nmr: hourly until 05-14 10:30, silent past the cutoff, hourly again from 05-16 (its last
# sample before the cutoff is on 05-14, so 05-14 on and the one sample before it stay);
# xrd: one sample before the cutoff (stays: the state carried into later days); sem: all new.
SAMPLES = {
    "nmr": [*_hourly(_at(5, 1, 0, 30), _at(5, 14, 10, 30)), *_hourly(_at(5, 16, 8), _at(6, 10))],
    "xrd": [_at(5, 3, 9), *_hourly(_at(5, 20), _at(5, 25))],
    "sem": _hourly(_at(5, 20), _at(6, 1)),
}
STATES = ["idle", "running", "running", "fault", "idle", "off"]
DAYS = [_at(4, 30) + timedelta(days=k) for k in range(45)]
KEPT_NMR_FROM = _at(5, 13, 23, 30)  # the last before 05-14


@pytest.fixture
def url(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in SEED:
            conn.execute(statement)
        for instrument, times in SAMPLES.items():
            with conn.cursor().copy("COPY state_sample (instrument_id, ts, state, gateway_id,"
                                    " seq) FROM STDIN") as copy:
                for k, ts in enumerate(times):
                    copy.write_row((instrument, ts, STATES[k % len(STATES)], "gw", k))
        for gateway, days_old in [("gw", 40), ("gw", 35), ("gw", 20), ("gw2", 31.5), ("gw2", 2)]:
            created = NOW - timedelta(days=days_old)
            conn.execute(
                "INSERT INTO ingested_message VALUES (%s, %s, %s, 'nmr', 1, false, 1, 0, %s, 0)",
                (gateway, int(days_old * 10), created, created))
        for days_old, last in ((30, None), (11, None), (9, None), (1, None), (30, 2)):
            conn.execute("INSERT INTO dead_letter (received_at, topic, payload, reason, times,"
                         " last_received_at) VALUES (%s, 't', %s, 'invalid', %s, %s)",
                         (NOW - timedelta(days=days_old), f"{days_old}-{last}".encode(),
                          1 if last is None else 9,
                          None if last is None else NOW - timedelta(days=last)))
    return database_url


def _run(url: str, work: Any) -> Any:
    async def go() -> Any:
        pool = make_pool(make_settings(url))
        await pool.open()
        try:
            return await work(pool.connection)
        finally:
            await pool.close()
    return asyncio.run(go())


def _availability(url: str) -> list[dict[str, StateFigures]]:
    """Up seconds and fault onsets of every instrument on every day around the cutoff."""
    async def days(connect: Any) -> list[dict[str, StateFigures]]:
        return [await state_figures(connect, ids=["nmr", "sem", "xrd"], lo=day,
                                    hi=day + timedelta(days=1), timeout=TIMEOUT)
                for day in DAYS]
    result: list[dict[str, StateFigures]] = _run(url, days)
    return result


def _counts(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        return {
            "samples": dict(conn.execute(
                "SELECT instrument_id, count(*) FROM state_sample GROUP BY 1").fetchall()),
            "first": dict(conn.execute(
                "SELECT instrument_id, min(ts) FROM state_sample GROUP BY 1").fetchall()),
            "messages": sorted(conn.execute(
                "SELECT gateway_id, seq FROM ingested_message").fetchall()),
            "dead_letters": conn.execute("SELECT count(*) FROM dead_letter").fetchone(),
        }


def test_prune_keeps_every_days_availability(url: str) -> None:
    before = _availability(url)
    assert sum(before[k]["nmr"].up_s for k in range(len(DAYS))) > 0
    assert sum(before[k]["nmr"].faults for k in range(len(DAYS))) > 0
    with psycopg.connect(url, autocommit=True) as conn:  # prune must roll up what it drops
        conn.execute("DELETE FROM state_day")
        conn.execute("DELETE FROM state_month")
    stored = _counts(url)

    dry = _run(url, lambda c: prune(c, retention=RETENTION, now=NOW, timeout=TIMEOUT,
                                    dry_run=True))
    assert _counts(url) == stored
    seen: list[tuple[int, int]] = []
    real = _run(url, lambda c: prune(c, retention=RETENTION, now=NOW, timeout=TIMEOUT,
                                     progress=lambda done, total: seen.append((done, total))))
    nmr_gone = sum(ts < KEPT_NMR_FROM for ts in SAMPLES["nmr"])
    assert real == dry == Pruned(samples=nmr_gone, messages=3, dead_letters=2)
    assert seen[-1] == (4, 4)  # the seeded instruments, inc1 without samples included

    after = _counts(url)
    assert after["samples"] == {"nmr": len(SAMPLES["nmr"]) - nmr_gone,
                                "xrd": len(SAMPLES["xrd"]), "sem": len(SAMPLES["sem"])}
    assert after["first"]["nmr"] == KEPT_NMR_FROM
    assert after["messages"] == [("gw", 200), ("gw2", 20)]
    assert after["dead_letters"] == (3,)  # one first received long ago, but still arriving
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM state_day WHERE instrument_id = 'nmr'"
                            " AND day < '2026-05-14'").fetchone() == (13,)
    assert _availability(url) == before


def test_retention_refuses_less_than_the_replay_window() -> None:
    with pytest.raises(ValueError, match="samples_days must be at least 31"):
        Retention(samples_days=30)
    with pytest.raises(ValueError, match="messages_days must be at least 31"):
        Retention(messages_days=7)


def test_the_command_reports_what_it_would_delete(url: str) -> None:
    """Run today: only the dead letters are old enough to go."""
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "instrushare", "db", "prune", "--dry-run",
         "--samples-days", "100000", "--messages-days", "100000", "--dead-letters-days", "5"],
        env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("would delete 0 sample(s), 0 message key(s),"
                                   " 5 dead letter(s)")
    refused = subprocess.run(
        [sys.executable, "-m", "instrushare", "db", "prune", "--samples-days", "30"],
        env=env, capture_output=True, text=True, timeout=60)
    flat = " ".join(refused.stderr.replace("│", " ").split())  # rich draws a box round it
    assert refused.returncode == 2
    assert "Invalid value for '--samples-days'" in flat and "greater than or equal to 31" in flat
    assert _counts(url)["dead_letters"] == (5,)
