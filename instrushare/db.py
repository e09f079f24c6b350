"""Schema migrations: numbered SQL files applied once each, in order, under an advisory lock;
and the per-instrument locks the ingest and the API share."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from instrushare.errors import MigrationFailed, SchemaBehind

logger = logging.getLogger("instrushare.db")

_LOCK_KEY = 0x1257_5AE5
_TIMESCALE_FILE = "timescale.sql"


# A transaction-level lock per instrument of the array parameter, taken in one order by every
# caller. The ingest takes them exclusive while it writes an instrument's samples and derives
# its sessions: whoever runs second sees the other's committed work. The API takes them shared
# while it computes and stores rollups (session_month; state_day and state_month), so that a
# row is never stored from data a concurrent batch is rewriting, nor after that batch deleted
# it.
_INSTRUMENT_LOCKS = """
SELECT count({function}(hashtextextended(i, 7411)))
FROM (SELECT DISTINCT unnest(%b::text[]) AS i ORDER BY 1) t
"""
LOCK_INSTRUMENTS = _INSTRUMENT_LOCKS.format(function="pg_advisory_xact_lock")
SHARE_INSTRUMENTS = _INSTRUMENT_LOCKS.format(function="pg_advisory_xact_lock_shared")

SHARE_ROLLUPS = "SELECT pg_advisory_xact_lock_shared(7411, 0)"
"""Held by a transaction rolling up usage (session_month), from before it reads the registry
until it commits: registry changes that make such rows stale wait for it (migration 0022)."""


@dataclass(frozen=True, slots=True)
class MigrationReport:
    applied: list[str]
    timescaledb: bool


def _migration_names() -> list[str]:
    folder = resources.files("instrushare") / "migrations"
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.name.endswith(".sql") and entry.name[:4].isdigit()
    )


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("instrushare") / "migrations"
    return [(name, (folder / name).read_text(encoding="utf-8")) for name in _migration_names()]


def check_schema(conninfo: str) -> None:
    """Connect once and check every migration is applied, so that a command started on a
    database that is not there, or not migrated, fails at once rather than later, request by
    request. Raises psycopg's errors (``UndefinedTable``: never migrated) or SchemaBehind."""
    with psycopg.connect(conninfo, connect_timeout=10) as conn:
        done = {row[0] for row in conn.execute("SELECT name FROM schema_migration")}
    pending = [name for name in _migration_names() if name not in done]
    if pending:
        raise SchemaBehind(f"{len(pending)} migration(s) not applied, from {pending[0]}")


def timescaledb_usable(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """True when timescale.sql can be applied: the extension installed and preloaded (creating
    it without ``shared_preload_libraries`` is FATAL for the connection, so look first), under
    the Timescale License: the Apache-2 build refuses compression and policies, so with it the
    plain tables serve, pruned by ``db prune``, as without the extension.

    A role that is neither superuser nor in pg_read_all_settings (an owner role) may not read
    ``shared_preload_libraries``: for it, the extension created in the database by an earlier
    run as a superuser tells it is preloaded."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
        " (SELECT setting LIKE '%timescaledb%' FROM pg_settings"
        "  WHERE name = 'shared_preload_libraries'),"
        " EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),"
        " current_setting('timescaledb.license', true)"
    ).fetchone()
    if not (row and row[0]):
        return False
    _, preloaded, created, license_ = row
    if preloaded is None:  # this role may not read it: the extension created earlier tells
        if not created:
            logger.warning("TimescaleDB is installed but not created in this database, and this"
                           " role may not read shared_preload_libraries: plain tables are used"
                           " (run `instrushare db migrate` once as a superuser to create the"
                           " extension)")
            return False
    elif not preloaded:
        return False
    if license_ == "apache":
        logger.warning("TimescaleDB runs under its Apache-2 license, without compression and"
                       " policies: plain tables are used (a build under the Timescale License,"
                       " timescaledb.license = 'timescale', has them)")
        return False
    return True


def migrate(conninfo: str) -> MigrationReport:
    """Apply pending migrations; with TimescaleDB present also apply timescale.sql."""
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migration ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migration")}
            for name, script in _migration_files():
                if name in done:
                    continue
                with _naming_failure(name, applied), conn.transaction():
                    conn.execute(script.encode())
                    conn.execute("INSERT INTO schema_migration (name) VALUES (%s)", (name,))
                logger.info("applied migration %s", name)
                applied.append(name)
            use_timescale = timescaledb_usable(conn)
            if use_timescale:
                folder = resources.files("instrushare") / "migrations"
                with _naming_failure(_TIMESCALE_FILE, applied), conn.transaction():
                    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                    conn.execute((folder / _TIMESCALE_FILE).read_text().encode())
                logger.info("TimescaleDB hypertables and policies in place")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return MigrationReport(applied=applied, timescaledb=use_timescale)


@contextmanager
def _naming_failure(name: str, applied: list[str]) -> Iterator[None]:
    """A database error in migration ``name`` says which one failed, for the person to mend."""
    try:
        yield
    except psycopg.Error as exc:
        raise MigrationFailed(name, list(applied)) from exc


def ensure_database(conninfo: str) -> str | None:
    """Create the database named in ``conninfo`` if missing; its name if it was made.

    The database itself is tried first and the maintenance database ``postgres`` only when
    that fails: a hardened server (pg_hba.conf, CONNECT revoked) may keep the owner role out
    of it. libpq gives a refused connection no SQLSTATE, so whether the database is missing is
    asked there, not read from the message; if it exists, or ``postgres`` is out of reach
    too, the database's own refusal is raised."""
    try:
        psycopg.connect(conninfo).close()
    except psycopg.OperationalError as exc:
        refused = exc
    else:
        return None
    name = str(pg_conninfo.conninfo_to_dict(conninfo).get("dbname") or "postgres")
    admin = pg_conninfo.make_conninfo(conninfo, dbname="postgres")
    try:
        conn = psycopg.connect(admin, autocommit=True)
    except psycopg.OperationalError as exc:
        raise refused from exc
    with conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            raise refused
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name
