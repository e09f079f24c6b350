"""MQTT 3.1.1 without shared subscriptions (the demo's embedded broker), against mosquitto."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from instrushare.protocol import Topics
from tests.services import Mosquitto

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


def _load(topics: Topics, seqs: range) -> list[tuple[str, bytes]]:
    return [(topics.data("gw1", "i1"),
             data_message("gw1", "i1", k, [(BASE + timedelta(seconds=k), "running", "u")]))
            for k in seqs]


def test_311_plain_subscription_stores_and_keeps_its_session_across_restarts(
    database_url: str,
    mosquitto_factory: Callable[..., Mosquitto],
    topic_prefix: str,
    start_worker: Callable[..., RunningWorker],
) -> None:
    register(database_url, {"i1": "gw1"})
    broker = mosquitto_factory()
    topics = Topics(topic_prefix)
    options = {"mqtt_protocol": "3.1.1", "shared_subscription": False,
               "worker_id": f"v311-{topic_prefix}"}
    pub = Publisher(broker.url)
    try:
        handle = start_worker(database_url, broker.url, **options)
        pub.publish_all(_load(topics, range(0, 100)))
        wait_until(lambda: handle.worker.stats.written == 100, what="100 written")
        handle.halt()
        assert handle.worker.stats.acked == 100

        # Away: the broker queues for the persistent (clean_session=False) session.
        pub.publish_all(_load(topics, range(100, 250)))
        again = start_worker(database_url, broker.url, **options)
        wait_until(lambda: again.worker.stats.written == 150, what="queued messages written")
        again.halt()
    finally:
        pub.close()
    assert again.worker.stats.duplicates == 0
    assert count(database_url, "ingested_message") == 250
    assert query(database_url, "SELECT min(seq), max(seq) FROM ingested_message") == [(0, 249)]
    # one running session over all 250 samples, still open
    assert query(database_url, "SELECT start_ts, end_ts, last_ts FROM usage_session") == [
        (BASE, None, BASE + timedelta(seconds=249))]
