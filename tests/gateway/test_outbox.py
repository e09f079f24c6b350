"""The outbox keeps messages and counters across reopen, and is bounded by count and age."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.errors import OutboxError
from gateway.outbox import Builder, Entry, Outbox

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
    assert "dropped the 1 oldest" in caplog.text
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
