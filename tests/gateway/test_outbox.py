"""The outbox keeps messages and counters across reopen, and is bounded by count and age; a
full disk costs no count, and a damaged file or another program's is refused untouched."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
from pathlib import Path

import pytest

import gateway.outbox
from gateway.errors import OutboxError
from gateway.outbox import Builder, Entry, Outbox
from tests.gateway.helpers import fill

NOW = 1_750_000_000.0


def builder(label: str, oldest: float = NOW) -> Builder:
    return lambda seq: Entry(topic=f"t/{label}", payload=f"{label}:{seq}".encode(), oldest=oldest)


def test_survives_reopen_with_seq_and_order(tmp_path: Path) -> None:
    path = tmp_path / "ob.sqlite"
    with Outbox(path, max_messages=100, max_age_s=3600) as box:
        assert box.next_bd_seq(at_least=0) == 0
        assert box.append([builder("a"), builder("b")], now=NOW) == [0, 1]
        assert box.append([builder("c")], now=NOW) == [2]
        box.delete([0])
    with Outbox(path, max_messages=100, max_age_s=3600) as box:
        assert box.next_bd_seq(at_least=0) == 1
        assert box.depth == 2
        assert [(m.seq, m.payload) for m in box.after(-1, 10)] == [(1, b"b:1"), (2, b"c:2")]
        # seq continues after the last one handed out, even though 0 is gone
        assert box.append([builder("d")], now=NOW) == [3]
        box.delete([1, 2, 3])
        assert box.depth == 0
    with Outbox(path, max_messages=100, max_age_s=3600) as box:
        assert box.append([builder("e")], now=NOW) == [4]
        assert box.after(3, 10)[0].payload == b"e:4"
        assert box.after(4, 10) == []


def test_bd_seq_rises_by_one_or_to_the_floor_given_and_survives_reopen(tmp_path: Path) -> None:
    """The agent gives the wall clock in milliseconds as the floor: a clock set back still
    gets a higher number, and a new outbox starts above the old one's."""
    path = tmp_path / "ob.sqlite"
    with Outbox(path, max_messages=100, max_age_s=3600) as box:
        assert box.next_bd_seq(at_least=1_000) == 1_000
        assert box.next_bd_seq(at_least=500) == 1_001
    with Outbox(path, max_messages=100, max_age_s=3600) as box:
        assert box.next_bd_seq(at_least=0) == 1_002
        assert box.next_bd_seq(at_least=5_000) == 5_000


def test_bounded_by_count_oldest_dropped_first(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ob.sqlite"
    with caplog.at_level(logging.WARNING, "gateway"), Outbox(
        path, max_messages=5, max_age_s=3600
    ) as box:
        for i in range(8):
            box.append([builder(str(i))], now=NOW)
        assert box.depth == 5
        assert [m.seq for m in box.after(-1, 100)] == [3, 4, 5, 6, 7]
        assert box.dropped_full == 3
        # the first drop is logged at once, the next two wait for a minute or the close
        (first,) = [r.getMessage() for r in caplog.records]
        assert first.endswith("dropped the 1 oldest (1 dropped when full so far)")
    assert caplog.records[-1].getMessage().endswith(
        "dropped the 2 oldest (3 dropped when full so far)")
    with Outbox(path, max_messages=5, max_age_s=3600) as box:
        assert box.dropped_full == 3  # persisted
        box.append([builder("x")] * 4, now=NOW)
        assert box.dropped_full == 7
        assert [m.seq for m in box.after(-1, 100)] == [7, 8, 9, 10, 11]
        assert box.last_seq == 11


def test_bounded_by_age(tmp_path: Path) -> None:
    path = tmp_path / "ob.sqlite"
    with Outbox(path, max_messages=100, max_age_s=600) as box:
        box.append([builder("old", NOW - 700), builder("edge", NOW - 600),
                    builder("new", NOW - 10)], now=NOW)
        assert [m.seq for m in box.after(-1, 10)] == [1, 2]
        assert box.dropped_age == 1
        box.expire(now=NOW + 100)
        assert [m.seq for m in box.after(-1, 10)] == [2]
        assert (box.dropped_age, box.depth) == (2, 1)
    with Outbox(path, max_messages=100, max_age_s=600) as box:
        assert (box.dropped_age, box.dropped_full, box.depth) == (2, 0, 1)


def test_failed_builder_leaves_nothing_behind(tmp_path: Path) -> None:
    def broken(seq: int) -> Entry:
        raise RuntimeError("boom")

    with Outbox(tmp_path / "ob.sqlite", max_messages=10, max_age_s=600) as box:
        with pytest.raises(RuntimeError):
            box.append([builder("a"), broken], now=NOW)
        assert (box.depth, box.last_seq) == (0, -1)
        assert box.append([builder("b")], now=NOW) == [0]


def test_an_outbox_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    # a mistyped path would otherwise start a new outbox, numbering seq from 0 again
    with pytest.raises(OutboxError, match="its directory does not exist"):
        Outbox(tmp_path / "typo" / "ob.sqlite", max_messages=10, max_age_s=600).open()
    assert not (tmp_path / "typo").exists()


def test_one_outbox_file_serves_one_agent(tmp_path: Path) -> None:
    path = tmp_path / "ob.sqlite"
    with Outbox(path, max_messages=10, max_age_s=600):
        second = Outbox(path, max_messages=10, max_age_s=600)
        with pytest.raises(OutboxError, match="another gateway agent has it open"):
            second.open()


def test_a_full_disk_fails_writes_and_costs_no_count(small_disk: Path) -> None:
    """SQLite rolls the transaction back by itself when the disk is full (so ROLLBACK fails):
    depth and seq stay as they were, and the outbox goes on when space returns."""
    path = small_disk / "ob.sqlite"
    with Outbox(path, max_messages=100, max_age_s=3600) as box:
        box.append([builder("a")], now=NOW)
        filler = fill(small_disk)
        for _ in range(3):
            with pytest.raises(OutboxError, match=f"outbox {path}: database or disk is full"):
                box.append([builder("x")], now=NOW)
            with pytest.raises(OutboxError, match="database or disk is full"):
                box.delete([0])
        assert (box.depth, box.last_seq, box.dropped_full) == (1, 0, 0)
        box.count_unwritten(2)  # the agent's, kept in memory, dropped
        assert not box.save_dropped()
        filler.unlink()
        assert box.append([builder("b")], now=NOW) == [1]
        assert box.delete([0]) == 1
    with Outbox(path, max_messages=100, max_age_s=3600) as box:
        assert (box.depth, box.last_seq, box.dropped_full) == (1, 1, 2)
        assert [m.payload for m in box.after(-1, 10)] == [b"b:1"]


def test_a_count_of_messages_never_written_is_saved_on_demand(tmp_path: Path) -> None:
    """The agent's at stop: messages it still kept in memory."""
    path = tmp_path / "ob.sqlite"
    with Outbox(path, max_messages=100, max_age_s=3600) as box:
        box.count_unwritten(3)
        assert box.save_dropped()
    with Outbox(path, max_messages=100, max_age_s=3600) as box:
        assert box.dropped_full == 3


def test_an_outbox_on_a_read_only_file_system_is_named_as_such(small_disk: Path) -> None:
    path = small_disk / "ob.sqlite"
    with Outbox(path, max_messages=10, max_age_s=600):
        pass
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        for name, what in (("ob.sqlite", "it"), ("new.sqlite", "its directory")):
            with pytest.raises(OutboxError, match=(
                rf"^cannot open outbox {small_disk / name}: .+: {what} cannot be written \(a"
                r" read-only file system, or permissions\): the gateway must write it$")):
                Outbox(small_disk / name, max_messages=10, max_age_s=600).open()
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)


def _damaged(good: bytes, damage: str) -> bytes:
    if damage == "not a database":
        return b"instrument log\n" * 500
    if damage == "truncated":
        return good[:len(good) // 2]
    return good[:8192] + bytes(4096) + good[12288:]  # a page zeroed


@pytest.mark.parametrize("damage", ["not a database", "truncated", "page zeroed"])
def test_a_damaged_outbox_is_refused_and_left_as_it_is(tmp_path: Path, damage: str) -> None:
    """It may hold messages not delivered yet: the error says what to do, nothing deletes it."""
    path = tmp_path / "ob.sqlite"
    with Outbox(path, max_messages=1000, max_age_s=3600) as box:
        for i in range(200):
            box.append([lambda seq: Entry("t", bytes([seq % 256]) * 1500, NOW)], now=NOW + i)
    damaged = _damaged(path.read_bytes(), damage)
    path.write_bytes(damaged)
    with pytest.raises(OutboxError, match=(
        rf"^cannot open outbox {path}: .+: it is damaged or not an outbox\. It is left as it"
        r" is: move it \(and its -wal file\) aside to start a new outbox; messages not yet"
        r" delivered may be saved from it with sqlite3's \.recover$")):
        Outbox(path, max_messages=1000, max_age_s=3600).open()
    assert path.read_bytes() == damaged and list(tmp_path.iterdir()) == [path]


def test_another_programs_database_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    """An outbox_path mistyped into, say, the instrument software's database must not get
    the outbox's tables, nor be switched to WAL."""
    path = tmp_path / "acquisition.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE run (id INTEGER)")
        db.commit()
    before = path.read_bytes()
    with pytest.raises(OutboxError, match=r"another program's SQLite database \(tables run\)"
                                          r", left as it is: outbox_path must name a file"):
        Outbox(path, max_messages=10, max_age_s=600).open()
    assert path.read_bytes() == before


def test_a_first_start_that_fails_midway_leaves_no_part_of_the_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ob.sqlite"
    monkeypatch.setattr(gateway.outbox, "_SCHEMA", gateway.outbox._SCHEMA + "INSERT INTO nowhere"
                        " VALUES (1);")  # fails after creating every table
    with pytest.raises(OutboxError, match="no such table: nowhere"):
        Outbox(path, max_messages=10, max_age_s=600).open()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT name FROM sqlite_schema").fetchall() == []


def test_an_outbox_whose_schema_was_left_incomplete_is_completed(tmp_path: Path) -> None:
    """As a first start that failed midway did before the schema took one transaction."""
    path = tmp_path / "ob.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE message (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
                   " payload BLOB NOT NULL, oldest REAL NOT NULL)")
        db.commit()
    with Outbox(path, max_messages=10, max_age_s=600) as box:
        assert box.append([builder("a")], now=NOW) == [0]
        assert box.next_bd_seq(at_least=0) == 0
    with Outbox(path, max_messages=10, max_age_s=600) as box:
        assert (box.depth, box.last_seq) == (1, 0)


def test_a_table_of_the_outbox_s_name_with_other_columns_is_another_program_s(
    tmp_path: Path
) -> None:
    path = tmp_path / "chat.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE message (id INTEGER, body TEXT)")
        db.commit()
    before = path.read_bytes()
    with pytest.raises(OutboxError, match=r"another program's SQLite database \(tables message\)"):
        Outbox(path, max_messages=10, max_age_s=600).open()
    assert path.read_bytes() == before


def test_an_empty_file_becomes_a_new_outbox_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A start that failed right after creating the file leaves it empty; so may a file system
    that lost it, and then seq starts from 0 again: said in the log."""
    path = tmp_path / "ob.sqlite"
    path.touch()
    with caplog.at_level(logging.WARNING, "gateway"), Outbox(
        path, max_messages=10, max_age_s=600
    ) as box:
        assert box.append([builder("a")], now=NOW) == [0]
    assert f"outbox {path} is an empty file: starting a new outbox in it, seq from 0" in (
        caplog.text)


def test_a_directory_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(OutboxError, match=f"cannot open outbox {tmp_path}: it is a directory"):
        Outbox(tmp_path, max_messages=10, max_age_s=600).open()
