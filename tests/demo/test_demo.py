"""``instrushare demo`` run as a user would: no environment, embedded services, Ctrl-C to stop."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg

from instrushare.demo.stack import INTERRUPTED, LOCK_FILE
from tests.services import Mosquitto, free_port

LIVE_AGE = timedelta(seconds=60)
"""How old the newest sample may be for the board to count as live (the live gateways send
each sample as they take it, every 30 s)."""
LIVE = "live simulation running"
"""What the demo logs once the past days are delivered, as its live fleet starts."""
HISTORY = "simulating the last"
"""What a first run logs as it begins to simulate the past days, which end as it does."""


def _start_demo(
    workdir: Path, port: int, data_home: Path, log: Path, *args: str, **settings: str
) -> subprocess.Popen[bytes]:
    """The demo as a user starts it: default data directory, and no DATABASE_URL / MQTT_URL
    nor any other setting but those given."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "MQTT_URL") and not k.startswith("INSTRUSHARE_")
    } | settings
    env["XDG_DATA_HOME"] = str(data_home)  # the per-user data directory, kept inside tmp_path
    workdir.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "instrushare", "demo", "--port", str(port), *args],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _printed_login(log: Path, port: int, role: str = "admin") -> str | None:
    """A role's token as a user reads it, once the dashboard's address has been printed."""
    text = log.read_text(errors="replace")
    if f"dashboard at http://127.0.0.1:{port}/" not in text:
        return None
    found = re.search(rf"^\s+{role}\s+(\S+)\s*$", text, re.MULTILINE)
    return found.group(1) if found else None


def _wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path, timeout: float) -> str:
    """The printed admin token, once the API is ready and accepts it."""
    port = int(base.rsplit(":", 1)[1])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the demo exited early:\n" + log.read_text(errors="replace")
        try:
            token = _printed_login(log, port)
            if token and httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return token
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("the demo did not print its address and logins:\n" + log.read_text())


def _board(base: str, token: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{base}/status", params={"limit": 500}, headers={"Authorization": f"Bearer {token}"}
    )
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _latest(board: list[dict[str, Any]]) -> datetime | None:
    """The newest sample time on the board (None before the first data arrives)."""
    times = [datetime.fromisoformat(item["last_ts"]) for item in board if item["last_ts"]]
    return max(times, default=None)


def _logged_at(proc: subprocess.Popen[bytes], log: Path, text: str, timeout: float) -> datetime:
    """When the demo logged ``text``, by the log line's own time (the local clock's, which
    the demo shares with this test)."""
    _wait_for(proc, log, text, timeout)
    line = next(ln for ln in log.read_text(errors="replace").splitlines() if text in ln)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").astimezone(UTC)


def _wait_live(base: str, token: str, after: datetime, timeout: float) -> datetime:
    """The newest sample once it is later than ``after`` and at most LIVE_AGE old by the clock.

    Replayed history ends when the demo starts, so only the live fleet can satisfy this.
    """
    deadline = time.monotonic() + timeout
    while True:
        latest = _latest(_board(base, token))
        now = datetime.now(UTC)
        if latest is not None and latest > after and now - latest <= LIVE_AGE:
            return latest
        assert time.monotonic() < deadline, (
            f"no live samples reached the API: newest {latest}, clock {now}"
        )
        time.sleep(1)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout) == 0
    finally:
        if proc.poll() is None:  # it did not stop: do not leave it running past the test
            proc.kill()
            proc.wait()


def _wait_for(proc: subprocess.Popen[bytes], log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def _leftovers(workdir: Path) -> list[str]:
    """Processes still using the demo's directory (e.g. the embedded PostgreSQL)."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(workdir) in cmdline or str(process.info.get("cwd") or "").startswith(str(workdir)):
            found.append(cmdline)
    return found


def test_demo_runs_live_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_home = tmp_path / "home"
    login = data_home / "instrushare" / "demo" / "login.txt"
    first_log = tmp_path / "first.log"
    proc = _start_demo(tmp_path / "first", port, data_home, first_log)
    try:
        token = _wait_ready(proc, base, first_log, timeout=240)
        assert f"admin={token}" in login.read_text().splitlines()
        board = _board(base, token)
        assert len(board) == 30
        user = {"Authorization": f"Bearer {_printed_login(first_log, port, 'user')}"}
        catalogue = httpx.get(f"{base}/instruments", headers=user, timeout=10).json()
        assert catalogue["total"] == 30  # the printed user finds the fleet to book from
        # the past days end as the demo begins to simulate them: what comes after is live
        history_end = _logged_at(proc, first_log, HISTORY, timeout=60)
        first = _wait_live(base, token, history_end, timeout=600)
        later = _wait_live(base, token, first, timeout=150)  # and keep coming
        assert later > first
    finally:
        if proc.poll() is None:
            _stop(proc)
    assert _leftovers(tmp_path) == []
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the API's port is free again

    # a second run, from another directory, reuses the data: the same login works at once,
    # the history is there
    second_log = tmp_path / "second.log"
    proc = _start_demo(tmp_path / "second", port, data_home, second_log)
    try:
        assert _wait_ready(proc, base, second_log, timeout=120) == token
        latest = _latest(_board(base, token))
        assert latest is not None and latest >= later
        assert HISTORY not in second_log.read_text()
    finally:
        if proc.poll() is None:
            _stop(proc)
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "first" / "var").exists()
    assert not (tmp_path / "second" / "var").exists()


def test_a_port_in_use_stops_the_demo_at_once_with_a_clear_message(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        log = tmp_path / "demo.log"
        proc = _start_demo(tmp_path / "work", port, tmp_path / "data", log)
        try:
            assert proc.wait(timeout=30) == 1
        finally:
            if proc.poll() is None:  # it went on: stop it as Ctrl-C does, services and all
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=60)
    text = log.read_text()
    assert (f"cannot listen on 127.0.0.1:{port}: Address already in use; another program is"
            " using the port: choose another with --port") in text
    assert "dashboard at" not in text  # nothing announced, nothing started
    assert not (tmp_path / "data").exists()  # made for this run, unused: removed


def test_a_demo_stopped_before_using_its_data_directory_removes_only_what_it_made(
    tmp_path: Path,
) -> None:
    """An unreachable DATABASE_URL: a --data-dir made for the run goes with its new parent
    folders, one that was there stays."""
    made = tmp_path / "new" / "demo"
    there = tmp_path / "there"
    there.mkdir()
    for data_dir, log in ((made, tmp_path / "made.log"), (there, tmp_path / "there.log")):
        proc = _start_demo(tmp_path / "work", free_port(), tmp_path / "home", log,
                           "--data-dir", str(data_dir),
                           DATABASE_URL="postgresql://postgres@127.0.0.1:1/demo")
        try:
            assert proc.wait(timeout=60) == 1, log.read_text()
        finally:
            if proc.poll() is None:
                _stop(proc)
        assert "Connection refused" in log.read_text()
    assert not (tmp_path / "new").exists()
    assert there.is_dir()
    assert _leftovers(tmp_path) == []


def test_a_data_directory_in_use_stops_the_demo_at_once_with_a_clear_message(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data" / "instrushare" / "demo"
    data_dir.mkdir(parents=True)
    with (data_dir / LOCK_FILE).open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running demo holds it
        log = tmp_path / "demo.log"
        proc = _start_demo(tmp_path / "work", free_port(), tmp_path / "data", log)
        try:
            assert proc.wait(timeout=30) == 1
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=60)
    text = log.read_text()
    assert f"another instrushare demo is using {data_dir}" in text
    assert "Traceback" not in text and "dashboard at" not in text
    assert not (data_dir / "postgres").exists()


def test_a_demo_stopped_while_simulating_the_past_says_so_when_started_again(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "demo.log"
    proc = _start_demo(tmp_path / "work", port, tmp_path / "data", log)
    database = ("postgresql://postgres@/instrushare"
                f"?host={tmp_path / 'data' / 'instrushare' / 'demo' / 'postgres'}")

    def some_history() -> bool:
        if HISTORY not in log.read_text(errors="replace"):
            return False
        with contextlib.suppress(psycopg.Error), psycopg.connect(database) as conn:
            return conn.execute("SELECT EXISTS (SELECT 1 FROM state_sample)").fetchone() == (
                True,)
        return False

    try:
        deadline = time.monotonic() + 120
        while not some_history():  # the first days are stored, not all of them
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        _stop(proc)
    assert LIVE not in log.read_text()
    again = tmp_path / "again.log"
    proc = _start_demo(tmp_path / "work", port, tmp_path / "data", again)
    try:
        _wait_ready(proc, base, again, timeout=120)
    finally:
        _stop(proc)
    assert "stopped while it simulated the days before it" in again.read_text()
    assert _leftovers(tmp_path) == []


SMALL = ("--instruments", "2", "--history-days", "1")
"""A fleet whose past day is simulated in seconds."""


def test_the_configured_topic_prefix_carries_the_past_days_to_the_ingest(
    tmp_path: Path, database_url: str, mqtt_url: str, topic_prefix: str
) -> None:
    """INSTRUSHARE_TOPIC_PREFIX is the ingest's and the gateways' alike: the past day arrives,
    and only then does the demo count it as done. It begins the demo's ids too, so that its
    MQTT client ids are not those of a demo (or sim) under another prefix on the broker."""
    log = tmp_path / "demo.log"
    proc = _start_demo(tmp_path / "work", free_port(), tmp_path / "data", log, *SMALL,
                       DATABASE_URL=database_url, MQTT_URL=mqtt_url,
                       INSTRUSHARE_TOPIC_PREFIX=topic_prefix)
    try:
        _wait_for(proc, log, LIVE, timeout=120)
    finally:
        _stop(proc, timeout=30)
    assert "simulated the last 1 days: " in log.read_text()
    assert f"ingest worker {topic_prefix}-demo starting" in log.read_text()
    assert not (tmp_path / "data" / "instrushare" / "demo" / INTERRUPTED).exists()
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT array_agg(DISTINCT instrument_id ORDER BY instrument_id),"
            " array_agg(DISTINCT gateway_id ORDER BY gateway_id) FROM state_sample"
            " WHERE ts < now() - interval '1 hour'"
        ).fetchone() == ([f"{topic_prefix}-ins-00001", f"{topic_prefix}-ins-00002"],
                         [f"{topic_prefix}-gw-00001", f"{topic_prefix}-gw-00002"])


def test_a_topic_prefix_that_cannot_begin_an_id_stops_the_demo_at_once(tmp_path: Path) -> None:
    """A prefix valid as a topic level but not at the head of an id (it begins with '_') is
    refused before anything starts: exit 1, the reason named, no data directory made."""
    log = tmp_path / "demo.log"
    proc = _start_demo(tmp_path / "work", free_port(), tmp_path / "data", log,
                       INSTRUSHARE_TOPIC_PREFIX="_lab")
    assert proc.wait(60) == 1, log.read_text()
    assert "INSTRUSHARE_TOPIC_PREFIX '_lab' also begins the demo's ids" in log.read_text()
    assert not (tmp_path / "data").exists()


def test_ctrl_c_ends_the_wait_for_the_past_days_to_be_delivered(
    tmp_path: Path, database_url: str
) -> None:
    """No broker: the past day stays in the outboxes. The demo says every so often that it
    waits; Ctrl-C ends the wait at once, says what is kept, and the day is not counted done."""
    data_dir = tmp_path / "data" / "instrushare" / "demo"
    log = tmp_path / "demo.log"
    proc = _start_demo(tmp_path / "work", free_port(), tmp_path / "data", log, *SMALL,
                       DATABASE_URL=database_url, MQTT_URL="mqtt://127.0.0.1:1")
    try:
        _wait_for(proc, log, "left in the outboxes; Ctrl-C stops waiting", timeout=120)
        signalled = time.monotonic()
    finally:
        _stop(proc, timeout=30)
    assert time.monotonic() - signalled < 15
    text = log.read_text()
    said = text.find("stopping the demo: fleet, ingest, API and services")
    assert 0 <= said < text.find("not delivered (stopped)"), "the stop is said before it ends"
    assert f"not delivered (stopped): they stay in the outboxes in {data_dir / 'outbox'}" in text
    assert len(re.findall(r"not (all )?delivered", text)) == 1, "what is kept is said once"
    assert "simulated the last 1 days: " not in text and LIVE not in text
    assert (data_dir / INTERRUPTED).exists()
    assert _leftovers(tmp_path) == []


def test_a_broker_refusing_the_log_in_stops_the_demo_saying_why(
    tmp_path: Path, database_url: str, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    """A broker that lets no one in without a password (the demo's gateways take none): the
    ingest cannot log in and nothing would reach the dashboard, so the demo stops at once with
    the broker's answer and what to check, exit 1, nothing left running."""
    broker = mosquitto_factory(users={"ingest": "right-password-123"}, acl="topic readwrite #\n")
    log = tmp_path / "demo.log"
    proc = _start_demo(tmp_path / "work", free_port(), tmp_path / "data", log, *SMALL,
                       DATABASE_URL=database_url, MQTT_URL=broker.url)
    try:
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            _stop(proc, timeout=30)
    text = log.read_text()
    assert code == 1, text
    assert "instrushare: demo: the ingest stopped, so the demo did:" in text
    assert "refused the log-in" in text and "MQTT_URL" in text
    assert _leftovers(tmp_path) == []
