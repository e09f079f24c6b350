"""The ``instrushare`` command: one entry point, each service's code imported only when run."""

from __future__ import annotations

import importlib
import json
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import typer.main
from pydantic import ValidationError
from typer.core import MarkupMode, TyperGroup

from instrushare.protocol import MAX_PAST_AGE, MIN_RETENTION_DAYS
from instrushare.settings import ServiceSettings, describe, settings_class

if TYPE_CHECKING:
    from rich.progress import Progress

    from ingest.dead_letters import Selection

_SERVICES = {
    "gateway": ("gateway.cli", "gateway"),
    "ingest": ("ingest.cli", "ingest"),
    "sim": ("device_sim.cli", "sim"),
    "api": ("monitor_api.cli", "api"),
}
"""Each service owns its command (module, function), imported only when that command runs or
help lists it: an ingest worker need not load the API, nor a gateway the simulator."""
_MARKUP: MarkupMode = None
"""Help as click writes it, rewrapped to the terminal: typer's rich panels cut long option names
short at 80 columns and print a docstring's line breaks as they are."""


class _Services(TyperGroup):
    # ``Any``: typer's click types are private to it (typer._click)
    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *_SERVICES]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in _SERVICES:
            return super().get_command(ctx, cmd_name)
        module, function = _SERVICES[cmd_name]
        # the top level offers completion
        service = typer.Typer(add_completion=False, rich_markup_mode=_MARKUP)
        service.command(cmd_name)(getattr(importlib.import_module(module), function))
        return typer.main.get_command(service)


app = typer.Typer(
    cls=_Services, no_args_is_help=True, rich_markup_mode=_MARKUP,
    help="Monitor how large research instruments run and are shared.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
protocol_app = typer.Typer(no_args_is_help=True, help="Wire protocol.")
dead_letters_app = typer.Typer(
    no_args_is_help=True,
    help="Messages the ingest refused: count them, replay them once the cause is fixed.",
)
app.add_typer(db_app, name="db")
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(protocol_app, name="protocol")

_MAX_DAYS = 100_000
"""Days: more would count back past the first dates there are (and keeps nothing more)."""

_Reason = Annotated[
    str | None, typer.Option(help="Only this reason (e.g. unknown_instrument); default all.")
]
_Topic = Annotated[
    str, typer.Option(help="Only topics matching this SQL LIKE pattern: 'isv1/gw/%/data/ms-01'.")
]


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@db_app.command("migrate")
def db_migrate(
    create: Annotated[bool, typer.Option(help="Create the database if it does not exist.")] = True,
) -> None:
    """Apply pending migrations to DATABASE_URL (and TimescaleDB policies when available)."""
    from instrushare.db import ensure_database, migrate
    from instrushare.errors import MigrationFailed

    settings = ServiceSettings()
    if create and (created := ensure_database(settings.database_url)):
        typer.echo(f"created database {created}")
    try:
        report = migrate(settings.database_url)
    except MigrationFailed as exc:
        before = f"; applied before it: {', '.join(exc.applied)}" if exc.applied else ""
        _fail(1, f"migration {exc.name} failed and was rolled back:"
                 f" {_first_line(exc.__cause__ or exc)}{before}")
    typer.echo(
        f"applied {len(report.applied)} migration(s): {', '.join(report.applied) or 'none'}; "
        f"timescaledb {'on' if report.timescaledb else 'not available (plain PostgreSQL)'}"
    )


@db_app.command("prune")
def db_prune(
    samples_days: Annotated[
        int, typer.Option(min=MIN_RETENTION_DAYS, max=_MAX_DAYS,
                          help="Keep raw samples this long (the ingest takes data up to"
                               f" {MAX_PAST_AGE.days} days old).")
    ] = 400,
    messages_days: Annotated[
        int, typer.Option(min=MIN_RETENTION_DAYS, max=_MAX_DAYS,
                          help="Keep the dedup log of messages this long (as for samples).")
    ] = 60,
    dead_letters_days: Annotated[
        int, typer.Option(min=1, max=_MAX_DAYS,
                          help="Keep dead letters this long after they last arrived.")
    ] = 90,
    dry_run: Annotated[bool, typer.Option(help="Count what would go; delete nothing.")] = False,
) -> None:
    """Delete raw telemetry past its retention on plain PostgreSQL (TimescaleDB's policies do
    it there), after rolling up the availability it covers; and old dead letters."""
    import asyncio
    from datetime import UTC, datetime

    from monitor_api import ApiSettings
    from monitor_api.db import make_pool
    from monitor_api.retention import Retention, prune

    settings = ApiSettings()
    retention = Retention(samples_days, messages_days, dead_letters_days)
    _check_reachable(settings.database_url)

    async def run() -> None:
        pool = make_pool(settings)
        await pool.open()
        try:
            with _progress() as bar:
                task = bar.add_task("instruments", total=None)
                pruned = await prune(
                    pool.connection, now=datetime.now(UTC), timeout=settings.heartbeat_timeout,
                    retention=retention,
                    dry_run=dry_run,
                    progress=lambda done, total: bar.update(task, completed=done, total=total))
        finally:
            await pool.close()
        verb = "would delete" if dry_run else "deleted"
        if pruned.timescaledb:
            typer.echo(f"{verb} {pruned.dead_letters} dead letter(s); samples and messages"
                       " are left to TimescaleDB's retention policies")
        else:
            typer.echo(f"{verb} {pruned.samples} sample(s), {pruned.messages} message key(s),"
                       f" {pruned.dead_letters} dead letter(s)")

    asyncio.run(run())


def _check_reachable(database_url: str) -> None:
    """Check the database before the work: one not there or not migrated fails the command at
    once, before any progress is shown or a pool retries for half a minute."""
    from instrushare.db import check_schema

    check_schema(database_url)


def _progress() -> Progress:
    """A progress bar on stderr, gone when done: stdout keeps the result alone."""
    from rich.console import Console
    from rich.progress import Progress

    return Progress(console=Console(stderr=True), transient=True)


def _selection(reason: str | None, topic: str) -> Selection:
    from ingest.dead_letters import Selection

    try:
        return Selection(reason, topic)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--reason") from exc


@contextmanager
def _database_failure_ends(consequence: str = "") -> Iterator[None]:
    """A database that fails ends the command as ``main`` tells it, saying what became of
    the work."""
    from psycopg.errors import UndefinedTable

    from ingest.errors import IngestError

    try:
        yield
    except IngestError as exc:
        if isinstance(exc.__cause__, UndefinedTable):
            raise exc.__cause__ from None
        _fail(1, f"database failed: {_first_line(exc)}{consequence}")


def _first_line(exc: BaseException) -> str:
    """psycopg's messages go on with hints on further lines: the first says what failed."""
    return str(exc).strip().splitlines()[0]


@dead_letters_app.command("list")
def dead_letters_list(reason: _Reason = None, topic: _Topic = "%") -> None:
    """Count the dead letters in DATABASE_URL per reason and topic, and how often they
    were received (a gateway resends what is never confirmed)."""
    from rich.console import Console
    from rich.table import Column, Table
    from rich.text import Text

    from ingest._text import escape
    from ingest.dead_letters import summarize

    with _database_failure_ends():
        groups = summarize(ServiceSettings().database_url, _selection(reason, topic))
    if not groups:
        typer.echo("no dead letters")
        return
    header = ("reason", "topic", "count", "received", "first received", "last received")
    rows = [(g.reason, g.topic, str(g.count), str(g.arrivals), f"{g.first:%Y-%m-%d %H:%M:%S%z}",
             f"{g.last:%Y-%m-%d %H:%M:%S%z}") for g in groups]
    console = Console()
    if console.is_terminal:
        # values folded when the terminal is too narrow, never cut short: a reason and a
        # topic are what --reason and --topic take
        table = Table(*(Column(name, overflow="fold") for name in header))
        for row in rows:  # plain text (a topic's "[x]" is no style), escaped as piped
            table.add_row(*(Text(escape(cell)) for cell in row))
        console.print(table)
    else:  # piped or logged: whole values, tab-separated, a topic ready for --topic; a tab
        # or line break in a value escaped as COPY text writes it, so a line stays one row
        for row in (header, *rows):
            typer.echo("\t".join(map(escape, row)))
    typer.echo(f"{sum(g.count for g in groups)} dead letter(s), received"
               f" {sum(g.arrivals for g in groups)} time(s)")


@dead_letters_app.command("replay")
def dead_letters_replay(reason: _Reason = None, topic: _Topic = "%") -> None:
    """Handle the chosen dead letters again: stored now, or dead-lettered anew.

    Each is handled as the ingest would have on its arrival, but with the instrument registry
    as it is now. Use it once the cause is fixed: an instrument registered, a gateway binding
    corrected. Only those whose topic lies under INSTRUSHARE_TOPIC_PREFIX are replayed: the
    others are left, and if none does, nothing is.
    """
    from ingest import IngestConfig
    from ingest.dead_letters import replay, topic_prefixes

    config = IngestConfig()
    selection = _selection(reason, topic)
    _check_reachable(config.database_url)
    with _database_failure_ends():
        carried = topic_prefixes(config.database_url, selection)
    under = carried.pop(config.topic_prefix, 0)
    if carried:
        others = ", ".join(f"{prefix!r} ({n})" for prefix, n in carried.items())
        if not under:
            _fail(2, f"none of the {sum(carried.values())} chosen dead letter(s) has a topic"
                     f" under INSTRUSHARE_TOPIC_PREFIX {config.topic_prefix!r}; their topics"
                     f" start with {others}: set INSTRUSHARE_TOPIC_PREFIX to the prefix of the"
                     " ingest that refused them (nothing was replayed)")
        typer.echo(f"replaying the {under} chosen dead letter(s) under INSTRUSHARE_TOPIC_PREFIX"
                   f" {config.topic_prefix!r}; leaving those under other prefixes: {others}")
    with _database_failure_ends("; what was replayed so far is stored, the rest is"
                                " still in dead_letter"), _progress() as bar:
        task = bar.add_task("replaying", total=None)
        result = replay(
            config.database_url, selection, prefix=config.topic_prefix,
            session_max_gap=timedelta(seconds=config.session_max_gap_s),
            on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    written = result.written
    again = ", ".join(f"{n} {r}" for r, n in sorted(written.dead.items()))
    typer.echo(f"replayed {result.replayed} dead letter(s): {written.fresh} message(s) stored,"
               f" {written.duplicates} already stored, dead-lettered again: {again or 'none'}")


@protocol_app.command("schema")
def protocol_schema(
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of protocol v1 payloads."""
    from instrushare.protocol import json_schema

    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)


@app.command()
def demo(
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Dashboard and API port.")
    ] = 8000,
    instruments: Annotated[int, typer.Option(min=1, help="Simulated instruments.")] = 30,
    history_days: Annotated[
        int, typer.Option(min=1, max=29, help="Days simulated at once on the first run (the"
                                              " ingest takes data up to 30 days old).")
    ] = 3,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Database, outboxes and logins; a second run reuses them. "
            "Default: ~/.local/share/instrushare/demo ($XDG_DATA_HOME/instrushare/demo).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run everything on this machine: database, broker, ingest, API and a simulated fleet.

    Uses DATABASE_URL / MQTT_URL when set, otherwise embedded PostgreSQL and MQTT broker.
    """
    from instrushare.demo import DemoOptions, default_data_dir, run_demo

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    run_demo(
        DemoOptions.from_environment(
            data_dir=data_dir or default_data_dir(),
            port=port,
            instruments=instruments,
            history_days=history_days,
        ),
        stop=stop,
    )




def main(prog_name: str | None = None, args: list[str] | None = None) -> None:
    """The console script. Settings (options or environment) that do not validate end the
    command with a line per field to fix (exit 2); a database or file that fails it, with
    one line saying so (exit 1), not a traceback. ``-v`` shows the traceback as well."""
    from psycopg import Error as DatabaseError
    from psycopg.errors import UndefinedTable
    from psycopg_pool import PoolTimeout
    from pydantic_settings import SettingsError

    from instrushare.errors import DemoError, SchemaBehind

    try:
        app(prog_name=prog_name, args=args)
    except ValidationError as exc:
        _fail(2, f"invalid settings:\n{describe(exc, settings=settings_class(exc.title))}")
    except SettingsError as exc:
        _fail(2, f"invalid settings in the environment: {exc}")
    except UndefinedTable as exc:
        _fail(1, f"the database has no instrushare schema ({exc.diag.message_primary}):"
                 " run `instrushare db migrate` first")
    except SchemaBehind as exc:
        _fail(1, f"the database schema is behind this version ({exc}):"
                 " run `instrushare db migrate` first")
    except DemoError as exc:
        _fail(1, f"demo: {exc}")
    except (DatabaseError, PoolTimeout) as exc:
        _fail(1, f"database failed: {_first_line(exc)}")
    except OSError as exc:
        _fail(1, f"{exc.strerror or exc}: {exc.filename}" if exc.filename
              else exc.strerror or str(exc))


def _fail(code: int, message: str) -> NoReturn:
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("instrushare").exception("traceback")
    typer.echo(f"instrushare: {message}", err=True)
    raise SystemExit(code) from None
