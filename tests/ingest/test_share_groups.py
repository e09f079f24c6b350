"""Workers of one prefix in different share groups each receive every message: they say so,
once per other group, and the data is stored once all the same."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import cast

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from ingest import IngestConfig
from ingest._session import BrokerSession, share_group_hash
from instrushare.protocol import Topics

from .conftest import (
    BASE,
    Publisher,
    RunningWorker,
    count,
    data_message,
    query,
    reference_sessions,
    register,
    wait_until,
)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[tuple[tuple[str, ...], str]]:
    """The share-group warnings logged: (arguments, message)."""
    return [(cast(tuple[str, ...], r.args), r.getMessage()) for r in caplog.records
            if "INSTRUSHARE_SHARE_GROUP" in r.getMessage()]


def test_workers_of_other_share_groups_are_named_once_and_store_nothing_twice(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ingest")
    register(database_url, {"i1": "gw1"})
    group_a, group_b = f"a{topics.prefix}", f"b{topics.prefix}"
    fast = {"announce_interval_s": 0.1}
    workers = [
        start_worker(database_url, share_group=group_a, **fast),
        start_worker(database_url, share_group=group_a, **fast),
        start_worker(database_url, share_group=group_b, **fast),
        start_worker(database_url, shared_subscription=False, **fast),
    ]
    ids = [w.worker._config.worker_id for w in workers]
    samples = [(BASE + timedelta(minutes=k), "running" if k % 4 else "idle", "u1")
               for k in range(12)]
    publisher.publish_all([(topics.data("gw1", "i1"), data_message("gw1", "i1", k, [s]))
                           for k, s in enumerate(samples)])

    def warned() -> Counter[tuple[str, str]]:
        """(warning worker, the other's subscription) -> times said."""
        return Counter((args[3], args[2]) for args, _ in _warnings(caplog))

    a, b = (f"another share group (hash {share_group_hash(topics.prefix, g)})"
            for g in (group_a, group_b))
    plain = "a plain subscription"
    expected = {(ids[0], b): 1, (ids[0], plain): 1, (ids[1], b): 1, (ids[1], plain): 1,
                (ids[2], a): 1, (ids[2], plain): 1, (ids[3], a): 1, (ids[3], b): 1}
    wait_until(lambda: set(warned()) == set(expected), what="one warning per other group")
    time.sleep(0.5)  # announcements go on every 0.1 s: still said once
    assert warned() == expected
    said = {args[3]: text for args, text in _warnings(caplog) if args[2] == b}
    assert f"this worker ({ids[0]}) through share group {group_a!r} (hash " in said[ids[0]]
    # the group is a secret: announcements carry its hash, so only its own workers name it
    assert not any(group_b in text for text in said.values())

    # each group (and the plain subscription) received all 12; stored once, the rest duplicates
    wait_until(lambda: sum(w.worker.stats.written + w.worker.stats.duplicates
                           for w in workers) == 36, what="every copy handled")
    assert sum(w.worker.stats.written for w in workers) == 12
    assert count(database_url, "ingested_message") == count(database_url, "state_sample") == 12
    assert query(database_url, "SELECT start_ts, end_ts, last_ts, user_id FROM usage_session"
                               " ORDER BY start_ts") == reference_sessions(samples)


def test_a_refused_subscription_to_the_other_workers_states_costs_only_the_check(
    database_url: str, mqtt_url: str, topics: Topics, caplog: pytest.LogCaptureFixture,
) -> None:
    """Mosquitto accepts any subscription (its ACL applies on delivery); a broker that refuses
    this one (EMQX answers "not authorized") must not keep the worker from coming online."""
    caplog.set_level(logging.WARNING, logger="ingest")
    config = IngestConfig(  # type: ignore[call-arg]  # the aliases are the env names
        DATABASE_URL=database_url, MQTT_URL=mqtt_url, topic_prefix=topics.prefix)
    session = BrokerSession(config, deliver=lambda *_: None)
    granted, refused = (ReasonCode(PacketTypes.SUBACK, identifier=code)
                        for code in (1, 0x87))
    session._on_subscribe(session._client, None, 1, [granted, granted, refused], None)
    assert session.online.is_set()
    assert [r.levelname for r in caplog.records if "other ingest workers" in r.getMessage()] == [
        "WARNING"]
    session._on_subscribe(session._client, None, 2, [refused, granted, refused], None)
    assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR"]
