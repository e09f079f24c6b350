"""Shared pieces of the end-to-end tests: run ingest workers, wait for data, compare with truth."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from device_sim.bookings import SimBooking
from device_sim.truth import TruthSession
from ingest import IngestConfig, IngestWorker
from tests.api.metrics_reference import nearest_holding

ANNOUNCE_INTERVAL_S = 0.5
"""Gateways wait for a live announcement after connecting: keep that short in tests."""


@contextlib.contextmanager
def ingest_thread(
    *, database_url: str, mqtt_url: str, topic_prefix: str, worker_id: str = "w1",
    **settings: Any,
) -> Iterator[IngestWorker]:
    """An ingest worker running in this process until the block ends; ``settings`` go to
    its IngestConfig."""
    config = IngestConfig(
        database_url=database_url,
        mqtt_url=mqtt_url,
        topic_prefix=topic_prefix,
        worker_id=f"{topic_prefix}-{worker_id}",
        share_group=topic_prefix,
        announce_interval_s=ANNOUNCE_INTERVAL_S,
        **settings,
    )
    worker = IngestWorker(config)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name=f"ingest-{worker_id}")
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "ingest worker did not stop"


def ingest_process(
    *, database_url: str, mqtt_url: str, topic_prefix: str, worker_id: str, log: Path
) -> subprocess.Popen[bytes]:
    """``instrushare ingest`` as a separate process, configured like an operator would."""
    env = os.environ | {
        "DATABASE_URL": database_url,
        "MQTT_URL": mqtt_url,
        "INSTRUSHARE_TOPIC_PREFIX": topic_prefix,
        "INSTRUSHARE_WORKER_ID": f"{topic_prefix}-{worker_id}",
        "INSTRUSHARE_SHARE_GROUP": topic_prefix,
        "INSTRUSHARE_ANNOUNCE_INTERVAL_S": str(ANNOUNCE_INTERVAL_S),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "instrushare", "ingest"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(30)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)


def count(database_url: str, query: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0


def stored_sessions(database_url: str) -> list[TruthSession]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT instrument_id, user_id, start_ts, end_ts FROM usage_session"
            " ORDER BY instrument_id, start_ts"
        ).fetchall()
    return [TruthSession(r[0], r[1], r[2], r[3]) for r in rows]


def compare_sessions(
    truth: list[TruthSession], stored: list[TruthSession], tolerance: timedelta
) -> list[str]:
    """Differences between truth and stored sessions, as readable lines (empty = equal): the
    stored user is the one the gateway reported."""
    problems: list[str] = []
    by_instrument: dict[str, list[TruthSession]] = defaultdict(list)
    for s in stored:
        by_instrument[s.instrument].append(s)
    expected: dict[str, list[TruthSession]] = defaultdict(list)
    for s in truth:
        expected[s.instrument].append(s)
    for instrument in sorted(set(expected) | set(by_instrument)):
        want, got = expected[instrument], by_instrument[instrument]
        if len(want) != len(got):
            problems.append(f"{instrument}: {len(want)} sessions expected, {len(got)} stored")
            continue
        for w, g in zip(want, got, strict=True):
            if (
                w.reported_user != g.user
                or g.end is None
                or abs(w.start - g.start) > tolerance
                or abs(w.end - g.end) > tolerance
            ):
                problems.append(f"{instrument}: expected {w}, stored {g}")
    return problems


def session_booking(
    bookings: Iterable[SimBooking], instrument: str, at: datetime, grace: timedelta
) -> SimBooking | None:
    """The booking whose user a session of ``instrument`` starting ``at`` without a reported
    user takes (every simulated booking is approved or completed)."""
    return nearest_holding((b for b in bookings if b.instrument == instrument), at, grace)


def hours_by_instrument(sessions: list[TruthSession]) -> dict[str, float]:
    hours: dict[str, float] = defaultdict(float)
    for s in sessions:
        hours[s.instrument] += s.hours
    return hours


def sample_times(database_url: str) -> dict[str, list[datetime]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT instrument_id, ts FROM state_sample ORDER BY 1, 2").fetchall()
    out: dict[str, list[datetime]] = defaultdict(list)
    for instrument, ts in rows:
        out[instrument].append(ts)
    return out
