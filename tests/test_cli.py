"""The ``instrushare`` command as a person runs it: bad settings end it with what to fix and
exit code 2, a database, broker, port or file that fails it with one line and exit code 1,
never a traceback; each service loads only its own code."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from tests.conftest import PG_ADMIN_URL
from tests.services import Mosquitto


def test_invalid_settings_name_each_field_and_exit_2() -> None:
    env = {**os.environ, "INSTRUSHARE_API_POOL_MIN_SIZE": "0",
           "INSTRUSHARE_API_EVALUATION__ASSESSED_POINTS": "20"}
    done = subprocess.run([sys.executable, "-m", "instrushare", "api"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "instrushare: invalid settings (ApiSettings):",
        "  pool_min_size (INSTRUSHARE_API_POOL_MIN_SIZE): Input should be greater than or"
        " equal to 1",
        "  evaluation (INSTRUSHARE_API_EVALUATION): Value error, operation, sharing,"
        " management and assessed points add up to 120, not 100",
    ]


LOADED = """
import sys
from instrushare.cli import main
sys.argv = ["instrushare", *sys.argv[1:], "--help"]
try:
    main()
except SystemExit:
    pass
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})), file=sys.stderr)
"""
HEAVY = {"gateway", "ingest", "device_sim", "monitor_api", "fastapi", "uvicorn", "pandas",
         "openpyxl", "asyncua", "pymodbus"}


@pytest.mark.parametrize(("command", "needs"), [
    (["ingest"], {"ingest"}),
    (["gateway"], {"gateway", "pymodbus"}),  # OPC UA only for instruments that use it
    (["api"], {"monitor_api", "fastapi", "openpyxl"}),
    (["sim"], {"device_sim", "gateway", "pymodbus"}),
])
def test_a_command_loads_only_its_service(command: list[str], needs: set[str]) -> None:
    done = subprocess.run([sys.executable, "-c", LOADED, *command], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Usage: " in done.stdout
    loaded = set(done.stderr.split())
    assert loaded & HEAVY == needs


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def unmigrated_database() -> Iterator[str]:
    name = f"instrushare_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield conninfo.make_conninfo(PG_ADMIN_URL, dbname=name)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize("command", [
    ["db", "migrate"], ["db", "prune", "--dry-run"], ["api", "--create-admin-token"],
    ["dead-letters", "list"], ["ingest"], ["api"]])
def test_a_database_that_fails_ends_a_command_with_one_line(
    command: list[str], unmigrated_database: str
) -> None:
    down = run("instrushare", *command, DATABASE_URL="postgresql://postgres@127.0.0.1:1/x")
    assert down.returncode == 1
    assert "port 1 failed: Connection refused" in down.stderr.splitlines()[-1]
    if command != ["db", "migrate"]:  # which makes the schema
        empty = run("instrushare", *command, DATABASE_URL=unmigrated_database)
        assert empty.returncode == 1
        assert empty.stderr.splitlines()[-1].endswith("run `instrushare db migrate` first")


def test_a_schema_behind_the_code_asks_for_a_migration(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        [(last,)] = conn.execute("DELETE FROM schema_migration WHERE name ="
                                 " (SELECT max(name) FROM schema_migration) RETURNING name")
    for command in (["api"], ["ingest"]):
        done = run("instrushare", *command, DATABASE_URL=database_url)
        assert (done.returncode, done.stderr) == (1, (
            "instrushare: the database schema is behind this version (1 migration(s) not"
            f" applied, from {last}): run `instrushare db migrate` first\n"))


@pytest.mark.parametrize(("env", "says"), [
    ({"MQTT_URL": "http://127.0.0.1:1883"}, "MQTT_URL: Value error, MQTT URL must start with"),
    ({"MQTT_URL": "mqtt://gw:secret@127.0.0.1:99999"},
     "Port out of range 0-65535 in 'mqtt://gw:***@127.0.0.1:99999'"),
    ({"DATABASE_URL": "mysql://root@127.0.0.1/x"}, "DATABASE_URL: Value error, must start"),
    ({"DATABASE_URL": "127.0.0.1:5432/x"}, "DATABASE_URL: Value error, is neither a"),
    ({"DATABASE_URL": "postgresql://u:secret@127.0.0.1:99999/x"},
     "DATABASE_URL: Value error, port 99999 is not a port (1-65535)"),
    ({"INSTRUSHARE_TOPIC_PREFIX": "a/b#"},
     "topic_prefix (INSTRUSHARE_TOPIC_PREFIX): String should match pattern"),
])
def test_bad_addresses_in_the_environment_are_settings_errors(
    env: dict[str, str], says: str
) -> None:
    done = run("instrushare", "ingest", **env)
    assert done.returncode == 2
    assert says in done.stderr and "secret" not in done.stderr


def test_settings_errors_the_environment_cannot_parse_or_that_disagree_exit_2() -> None:
    unparsable = run("instrushare", "api", INSTRUSHARE_API_EVALUATION__STAR_SCORES="abc")
    assert (unparsable.returncode, unparsable.stderr.splitlines()[0]) == (
        2, 'instrushare: invalid settings in the environment: error parsing value for field'
           ' "evaluation" from source "EnvSettingsSource"')
    pool = run("instrushare", "api", INSTRUSHARE_API_POOL_MIN_SIZE="20",
               INSTRUSHARE_API_POOL_MAX_SIZE="5")
    assert pool.returncode == 2
    assert "pool_min_size (20) must not exceed pool_max_size (5)" in pool.stderr


def test_infinite_or_not_a_number_settings_are_refused() -> None:
    ingest = run("instrushare", "ingest", "--batch-max-delay-s", "inf")
    api = run("instrushare", "api", INSTRUSHARE_API_HEARTBEAT_TIMEOUT_S="nan")
    assert (ingest.returncode, api.returncode) == (2, 2)
    assert "batch_max_delay_s (INSTRUSHARE_BATCH_MAX_DELAY_S): Input should be a finite" \
        in ingest.stderr
    assert "heartbeat_timeout_s (INSTRUSHARE_API_HEARTBEAT_TIMEOUT_S): Input should be a" \
        in api.stderr


def test_python_m_ingest_is_the_same_command() -> None:
    done = run("ingest", "--batch-max-messages", "0")
    assert done.returncode == 2
    assert "batch_max_messages (INSTRUSHARE_BATCH_MAX_MESSAGES): Input should be greater" \
        in done.stderr


def test_ports_out_of_range_or_in_use_and_unwritable_files_are_named(
    tmp_path: Path, database_url: str
) -> None:
    for command in (["api", "--port", "70000"], ["ingest", "--metrics-port", "0"]):
        assert run("instrushare", *command).returncode == 2
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        api = run("instrushare", "api", "--port", str(port), DATABASE_URL=database_url)
        metrics = run("instrushare", "ingest", "--metrics-port", str(port),
                      DATABASE_URL=database_url)
    assert (api.returncode, api.stderr.splitlines()[-1]) == (
        1, f"instrushare: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert (metrics.returncode, metrics.stderr.splitlines()[-1]) == (
        1, f"instrushare: cannot serve metrics on :{port}: Address already in use")
    schema = run("instrushare", "protocol", "schema", "--output", str(tmp_path / "no" / "s.json"))
    assert (schema.returncode, schema.stderr) == (
        1, f"instrushare: No such file or directory: {tmp_path / 'no' / 's.json'}\n")


def test_retiring_a_worker_the_broker_does_not_know_fails(
    mqtt_url: str, database_url: str
) -> None:
    worker = f"never-{uuid.uuid4().hex[:8]}"
    done = run("instrushare", "ingest", "--worker-id", worker, "--retire", MQTT_URL=mqtt_url,
               DATABASE_URL=database_url)
    assert done.returncode == 1
    assert f"the broker held no session for worker {worker!r}" in done.stderr


def test_an_unreachable_broker_is_reported_while_the_ingest_waits_for_it(
    database_url: str
) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "instrushare", "ingest"],
                            env={**os.environ, "MQTT_URL": "mqtt://127.0.0.1:1",
                                 "DATABASE_URL": database_url},
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(2)]
    finally:
        proc.terminate()
        proc.wait(30)
    assert "WARNING ingest: cannot reach the broker at 127.0.0.1:1; retrying" in lines[1]


def test_a_broker_refusing_the_login_is_reported_as_such(
    mosquitto_factory: Callable[..., Mosquitto], database_url: str
) -> None:
    broker = mosquitto_factory(users={"ingest-w1": "right"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "instrushare", "ingest", "--worker-id", "w1"],
        env={**os.environ, "MQTT_URL": f"mqtt://ingest-w1:wrong@127.0.0.1:{broker.port}",
             "DATABASE_URL": database_url},
        stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # paho tries again after a second
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert err.count("WARNING ingest: broker refused the connection: Not authorized") >= 2
    assert "lost the broker" not in err and "wrong" not in err
