"""examples/minimal_gateway.py, written from docs/protocol.md alone, against the real broker,
ingest and API: proof that the protocol page is enough to build a compatible gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from device_sim.truth import TruthSession
from monitor_api.auth import Role
from monitor_api.cli import create_token
from tests.api.conftest import make_settings
from tests.api_server import serve
from tests.e2e.helpers import ingest_thread, stored_sessions, wait_until
from tests.ingest.conftest import query

EXAMPLE = Path(__file__).parents[2] / "examples" / "minimal_gateway.py"
INSTRUMENT = "xrd-1"


@contextlib.contextmanager
def example_gateway(tmp_path: Path, gateway: str, mqtt_url: str, topic_prefix: str,
                    lines: list[dict[str, Any]]) -> Iterator[subprocess.Popen[bytes]]:
    """The example as an operator runs it, fed ``lines``; leaving the block ends its input,
    which stops it cleanly."""
    with (tmp_path / "gateway.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--gateway", gateway, "--instrument", INSTRUMENT,
             "--state", str(tmp_path / "gateway.sqlite"), "--broker", mqtt_url,
             "--prefix", topic_prefix],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
    assert proc.stdin is not None
    proc.stdin.write(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
    proc.stdin.flush()
    try:
        yield proc
    finally:
        proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_docs_gateway_feeds_the_platform(
    tmp_path: Path, database_url: str, mqtt_url: str, topic_prefix: str
) -> None:
    gateway = f"gw-{topic_prefix}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

    def at(minutes: float) -> datetime:
        return t0 + timedelta(minutes=minutes)

    readings: list[dict[str, Any]] = [
        {"instrument": INSTRUMENT, "state": "idle", "power_w": 300.0, "ts": at(0).isoformat()},
        {"instrument": INSTRUMENT, "state": "running", "user": "u-1", "power_w": 1500.0,
         "ts": at(1).isoformat()},
        {"instrument": INSTRUMENT, "state": "running", "user": "u-1", "power_w": 1480.5,
         "ts": at(2).isoformat()},
        {"instrument": INSTRUMENT, "state": "idle", "power_w": 310.0, "ts": at(3).isoformat()},
        {"instrument": INSTRUMENT, "event": "fault", "detail": "vacuum lost",
         "ts": at(3.5).isoformat()},
    ]
    settings = make_settings(database_url)
    token = asyncio.run(create_token(settings, role=Role.ADMIN))
    with (
        ingest_thread(database_url=database_url, mqtt_url=mqtt_url,
                      topic_prefix=topic_prefix) as worker,
        serve(settings) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as api,
    ):
        # registered as docs/protocol.md, "Onboarding", asks: before the gateway sends data
        assert api.post("/institutions", json={"id": "inst-1", "name": "分析测试中心"}
                        ).status_code == 201
        assert api.post("/instruments", json={
            "id": INSTRUMENT, "name": "X 射线衍射仪", "institution_id": "inst-1",
            "gateway_id": gateway}).status_code == 201

        def board() -> dict[str, Any]:
            items: list[dict[str, Any]] = api.get("/status").json()["items"]
            return items[0]

        def online() -> bool:
            return bool(api.get("/gateways").json()["items"][0]["online"])

        with example_gateway(tmp_path, gateway, mqtt_url, topic_prefix, readings) as proc:
            wait_until(lambda: query(database_url, "SELECT count(*) FROM ingested_message")
                       == [(5,)] and board()["state"] == "idle", 30, "the first run's data")
            live = board()
            assert online()
            assert (live["online"], live["state"], live["user_id"], live["power_w"]) == (
                True, "idle", None, 310.0)
            assert datetime.fromisoformat(live["since"]) == at(3)
        assert proc.returncode == 0, (tmp_path / "gateway.log").read_text()
        wait_until(lambda: board()["state"] == "offline", 30, "the clean stop's offline state")
        assert not online()
        with contextlib.closing(sqlite3.connect(tmp_path / "gateway.sqlite")) as outbox:
            assert outbox.execute("SELECT count(*) FROM outbox").fetchone() == (0,), (
                "every message confirmed, so deleted from the outbox")

        assert query(database_url, "SELECT ts, state, user_id, power_w, seq FROM state_sample"
                     " ORDER BY ts") == [
            (at(0), "idle", None, 300.0, 0), (at(1), "running", "u-1", 1500.0, 1),
            (at(2), "running", "u-1", 1480.5, 2), (at(3), "idle", None, 310.0, 3)]
        assert query(database_url, "SELECT ts, type, user_id, detail FROM instrument_event"
                     " ORDER BY ts, type") == [
            (at(1), "session_start", "u-1", None), (at(3), "session_end", "u-1", None),
            (at(3.5), "fault", None, "vacuum lost")]
        assert stored_sessions(database_url) == [TruthSession(INSTRUMENT, "u-1", at(1), at(3))]
        assert query(database_url, "SELECT bool_and(NOT historical) FROM ingested_message"
                     ) == [(True,)]
        (first_bd_seq,) = query(database_url, "SELECT bd_seq FROM gateway")[0]

        # a restart continues the sequence: its message is new data, not a duplicate key;
        # then it dies, and its last will takes it offline
        restart = [{"instrument": INSTRUMENT, "state": "idle", "ts": at(4).isoformat()}]
        with example_gateway(tmp_path, gateway, mqtt_url, topic_prefix, restart) as proc:
            wait_until(lambda: query(database_url, "SELECT count(*) FROM state_sample")
                       == [(5,)] and online(), 30, "the restart's sample and birth")
            proc.kill()
        assert proc.returncode == -signal.SIGKILL
        wait_until(lambda: not online(), 30, "the last will")
        assert board()["state"] == "offline"
        assert query(database_url, "SELECT seq FROM ingested_message ORDER BY seq") == [
            (seq,) for seq in range(6)]
        assert query(database_url, "SELECT ts, power_w FROM state_sample WHERE seq = 5") == [
            (at(4), None)], "power_w: null is accepted"
        assert query(database_url, "SELECT bd_seq > %s FROM gateway", (first_bd_seq,)) == [
            (True,)]
        stats = worker.stats
        assert (stats.written, stats.duplicates, stats.dead_lettered) == (6, 0, {})
    assert query(database_url, "SELECT count(*) FROM dead_letter") == [(0,)]
