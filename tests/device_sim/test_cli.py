"""``instrushare sim`` as an operator runs it: a small fleet against the local broker."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from instrushare.cli import app
from tests.gateway.helpers import IngestStandIn


def _sim(
    tmp_path: Path, env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "instrushare", "sim",
            "--truth", str(tmp_path / "sim" / "truth.json"),
            "--state-dir", str(tmp_path / "sim" / "outbox"),
            *args,
        ],
        env=os.environ | {"COLUMNS": "100"} | env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )  # fmt: skip


def test_sim_runs_a_small_fleet_to_completion(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, database_url: str
) -> None:
    ingest = IngestStandIn(mqtt_url, topic_prefix, "w1", 0.2)
    try:
        done = _sim(
            tmp_path,
            {"MQTT_URL": mqtt_url, "INSTRUSHARE_TOPIC_PREFIX": topic_prefix,
             "DATABASE_URL": database_url},
            "--instruments", "3", "--days", "0.02", "--seed", "4", "--drain-timeout", "20",
        )  # fmt: skip
    finally:
        ingest.stop("offline")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "3 instruments" in out and "ground truth in" in out
    ticks = round(0.02 * 86400 / 60)
    # rich prints the progress bar once, when it ends, if the output is not a terminal
    assert "simulating" in out and f"{ticks}/{ticks} ticks" in out, out
    assert "0 dropped, all delivered" in out, out
    assert int(out.split(" messages in ")[0].split()[-1]) >= 3

    truth = json.loads((tmp_path / "sim" / "truth.json").read_text(encoding="utf-8"))
    assert truth["seed"] == 4 and len(truth["instruments"]) == 3
    assert list((tmp_path / "sim" / "outbox").glob("gw-*.sqlite3"))

    # --register put the fleet in the registry first
    with psycopg.connect(database_url) as conn:
        ids = {r[0] for r in conn.execute("SELECT id FROM instrument")}
        assert ids == {i["id"] for i in truth["instruments"]}
        assert conn.execute("SELECT count(*) FROM institution").fetchone() == (5,)


def test_sim_fails_when_nothing_takes_the_data(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    """No ingest worker online: the gateways keep their data and the command says so."""
    done = _sim(
        tmp_path,
        {"MQTT_URL": mqtt_url, "INSTRUSHARE_TOPIC_PREFIX": topic_prefix},
        "--instruments", "2", "--days", "0.01", "--no-register", "--drain-timeout", "1",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT all delivered" in done.stdout
    assert "within 1 s (2 gateway(s): no ingest worker online)" in done.stderr, done.stderr
    assert (tmp_path / "sim" / "truth.json").exists()


def _open_files_limit(soft: int, hard: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_sim_raises_its_open_files_limit_for_a_large_fleet(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    """Three files per gateway: 100 instruments do not fit in a soft limit of 200, which the
    sim raises (up to the hard limit) rather than fail midway through opening the outboxes."""
    done = subprocess.run(
        [sys.executable, "-m", "instrushare", "sim", "--instruments", "100", "--days", "0.003",
         "--no-register", "--drain-timeout", "0", "--truth", str(tmp_path / "truth.json"),
         "--state-dir", str(tmp_path / "outbox")],
        env=os.environ | {"MQTT_URL": mqtt_url, "INSTRUSHARE_TOPIC_PREFIX": topic_prefix},
        capture_output=True, text=True, timeout=120, preexec_fn=_open_files_limit(200, 4096))
    # every gateway started and ran; nothing took the data, which the outboxes keep (a
    # gateway of a busy machine may not have heard that no ingest is online yet)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "4/4 ticks" in done.stdout, done.stdout + done.stderr
    why = re.search(r"not delivered within 0 s \((.*)\)", done.stderr)
    assert why, done.stderr
    held = re.findall(r"(?:^|; )(\d+) gateway\(s\): ([^;]+)", why[1])
    assert sum(int(n) for n, _ in held) == 100, done.stderr
    assert {reason for _, reason in held} <= {"no ingest worker online", "subscribing"}


def test_sim_refuses_a_fleet_beyond_the_hard_open_files_limit(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "instrushare", "sim", "--instruments", "100", "--days", "0.003",
         "--no-register", "--truth", str(tmp_path / "truth.json"),
         "--state-dir", str(tmp_path / "outbox")],
        env=os.environ | {"MQTT_URL": "mqtt://127.0.0.1:1", "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60, preexec_fn=_open_files_limit(200, 200))
    assert done.returncode == 2, done.stdout + done.stderr
    assert ("100 instruments need about 364 open files, and this process may open at most 200"
            " (ulimit -Hn): raise that limit, or simulate at most 45") in done.stderr, done.stderr
    assert not (tmp_path / "truth.json").exists()


def test_a_sim_on_the_outboxes_of_one_running_says_so(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    """A second sim on the same --state-dir and ids finds the outboxes taken: one line saying
    so and exit code 2, not a traceback; the first one goes on."""
    args = ["--instruments", "2", "--days", "1", "--no-register", "--drain-timeout", "1",
            "--state-dir", str(tmp_path / "outbox")]
    env = os.environ | {"MQTT_URL": mqtt_url, "INSTRUSHARE_TOPIC_PREFIX": topic_prefix}
    first = subprocess.Popen(
        [sys.executable, "-m", "instrushare", "sim", *args, "--speed", "600",
         "--truth", str(tmp_path / "first.json")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        assert "ground truth in" in first.stdout.readline()  # running
        second = subprocess.run(
            [sys.executable, "-m", "instrushare", "sim", *args,
             "--truth", str(tmp_path / "second.json")],
            env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "another gateway agent has it open" in second.stderr, second.stderr
        assert f"(--state-dir {tmp_path / 'outbox'})" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr, second.stderr
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)


def test_sim_says_when_the_broker_was_not_reached(tmp_path: Path) -> None:
    """Undelivered because nothing listens at MQTT_URL: said so, not blamed on the ingest."""
    done = _sim(
        tmp_path, {"MQTT_URL": "mqtt://127.0.0.1:1"},
        "--instruments", "2", "--days", "0.01", "--no-register", "--drain-timeout", "1",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("within 1 s (2 gateway(s): not connected to the broker 127.0.0.1:1)"
            in done.stderr), done.stderr
    assert "ingest" not in done.stderr.split("not delivered")[-1], done.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sim_stops_on_a_signal_and_says_how_far_it_came(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, signum: signal.Signals
) -> None:
    """Also started in the background by a script, where SIGINT is ignored by default."""
    ingest = IngestStandIn(mqtt_url, topic_prefix, "w1", 0.2, confirm=False)  # ticks go live
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "instrushare", "sim", "--instruments", "2", "--days", "1",
             "--speed", "600", "--no-register", "--drain-timeout", "1",
             "--truth", str(tmp_path / "truth.json"), "--state-dir", str(tmp_path / "outbox")],
            env=os.environ | {"MQTT_URL": mqtt_url, "INSTRUSHARE_TOPIC_PREFIX": topic_prefix},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        assert proc.stdout is not None
        assert "ground truth in" in proc.stdout.readline()  # running
        time.sleep(1.5)  # some ticks played
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        ingest.stop("offline")
    assert proc.returncode == 1, out + err  # nothing confirmed the data: the outboxes keep it
    assert re.search(r"stopped at tick \d+ of 1440 \(\d{4}-\d\d-\d\d \d\d:\d\d UTC simulated\)",
                     out) and "NOT all delivered" in out


def test_a_signal_while_waiting_for_delivery_stops_the_sim_at_once(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    """Every tick played, nothing takes the data: a signal ends the wait for the outboxes,
    which keep what they hold, long before --drain-timeout."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "instrushare", "sim", "--instruments", "2", "--days", "0.01",
         "--no-register", "--drain-timeout", "120", "--truth", str(tmp_path / "truth.json"),
         "--state-dir", str(tmp_path / "outbox")],
        env=os.environ | {"MQTT_URL": mqtt_url, "INSTRUSHARE_TOPIC_PREFIX": topic_prefix,
                          "COLUMNS": "120"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # ends when the process does, if the wait is never announced
        if "waiting up to 120 s for the platform to take" in line:
            break
    signalled = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - signalled < 10, out + err
    assert proc.returncode == 1, out + err  # something was not delivered
    assert "stopped" not in out  # all ticks were played
    assert "delivering" in out and "messages left in the outboxes" in out, out
    sent = int(out.split(" messages in ")[0].split()[-1])  # none delivered: all are kept
    assert f"NOT all delivered: {sent} kept in the outboxes in {tmp_path / 'outbox'}" in out, out
    assert f"{sent} message(s) not delivered (stopped)" in err, err


_IN_AN_HOUR = datetime.now(UTC) + timedelta(hours=1)
_AN_HOUR_AGO = _IN_AN_HOUR - timedelta(hours=2)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--instruments", "0"], "--instruments"),
        (["--speed", "-1"], "--speed"),
        (["--days", "0"], "--days"),
        (["--tick", "0"], "--tick"),
        (["--start", "yesterday"], "--start"),
        (["--days", "inf"], "--days"),
        (["--days", "40"], "more than 30 days ago: the ingest refuses data that old"),
        (["--start", "3000-01-01"], "ahead of the clock"),
        # paced by --speed, data is sent as it is simulated: it must be neither ahead of the
        # clock nor too old then either
        (["--speed", "1", "--start", f"{_IN_AN_HOUR:%Y-%m-%dT%H:%M:%S%z}"],
         "ahead of the clock"),
        (["--speed", "100", "--start", f"{_AN_HOUR_AGO:%Y-%m-%dT%H:%M:%S%z}"],
         "at --speed 100, it would report up to"),
        (["--speed", "0.01", "--days", "1"], "more than 30 days later"),
    ],
)
def test_sim_refuses_bad_arguments(tmp_path: Path, args: list[str], option: str) -> None:
    result = CliRunner().invoke(
        app,
        ["sim", *args, "--no-register", "--truth", str(tmp_path / "truth.json"),
         "--state-dir", str(tmp_path / "outbox")],
        env={"MQTT_URL": "mqtt://127.0.0.1:1", "COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output and option in result.output, result.output
    assert not (tmp_path / "truth.json").exists()


@pytest.mark.parametrize("option", ["--truth", "--state-dir"])
def test_sim_refuses_paths_it_cannot_use_before_writing_anything(
    tmp_path: Path, database_url: str, option: str,
) -> None:
    """A --truth whose folder is a file, or a --state-dir that is one, is refused naming the
    option (exit 2), before the registry is written: not an OS error after it."""
    blocker = tmp_path / "run1.out"
    blocker.write_text("a file")
    paths = {"--truth": str(tmp_path / "truth.json"), "--state-dir": str(tmp_path / "outbox")}
    paths[option] = str(blocker / "truth.json") if option == "--truth" else str(blocker)
    result = CliRunner().invoke(
        app,
        ["sim", "--instruments", "2", "--days", "0.01", *(a for kv in paths.items() for a in kv)],
        env={"MQTT_URL": "mqtt://127.0.0.1:1", "DATABASE_URL": database_url, "COLUMNS": "200"},
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output and option in result.output, result.output
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM instrument").fetchone() == (0,)
