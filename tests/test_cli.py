"""The ``instrushare`` command as a person runs it: bad settings end it with what to fix and
exit code 2, a database, broker, port or file that fails it with one line and exit code 1,
never a traceback; each service loads only its own code."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer.main
from psycopg import conninfo, sql
from pydantic import ValidationError

from instrushare.cli import app, main
from instrushare.settings import ServiceSettings, describe
from monitor_api.auth import hash_token
from tests.conftest import PG_ADMIN_URL
from tests.services import Mosquitto, Postgres, free_port


def test_invalid_settings_name_each_field_and_exit_2() -> None:
    env = {**os.environ, "INSTRUSHARE_API_POOL_MIN_SIZE": "0",
           "INSTRUSHARE_API_EVALUATION__ASSESSED_POINTS": "20"}
    done = subprocess.run([sys.executable, "-m", "instrushare", "api"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "instrushare: invalid settings:",
        "  pool_min_size (INSTRUSHARE_API_POOL_MIN_SIZE): Input should be greater than or"
        " equal to 1",
        "  evaluation (INSTRUSHARE_API_EVALUATION): operation, sharing, management and"
        " assessed points add up to 120, not 100",
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


def _every_command() -> list[tuple[list[str], list[str]]]:
    """The path of every command and subcommand, with the names of its options."""
    found: list[tuple[list[str], list[str]]] = []

    def walk(command: Any, ctx: Any, path: list[str]) -> None:
        found.append((path, [name for param in command.params if not param.hidden
                             for name in param.opts + param.secondary_opts]))
        for name in command.list_commands(ctx) if hasattr(command, "list_commands") else []:
            sub = command.get_command(ctx, name)
            walk(sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True),
                 [*path, name])

    root = typer.main.get_command(app)
    walk(root, root.make_context("instrushare", [], resilient_parsing=True), [])
    return found


def test_help_at_80_columns_shows_every_option_name_whole_and_rewraps_paragraphs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    commands = _every_command()
    assert {"db prune", "dead-letters replay", "api", "sim"} <= {" ".join(p) for p, _ in commands}
    for path, options in commands:
        with pytest.raises(SystemExit):
            main(prog_name="instrushare", args=[*path, "--help"])
        shown = capsys.readouterr().out
        assert "…" not in shown and max(map(len, shown.splitlines())) <= 80, shown
        for name in options:
            assert re.search(rf"(^|[\s,/]){re.escape(name)}([\s,]|$)", shown, re.M), (path, name)
        if path == ["dead-letters", "replay"]:  # the docstring's lines run on
            assert "instrument registry as it is now" in shown


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


def test_the_first_admin_token_is_printed_alone_and_its_id_beside_it(database_url: str) -> None:
    done = run("instrushare", "api", "--create-admin-token", "--label", "first",
               DATABASE_URL=database_url)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()  # alone on stdout, for TOKEN=$(...)
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT id, role, label FROM api_token WHERE token_hash = %s",
                           (hash_token(token),)).fetchone()
    assert row is not None and row[1:] == ("admin", "first")
    assert done.stderr.splitlines() == [
        f"token {row[0]} (label 'first'); GET /tokens lists the tokens issued,"
        f" DELETE /tokens/{row[0]} revokes this one"]


def test_a_schema_behind_the_code_asks_for_a_migration(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        [(last,)] = conn.execute("DELETE FROM schema_migration WHERE name ="
                                 " (SELECT max(name) FROM schema_migration) RETURNING name")
    for command in (["api"], ["ingest"]):
        done = run("instrushare", *command, DATABASE_URL=database_url)
        assert (done.returncode, done.stderr) == (1, (
            "instrushare: the database schema is behind this version (1 migration(s) not"
            f" applied, from {last}): run `instrushare db migrate` first\n"))


def test_a_migration_the_database_refuses_is_named_with_what_stays_applied(
    unmigrated_database: str,
) -> None:
    with psycopg.connect(unmigrated_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE api_token (id int)")  # in the way of 0003_registry.sql
    done = run("instrushare", "db", "migrate", DATABASE_URL=unmigrated_database)
    assert (done.returncode, done.stderr.splitlines()[-1]) == (1, (
        "instrushare: migration 0003_registry.sql failed and was rolled back: relation"
        ' "api_token" already exists; applied before it: 0001_telemetry.sql, 0002_ingest.sql'))
    with psycopg.connect(unmigrated_database) as conn:
        assert [name for name, in conn.execute(
            "SELECT name FROM schema_migration ORDER BY name")] == [
            "0001_telemetry.sql", "0002_ingest.sql"]


@pytest.fixture
def private_postgres() -> Iterator[Postgres]:
    """A server of the test's own, whose ``postgres`` database it may close to roles."""
    workdir = Path(tempfile.mkdtemp(prefix="instrushare-postgres-"))
    try:
        server = Postgres(workdir)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir)


def test_migrate_goes_to_the_maintenance_database_only_to_create_a_missing_one(
    private_postgres: Postgres,
) -> None:
    """An owner role kept out of ``postgres`` (CONNECT revoked, as on a hardened server)
    migrates its own database; one missing is named, not the database it could not reach."""
    with psycopg.connect(private_postgres.url(), autocommit=True) as conn:
        conn.execute("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC")
        conn.execute("CREATE ROLE owner LOGIN CREATEDB")
        conn.execute("CREATE DATABASE instrushare OWNER owner")
    done = run("instrushare", "db", "migrate",
               DATABASE_URL=private_postgres.url("instrushare", user="owner"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("applied ") and "0001_telemetry.sql" in done.stdout
    missing = run("instrushare", "db", "migrate",
                  DATABASE_URL=private_postgres.url("missing", user="owner"))
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[-1].endswith('database "missing" does not exist')
    created = run("instrushare", "db", "migrate", DATABASE_URL=private_postgres.url("fresh"))
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines()[0] == "created database fresh"


@pytest.mark.parametrize(("env", "says"), [
    ({"MQTT_URL": "http://127.0.0.1:1883"}, "MQTT_URL: MQTT URL must start with"),
    ({"MQTT_URL": "mqtt://gw:secret@127.0.0.1:99999"},
     "Port out of range 0-65535 in 'mqtt://gw:***@127.0.0.1:99999'"),
    ({"MQTT_URL": "mqtt://gw:secret#1/x@127.0.0.1:1883"},  # # and / not percent-encoded
     "password holds a character URLs reserve (/ ? #): percent-encode it (%2F, %3F, %23; and"
     " @ as %40, : as %3A, % as %25) in 'mqtt://gw:***@127.0.0.1:1883'"),
    ({"DATABASE_URL": "mysql://root@127.0.0.1/x"}, "DATABASE_URL: must start"),
    ({"DATABASE_URL": "127.0.0.1:5432/x"}, "DATABASE_URL: is neither a"),
    ({"DATABASE_URL": "postgresql://u:secret@127.0.0.1:99999/x"},
     "DATABASE_URL: port 99999 is not a port (1-65535)"),
    ({"DATABASE_URL": "postgresql://u:secret%@127.0.0.1/x"},  # % not percent-encoded
     'DATABASE_URL: is not a valid postgresql:// URL (invalid percent-encoded token: "***")\n'),
    ({"DATABASE_URL": "postgresql://u:secret@[::1/x"},
     'DATABASE_URL: is not a valid postgresql:// URL (end of string reached when looking for'
     ' matching "]" in IPv6 host address in URI: "postgresql://u:***@[::1/x")\n'),
    ({"INSTRUSHARE_TOPIC_PREFIX": "a/b#"},
     "topic_prefix (INSTRUSHARE_TOPIC_PREFIX): String should match pattern"),
])
def test_bad_addresses_in_the_environment_are_settings_errors(
    env: dict[str, str], says: str
) -> None:
    done = run("instrushare", "ingest", **env)
    assert done.returncode == 2
    assert says in done.stderr and "secret" not in done.stderr


def test_the_demo_refuses_bad_settings_before_it_starts_anything(tmp_path: Path) -> None:
    done = run("instrushare", "demo", "--data-dir", str(tmp_path / "demo"), "--port",
               str(free_port()), DATABASE_URL="notaurl", MQTT_URL="http://127.0.0.1:1883")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "instrushare: invalid settings:",
        '  DATABASE_URL: is neither a postgresql:// URL nor libpq key=value pairs'
        ' (missing "=")',
        "  MQTT_URL: MQTT URL must start with mqtt:// or mqtts:// (got"
        " 'http://127.0.0.1:1883')",
    ]
    assert not (tmp_path / "demo").exists()  # no embedded database started
    services = run("instrushare", "demo", "--data-dir", str(tmp_path / "demo"), "--port",
                   str(free_port()), INSTRUSHARE_API_POOL_MIN_SIZE="20")  # the API's own
    assert services.returncode == 2
    assert services.stderr.splitlines() == [
        "instrushare: invalid settings:",
        "  pool_min_size (INSTRUSHARE_API_POOL_MIN_SIZE), pool_max_size"
        " (INSTRUSHARE_API_POOL_MAX_SIZE): pool_min_size (20) must not exceed pool_max_size"
        " (10)"]
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("command", [["sim", "--no-register"], ["demo"]])
def test_simulated_gateways_take_no_broker_credentials(
    tmp_path: Path, command: list[str]
) -> None:
    """They log in as their own ids: a user name in MQTT_URL is named as the setting to fix,
    before anything starts, and its password is not shown."""
    done = run("instrushare", *command, "--data-dir" if command == ["demo"] else "--state-dir",
               str(tmp_path / "data"), MQTT_URL="mqtt://ingest:secret@127.0.0.1:1883")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "instrushare: invalid settings:",
        "  MQTT_URL: the simulated gateways log in as themselves (user name: their gateway id,"
        " no password), so the URL takes no user name or password: point it at a broker that"
        " lets them in",
    ]
    assert not (tmp_path / "data").exists()


def test_a_setting_given_by_name_is_named_by_its_environment_variable() -> None:
    with pytest.raises(ValidationError) as caught:
        ServiceSettings(mqtt_url="http://127.0.0.1:1883", topic_prefix="a/b")
    assert [line.split(":")[0] for line in describe(
        caught.value, settings=ServiceSettings).splitlines()] == [
        "  mqtt_url (MQTT_URL)", "  topic_prefix (INSTRUSHARE_TOPIC_PREFIX)"]


def test_settings_errors_the_environment_cannot_parse_or_that_disagree_exit_2() -> None:
    unparsable = run("instrushare", "api", INSTRUSHARE_API_EVALUATION__STAR_SCORES="abc")
    assert (unparsable.returncode, unparsable.stderr.splitlines()[0]) == (
        2, 'instrushare: invalid settings in the environment: error parsing value for field'
           ' "evaluation" from source "EnvSettingsSource"')
    pool = run("instrushare", "api", INSTRUSHARE_API_POOL_MIN_SIZE="20",
               INSTRUSHARE_API_POOL_MAX_SIZE="5")
    assert (pool.returncode, pool.stderr.splitlines()) == (2, [
        "instrushare: invalid settings:",
        "  pool_min_size (INSTRUSHARE_API_POOL_MIN_SIZE), pool_max_size"
        " (INSTRUSHARE_API_POOL_MAX_SIZE): pool_min_size (20) must not exceed pool_max_size"
        " (5)"])
    window = run("instrushare", "ingest", INSTRUSHARE_RECEIVE_MAXIMUM="100")
    assert window.returncode == 2
    assert window.stderr.splitlines()[1].startswith(
        "  receive_maximum (INSTRUSHARE_RECEIVE_MAXIMUM), batch_max_messages"
        " (INSTRUSHARE_BATCH_MAX_MESSAGES): receive_maximum (100) must be >= batch_max_messages"
        " (1000): ")


def test_mqtt_timings_beyond_what_mqtt_can_send_are_settings_errors() -> None:
    """Not a worker whose network thread dies on its first CONNECT and which then waits,
    connected to nothing, until it is stopped."""
    done = run("instrushare", "ingest", INSTRUSHARE_KEEPALIVE_S="65536",
               INSTRUSHARE_SESSION_EXPIRY_S=str(2**32),
               DATABASE_URL="postgresql://postgres@127.0.0.1:1/x")
    assert (done.returncode, done.stderr.splitlines()) == (2, [
        "instrushare: invalid settings:",
        "  session_expiry_s (INSTRUSHARE_SESSION_EXPIRY_S): Input should be less than or equal"
        " to 4294967295",
        "  keepalive_s (INSTRUSHARE_KEEPALIVE_S): Input should be less than or equal to 65535"])


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


@pytest.mark.parametrize(("option", "days"), [
    ("--samples-days", 30), ("--messages-days", 30), ("--dead-letters-days", 0)])
def test_a_retention_too_short_names_its_option(option: str, days: int) -> None:
    done = run("instrushare", "db", "prune", option, str(days))
    assert done.returncode == 2
    assert f"Invalid value for '{option}'" in done.stderr


def _api_stopped_by(
    database_url: str, stop: Callable[[subprocess.Popen[str]], None], *, own_group: bool = False
) -> tuple[int, str]:
    """Run ``instrushare api`` until it has started, ``stop`` it, and return its exit code and
    its log (stderr); ``own_group``: in a process group of its own, which ``stop`` may signal."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "instrushare", "api", "--port", str(free_port())],
        env={**os.environ, "DATABASE_URL": database_url}, stderr=subprocess.PIPE, text=True,
        start_new_session=own_group)
    try:
        assert proc.stderr is not None
        while "Application startup complete" not in proc.stderr.readline():
            assert proc.poll() is None
        stop(proc)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_api_stopped_by_a_signal_shuts_down_and_exits_0(
    signum: signal.Signals, database_url: str
) -> None:
    code, err = _api_stopped_by(database_url, lambda proc: proc.send_signal(signum))
    assert code == 0
    assert "Application shutdown complete" in err and "Traceback" not in err


def test_the_api_signalled_and_then_its_group_still_shuts_the_app_down(
    database_url: str,
) -> None:
    """uvicorn takes a second SIGINT as "force quit", skipping the app's shutdown (its pool
    and background work); ``timeout -s INT`` sends one to the process and one to its group."""

    def signal_it_and_its_group(proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        proc.send_signal(signal.SIGINT)
        while "Shutting down" not in proc.stderr.readline():
            assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGINT)

    code, err = _api_stopped_by(database_url, signal_it_and_its_group, own_group=True)
    assert code == 0
    assert "Application shutdown complete" in err and "Traceback" not in err


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
    assert "retired:" not in done.stderr  # it retired nothing


@pytest.mark.parametrize(("address", "cause"), [
    ("127.0.0.1:1", "(Connection refused)"),
    ("nohost.invalid:1883", "("),  # the resolver's words: no such name, or no DNS at all
])
def test_an_unreachable_broker_is_reported_with_its_cause_while_the_ingest_waits_for_it(
    address: str, cause: str, database_url: str
) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "instrushare", "ingest"],
                            env={**os.environ, "MQTT_URL": f"mqtt://{address}",
                                 "DATABASE_URL": database_url},
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(2)]
    finally:
        proc.terminate()
        _, rest = proc.communicate(timeout=30)
    assert f"WARNING ingest: cannot reach the broker at {address} {cause}" in lines[1]
    assert lines[1].endswith("; retrying\n")
    assert proc.returncode == 0
    assert "WARNING" not in rest  # it never connected: no state to publish, no failure to say


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_broker_refusing_the_log_in_at_start_ends_the_ingest_with_what_to_check(
    protocol: str, mosquitto_factory: Callable[..., Mosquitto], database_url: str
) -> None:
    broker = mosquitto_factory(users={"ingest-w1": "right"})
    for retire in ([], ["--retire"]):
        done = run("instrushare", "ingest", "--worker-id", "w1", *retire,
                   MQTT_URL=f"mqtt://ingest-w1:wrong@127.0.0.1:{broker.port}",
                   INSTRUSHARE_MQTT_PROTOCOL=protocol, DATABASE_URL=database_url)
        assert (done.returncode, done.stderr.splitlines()[-1]) == (1, (
            f"instrushare ingest: the broker at 127.0.0.1:{broker.port} refused the log-in"
            " (Not authorized): check the user name and password in MQTT_URL, and the"
            " broker's password file and ACL"))
        assert "WARNING" not in done.stderr and "wrong" not in done.stderr
