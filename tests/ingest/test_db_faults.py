"""Database faults beyond an outage: disk full, conflicts, timeouts, a read-only database, a
broken schema, a terminated connection, a value past a database limit, a slow database.

Each is caused on the real PostgreSQL: by its own means where it has one (a session setting, a
lock, a rename, ``pg_terminate_backend``), else by a trigger raising the error's SQLSTATE.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from psycopg import conninfo

from ingest import IngestWorker
from instrushare.protocol import Topics

from .conftest import (
    BASE,
    Publisher,
    RunningWorker,
    count,
    data_message,
    query,
    register,
    wait_until,
)

Mend = Callable[[], None]


@pytest.fixture(autouse=True)
def _quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(IngestWorker, "INITIAL_BACKOFF_S", 0.05)
    monkeypatch.setattr(IngestWorker, "MAX_BACKOFF_S", 0.3)


def _exec(db: str, *statements: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        for stmt in statements:
            conn.execute(stmt)


def _alter_database(db: str, setting: str) -> None:
    name = conninfo.conninfo_to_dict(db)["dbname"]
    _exec(db, "SET default_transaction_read_only = off", f'ALTER DATABASE "{name}" {setting}')


def _reconnect_workers(db: str) -> None:
    """End the worker's sessions, as a failover does: its next ones take the database's
    settings."""
    _exec(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
              " WHERE application_name = 'instrushare-ingest' AND datname = current_database()")


def _on_insert(db: str, table: str, body: str) -> Mend:
    """A BEFORE INSERT trigger running ``body`` for each row; returns what drops it."""
    _exec(db, "CREATE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql AS $$"
              f" BEGIN {body}; RETURN NEW; END $$",
          f"CREATE TRIGGER injected_fault BEFORE INSERT ON {table} FOR EACH ROW"
          " EXECUTE FUNCTION injected_fault()")
    return lambda: _exec(db, f"DROP TRIGGER injected_fault ON {table}")


INSTRUMENTS = [f"i{k}" for k in range(4)]
"""gw1's instruments, which ``_messages`` takes in turn."""


def _register(db: str) -> None:
    register(db, dict.fromkeys(INSTRUMENTS, "gw1"))


def _messages(topics: Topics, seqs: range, *, detail: str | None = None) -> list[tuple[str, bytes]]:
    """One sample and one event per message, for the INSTRUMENTS of gw1 in turn."""
    out = []
    for k in seqs:
        inst = INSTRUMENTS[k % len(INSTRUMENTS)]
        ts = BASE + timedelta(seconds=k)
        doc = json.loads(data_message("gw1", inst, k, [(ts, "running" if k % 5 else "idle", None)],
                                      events=[(ts, "fault")]))
        doc["events"][0]["detail"] = detail or f"event {k}"
        out.append((topics.data("gw1", inst), json.dumps(doc).encode()))
    return out


def _retries(registry: CollectorRegistry, sqlstate: str) -> float:
    return registry.get_sample_value("instrushare_ingest_db_retries_total",
                                     {"sqlstate": sqlstate}) or 0.0


def _stored_once(db: str, worker: IngestWorker, n: int) -> None:
    assert worker.stats.written == n and worker.stats.duplicates == 0
    assert count(db, "ingested_message") == n
    assert count(db, "state_sample") == n
    assert count(db, "instrument_event") == n
    assert count(db, "dead_letter") == 0


# -- faults that hold everything back until they pass or are mended ------------------------


def _raising(sqlstate: str) -> Callable[[str], Mend]:
    return lambda db: _on_insert(
        db, "state_sample", f"RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'")


def _read_only(db: str) -> Mend:
    _alter_database(db, "SET default_transaction_read_only = on")
    _reconnect_workers(db)
    return lambda: _alter_database(db, "RESET default_transaction_read_only")


def _locked(db: str) -> Mend:
    """Another session holds state_sample; the worker's sessions wait 200 ms for a lock."""
    _alter_database(db, "SET lock_timeout = '200ms'")
    _reconnect_workers(db)
    holder = psycopg.connect(db)
    holder.execute("LOCK TABLE state_sample IN ACCESS EXCLUSIVE MODE")
    return holder.close  # its transaction ends, the lock with it


def _renamed(what: str, old: str, new: str) -> Callable[[str], Mend]:
    """A migration gone wrong; returns what undoes it."""
    def cause(db: str) -> Mend:
        _exec(db, what.format(old, new))
        return lambda: _exec(db, what.format(new, old))
    return cause


@dataclass(frozen=True)
class Fault:
    sqlstate: str
    level: str
    """Of the log line at each retry: ERROR for what an operator must mend."""
    cause: Callable[[str], Mend]


FAULTS = {
    "disk_full": Fault("53100", "ERROR", _raising("53100")),
    "deadlock": Fault("40P01", "WARNING", _raising("40P01")),
    "serialization_failure": Fault("40001", "WARNING", _raising("40001")),
    "lock_timeout": Fault("55P03", "WARNING", _locked),
    "read_only": Fault("25006", "ERROR", _read_only),
    "undefined_column": Fault(
        "42703", "ERROR",
        _renamed("ALTER TABLE instrument_event RENAME COLUMN {} TO {}", "detail", "detail_x")),
    "undefined_table": Fault(
        "42P01", "ERROR", _renamed("ALTER TABLE {} RENAME TO {}", "state_sample", "state_x")),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_a_database_fault_holds_messages_unacked_and_retries_until_it_passes(
    fault: Fault,
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing is dead-lettered, nothing acknowledged (the unacked gauge holding them all,
    which the stall alert watches); the retries back off, are logged with the SQLSTATE and
    counted by it; once the fault passes, everything is stored once."""
    _register(database_url)
    registry = CollectorRegistry()
    w = start_worker(database_url, registry=registry).worker
    publisher.publish_all(_messages(topics, range(10)))
    wait_until(lambda: w.stats.acked == 10, what="stored before the fault")
    caplog.set_level(logging.WARNING, logger="ingest")
    mend = fault.cause(database_url)
    try:
        publisher.publish_all(_messages(topics, range(10, 30)))
        wait_until(lambda: _retries(registry, fault.sqlstate) >= 3, what="retries counted")
        before = w.stats.db_retries
        time.sleep(1.0)
        assert w.stats.db_retries - before < 20, "no tight loop"
        assert w.stats.acked == 10
        assert registry.get_sample_value("instrushare_ingest_messages_unacked") == 20
        assert count(database_url, "dead_letter") == 0
        said = [r for r in caplog.records if f"SQLSTATE {fault.sqlstate}" in r.getMessage()]
        assert said and {r.levelname for r in said} == {fault.level}
    finally:
        mend()
    wait_until(lambda: w.stats.acked == 30, what="everything acked once the fault passed")
    assert registry.get_sample_value("instrushare_ingest_messages_unacked") == 0
    _stored_once(database_url, w, 30)


# -- faults the worker works around ---------------------------------------------------------


def test_a_connection_terminated_mid_copy_retries_the_whole_batch_on_a_new_one(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    _register(database_url)
    _on_insert(database_url, "state_sample", "PERFORM pg_sleep(0.02)")  # 2 s per 100 rows
    w = start_worker(database_url, batch_max_messages=100, batch_max_delay_s=1.0).worker
    publisher.publish_all(_messages(topics, range(100)))
    copying: list[tuple[int]] = []

    def copying_samples() -> bool:
        copying[:] = query(database_url, "SELECT pid FROM pg_stat_activity"
                           " WHERE application_name = 'instrushare-ingest' AND state = 'active'"
                           " AND starts_with(query, 'COPY state_sample')")
        return bool(copying)

    wait_until(copying_samples, what="the batch's COPY running")
    _exec(database_url, f"SELECT pg_terminate_backend({copying[0][0]})")
    assert w.stats.acked == 0
    wait_until(lambda: w.stats.acked == 100, what="the batch written again and acked")
    assert w.stats.db_retries >= 1
    _stored_once(database_url, w, 100)


def test_a_batch_longer_than_the_statement_timeout_is_written_in_halves(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Retried whole, it would time out again and again, each time it is retried."""
    _register(database_url)
    _alter_database(database_url, "SET statement_timeout = '1s'")
    _on_insert(database_url, "state_sample", "PERFORM pg_sleep(0.03)")  # 3 s per 100 rows
    registry = CollectorRegistry()
    w = start_worker(database_url, registry=registry, batch_max_messages=100,
                     batch_max_delay_s=1.0).worker
    caplog.set_level(logging.WARNING, logger="ingest")
    publisher.publish_all(_messages(topics, range(100)))
    wait_until(lambda: w.stats.acked == 100, timeout=40, what="written in smaller parts")
    _stored_once(database_url, w, 100)
    assert _retries(registry, "57014") >= 1
    assert any("in halves" in r.getMessage() for r in caplog.records)


def _past_a_limit(db: str, topics: Topics, seq: int) -> list[tuple[str, bytes]]:
    """An operator's index on the event details, and message ``seq`` whose 1,000-character
    detail, which the protocol allows, is past a B-tree's row size (54000)."""
    _exec(db, "CREATE INDEX long_detail_idx ON instrument_event (detail)")
    rng = random.Random(7)
    huge = "".join(chr(rng.randrange(0x4E00, 0xA000)) for _ in range(1000))
    return _messages(topics, range(seq, seq + 1), detail=huge)


def test_a_value_past_a_database_limit_is_dead_lettered_alone(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    """An operator's index on the event details: a 1,000-character detail, which the protocol
    allows, is past a B-tree's row size (54000 program_limit_exceeded). No retry can store that
    message, so it must not hold up the others."""
    _register(database_url)
    poison = _past_a_limit(database_url, topics, 5)
    w = start_worker(database_url, batch_max_delay_s=0.5).worker
    publisher.publish_all([*_messages(topics, range(5)), *poison, *_messages(topics, range(6, 10))])
    wait_until(lambda: w.stats.acked == 10, what="the others stored, the poison dead-lettered")
    assert query(database_url, "SELECT reason, left(detail, 5), payload FROM dead_letter") \
        == [("db_rejected", "54000", poison[0][1])]
    assert count(database_url, "ingested_message") == 9


def test_a_rejected_message_whose_dead_letter_is_refused_too_waits_unacked(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker neither stops nor drops the message: it retries, saying so as an ERROR,
    until the dead letters can be written."""
    _register(database_url)
    poison = _past_a_limit(database_url, topics, 5)
    mend = _on_insert(database_url, "dead_letter",
                      "RAISE EXCEPTION 'no dead letters' USING ERRCODE = '23514'")
    registry = CollectorRegistry()
    running = start_worker(database_url, batch_max_delay_s=0.5, registry=registry)
    w = running.worker
    caplog.set_level(logging.WARNING, logger="ingest")
    publisher.publish_all([*_messages(topics, range(5)), *poison])
    try:
        wait_until(lambda: _retries(registry, "23514") >= 2, what="retries counted")
        assert running.thread.is_alive() and w.stats.acked < 6
        assert any(r.levelname == "ERROR" and "refuses the dead letter" in r.getMessage()
                   for r in caplog.records)
    finally:
        mend()
    wait_until(lambda: w.stats.acked == 6, what="stored and dead-lettered once mended")
    assert query(database_url, "SELECT reason, left(detail, 5) FROM dead_letter") \
        == [("db_rejected", "54000")]
    assert count(database_url, "ingested_message") == 5


def test_a_slow_database_gets_full_batches_and_no_retries(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    """Half a second per batch: while the writers wait, deliveries gather into batches as
    large as allowed; nothing times out on the worker's side or is retried."""
    _register(database_url)
    _on_insert(database_url, "ingested_message", "PERFORM pg_sleep(0.01)")
    w = start_worker(database_url, batch_max_messages=50, receive_maximum=150).worker
    publisher.publish_all(_messages(topics, range(600)))
    wait_until(lambda: w.stats.acked == 600, timeout=60, what="all written")
    assert w.stats.batches <= 15
    assert w.stats.db_retries == 0
    _stored_once(database_url, w, 600)
