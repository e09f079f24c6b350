"""An instrument registered before its message arrives is never refused as unknown."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from ingest._registry import InstrumentRegistry
from instrushare.protocol import Topics

from .conftest import BASE, Publisher, RunningWorker, data_message, query, register, wait_until


class _Loader:
    def __init__(self, rows: dict[str, str | None]) -> None:
        self.rows = rows
        self.reads: list[float] = []

    def __call__(self) -> dict[str, str | None]:
        self.reads.append(time.monotonic())
        return dict(self.rows)


def test_a_refusal_comes_from_a_read_after_the_message_arrived() -> None:
    loader = _Loader({"i1": "gw1"})
    registry = InstrumentRegistry(loader=loader)
    registry.RELOAD_MIN_INTERVAL_S = 0.1
    assert registry.lookup("i1", "gw1", time.time()) == (True, "gw1")
    assert len(loader.reads) == 1

    loader.rows["new"] = None  # registered after the cache was read
    assert registry.lookup("new", "gw1", time.time()) == (True, None)
    assert len(loader.reads) == 2

    earlier = time.time() - 1  # received before the latest read: that read answers
    assert registry.lookup("ghost", "gw1", earlier) == (False, None)
    assert len(loader.reads) == 2

    loader.rows["i1"] = "gw2"  # moved to another gateway
    assert registry.lookup("i1", "gw2", time.time()) == (True, "gw2")
    assert registry.lookup("i1", "gw1", earlier) == (True, "gw2")  # refused, no read
    assert len(loader.reads) == 3


def test_forced_reads_are_rate_limited() -> None:
    loader = _Loader({"i1": "gw1"})
    registry = InstrumentRegistry(loader=loader)
    registry.RELOAD_MIN_INTERVAL_S = 0.05
    for _ in range(10):  # a flood of messages for unknown instruments
        assert registry.lookup("ghost", "gw1", time.time()) == (False, None)
    reads = loader.reads
    assert len(reads) == 10
    assert all(b - a >= 0.05 for a, b in itertools.pairwise(reads))


def test_message_for_an_instrument_registered_just_before_is_stored(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    register(database_url, {"i1": "gw1"})
    worker = start_worker(database_url).worker
    ghost = data_message("gw1", "ghost", 1, [(BASE, "idle", None)])
    publisher.publish_all([(topics.data("gw1", "ghost"), ghost)])  # the cache is read now
    wait_until(lambda: worker.stats.acked == 1, what="ghost acked")

    register(database_url, {"fresh": "gw1"})
    publisher.publish_all([(topics.data("gw1", "fresh"),
                            data_message("gw1", "fresh", 2, [(BASE, "idle", None)]))])
    wait_until(lambda: worker.stats.acked == 2, what="fresh acked")
    assert worker.stats.written == 1
    assert query(database_url, "SELECT reason, topic FROM dead_letter") == [
        ("unknown_instrument", topics.data("gw1", "ghost"))]
    assert query(database_url, "SELECT instrument_id FROM state_sample") == [("fresh",)]
