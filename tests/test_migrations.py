"""Migrations apply cleanly to plain PostgreSQL and are idempotent."""

from __future__ import annotations

import psycopg
import pytest

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


def test_monitored_since_is_the_earliest_trace_of_data(database_url: str) -> None:
    """Samples pruned before the migration: the sessions, events and availability rollup
    still show when the platform first heard from an instrument."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE instrument DROP COLUMN monitored_since")
        conn.execute("DELETE FROM schema_migration WHERE name = '0014_monitored_since.sql'")
        conn.execute("INSERT INTO institution (id, name) VALUES ('u', 'U')")
        conn.execute("INSERT INTO instrument (id, name, institution_id) VALUES"
                     " ('s', 'S', 'u'), ('e', 'E', 'u'), ('d', 'D', 'u'), ('n', 'N', 'u')")
        conn.execute("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
                     " VALUES ('s', '2026-05-01 08:00+08', 'idle', 'gw', 1),"
                     " ('e', '2026-05-01 08:00+08', 'idle', 'gw', 2)")
        conn.execute("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts)"
                     " VALUES ('s', '2025-03-01 09:00+08', '2025-03-01 10:00+08',"
                     " '2025-03-01 10:00+08')")
        conn.execute("INSERT INTO instrument_event (instrument_id, ts, type, gateway_id, seq)"
                     " VALUES ('e', '2025-02-01 09:00+08', 'fault', 'gw', 3)")
        conn.execute("INSERT INTO state_day (instrument_id, day, timeout, up_s, fault_s,"
                     " offline_s, faults) VALUES"
                     " ('d', '2024-12-30', '15 min', 0, 0, 86400, 0),"  # offline: no trace
                     " ('d', '2024-12-31', '15 min', 3600, 0, 82800, 0)")
    assert migrate(database_url).applied == ["0014_monitored_since.sql"]
    with psycopg.connect(database_url) as conn:
        since: dict[str, str | None] = dict(conn.execute(
            "SELECT id, to_char(monitored_since AT TIME ZONE 'Asia/Shanghai',"
            " 'YYYY-MM-DD HH24:MI') FROM instrument").fetchall())
    assert since == {"s": "2025-03-01 09:00", "e": "2025-02-01 09:00",
                     "d": "2024-12-31 00:00", "n": None}


def test_results_published_before_gain_open_share(database_url: str) -> None:
    """A publication stored before institutions had open_share gets it from its instruments;
    one that has it keeps it."""
    institutions = ('[{"institution_id": "u", "score": 50},'
                    ' {"institution_id": "v", "score": 40, "open_share": 0.25}]')
    instruments = ('[{"instrument_id": "a", "root_id": "u", "sharing_mode": "external"},'
                   ' {"instrument_id": "b", "root_id": "u", "sharing_mode": "internal"},'
                   ' {"instrument_id": "c", "root_id": "u", "sharing_mode": "external"}]')
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO evaluation_publication (year, published_by, rules,"
                     " institutions, instruments) VALUES (2025, 'admin:1', '{}', %s, %s)",
                     (institutions, instruments))
        conn.execute("DELETE FROM schema_migration WHERE name = '0021_published_open_share.sql'")
    assert migrate(database_url).applied == ["0021_published_open_share.sql"]
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT institutions FROM evaluation_publication").fetchone()
    assert row is not None
    assert [(i["institution_id"], float(i["open_share"])) for i in row[0]] == [
        ("u", 0.6667), ("v", 0.25)]


def test_requests_queued_twice_before_the_rule_are_cancelled_once(database_url: str) -> None:
    """In the order they were made, each pending request overlapping one kept so far of its
    user on its instrument is cancelled, naming it; others' requests, other instruments,
    touching windows and a request overlapping only a cancelled one stay."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE booking DROP CONSTRAINT booking_request_once")
        conn.execute("DELETE FROM schema_migration WHERE name = '0025_booking_request_once.sql'")
        conn.execute("INSERT INTO institution (id, name) VALUES ('u', 'U')")
        conn.execute("INSERT INTO instrument (id, name, institution_id) VALUES"
                     " ('a', 'A', 'u'), ('b', 'B', 'u')")
        conn.execute("INSERT INTO platform_user (id, name, organisation) VALUES"
                     " ('p', 'P', 'x'), ('q', 'Q', 'x')")
        rows = [("a", "p", 9, 12), ("a", "p", 10, 11), ("a", "p", 11, 13), ("a", "q", 9, 12),
                ("b", "p", 9, 12), ("a", "p", 13, 14), ("a", "p", 12, 13)]
        for instrument, user, a, b in rows:
            conn.execute("INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts)"
                         " VALUES (%s, %s, 'assisted', %s, %s)",
                         (instrument, user, f"2026-12-01 {a}:00+08", f"2026-12-01 {b}:00+08"))
    assert migrate(database_url).applied == ["0025_booking_request_once.sql"]
    with psycopg.connect(database_url) as conn:
        got = conn.execute("SELECT id, status, note FROM booking ORDER BY id").fetchall()
    first = got[0][0]
    assert [(status, note) for _, status, note in got] == [
        ("requested", ""), ("cancelled", f"duplicate of request {first}"),
        ("cancelled", f"duplicate of request {first}"), ("requested", ""), ("requested", ""),
        ("requested", ""),
        ("requested", "")]  # 12-13 overlapped only 11-13, itself cancelled: kept


def test_blank_names_stored_before_the_rule_become_the_ids(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table in ("institution", "instrument"):
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_name_not_blank")
        conn.execute("DELETE FROM schema_migration WHERE name = '0026_names_not_blank.sql'")
        conn.execute("INSERT INTO institution (id, name) VALUES ('u', '  '), ('v', 'V')")
        conn.execute("INSERT INTO instrument (id, name, institution_id) VALUES ('a', ' ', 'u')")
    assert migrate(database_url).applied == ["0026_names_not_blank.sql"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute("SELECT id, name FROM institution ORDER BY id").fetchall() == [
            ("u", "u"), ("v", "V")]
        assert conn.execute("SELECT name FROM instrument").fetchall() == [("a",)]
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE instrument SET name = '\t' WHERE id = 'a'")
