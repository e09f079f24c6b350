"""Migrations apply cleanly to plain PostgreSQL and are idempotent."""

from __future__ import annotations

import psycopg

from instrushare.db import migrate, timescaledb_usable


def test_migrate_twice_applies_nothing_the_second_time(database_url: str) -> None:
    report = migrate(database_url)
    assert report.applied == []
    with psycopg.connect(database_url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migration ORDER BY name")]
        assert names[0] == "0001_telemetry.sql"
        assert report.timescaledb == timescaledb_usable(conn)
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert {"state_sample", "usage_session", "instrument_status", "dead_letter"} <= tables
