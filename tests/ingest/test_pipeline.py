"""End to end through a real broker and database: rows, dedup, status, sessions, stop."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway import GatewayAgent
from ingest._decode import Decoder
from ingest._registry import InstrumentRegistry
from ingest._store import BatchStore
from instrushare.protocol import StoredMessages, Topics
from tests.gateway.helpers import FastClock, drive, make_config

from .conftest import (
    BASE,
    Publisher,
    RunningWorker,
    count,
    data_message,
    gateway_state,
    listening,
    query,
    reference_sessions,
    register,
    unparsable,
    wait_until,
)


def _samples(n: int) -> list[tuple]:  # type: ignore[type-arg]
    """Two sessions by different users with an idle pause, then a gap, then running again."""
    out = []
    for k in range(n):
        ts = BASE + timedelta(seconds=60 * k)
        phase = (k // 10) % 4
        state = "idle" if phase == 2 else "running"
        user = {0: "alice", 1: "bob", 3: None}.get(phase)
        out.append((ts, state, user))
    return out


def test_messages_stored_once_with_status_and_sessions(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    register(database_url, {"i1": "gw1", "i2": None})
    samples = _samples(40)
    msgs = [
        (topics.data("gw1", "i1"), data_message("gw1", "i1", seq, [s]))
        for seq, s in enumerate(samples)
    ]
    msgs += [
        (topics.data("gw1", "i2"), data_message(
            "gw1", "i2", 100 + k, [(BASE + timedelta(seconds=k), "idle", None)],
            events=[(BASE + timedelta(seconds=k), "fault")]))
        for k in range(5)
    ]
    handle = start_worker(database_url)
    publisher.publish_all([(topics.gateway_state("gw1"),
                            gateway_state("gw1", "online", 3, dropped=7))])
    publisher.publish_all(msgs)
    wait_until(lambda: handle.worker.stats.written == 45, what="45 written")
    publisher.publish_all(msgs[:10])  # the gateway resends after a lost PUBACK
    wait_until(lambda: handle.worker.stats.duplicates == 10, what="10 duplicates")

    assert count(database_url, "ingested_message") == 45
    assert count(database_url, "state_sample") == 45
    assert count(database_url, "instrument_event") == 5
    assert count(database_url, "dead_letter") == 0
    stored = query(database_url, "SELECT ts, state, user_id FROM state_sample"
                   " WHERE instrument_id = 'i1' ORDER BY ts")
    assert stored == samples

    sessions = query(database_url, "SELECT start_ts, end_ts, last_ts, user_id FROM usage_session"
                     " WHERE instrument_id = 'i1' ORDER BY start_ts")
    assert sessions == reference_sessions(samples)
    assert len(sessions) == 3  # alice, bob (ends at the idle sample), the anonymous run
    assert query(database_url, "SELECT count(*) FROM usage_session WHERE instrument_id = 'i2'") \
        == [(0,)]

    status = query(database_url, "SELECT instrument_id, gateway_id, state, since, last_ts, user_id"
                   " FROM instrument_status ORDER BY instrument_id")
    last_ts = samples[-1][0]
    run_start = samples[30][0]  # phase 3 starts at k = 30 and runs to the end
    assert status[0] == ("i1", "gw1", "running", run_start, last_ts, None)
    assert status[1][:3] == ("i2", "gw1", "idle")
    assert status[1][3] == BASE  # idle all along: since stays at the first sample

    assert query(database_url, "SELECT id, bd_seq, online, dropped FROM gateway") == [
        ("gw1", 3, True, 7)]
    publisher.publish_all([(topics.gateway_state("gw1"), gateway_state("gw1", "offline", 2))])
    wait_until(lambda: handle.worker.stats.acked == 57, what="stale will acked")
    assert query(database_url, "SELECT online FROM gateway") == [(True,)]  # stale will ignored
    will_sent = datetime.now(UTC)
    publisher.publish_all([(topics.gateway_state("gw1"), gateway_state("gw1", "offline", 3))])
    wait_until(lambda: query(database_url, "SELECT online FROM gateway") == [(False,)],
               what="gateway offline")
    [(offline_since,)] = query(database_url, "SELECT changed_at FROM gateway")
    assert will_sent <= offline_since <= datetime.now(UTC)  # an undated will: when received

    handle.halt()
    stats = handle.worker.stats
    assert stats.received == stats.acked == 58
    assert stats.written == 45 and stats.duplicates == 10


def test_a_gateway_with_replaced_storage_comes_online_again_stale_births_do_not(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    """A gateway whose storage was replaced may count bd_seq from 0 again (ours does not, see
    the next test). Its birth applies once the gateway has been offline for longer than the
    clock skew tolerated; a stale birth of an older session, and a lower bd_seq within that
    window, leave the offline gateway as it is."""
    went_offline = datetime.now(UTC) - timedelta(hours=1)
    query(database_url, "INSERT INTO gateway (id, bd_seq, online, changed_at)"
          " VALUES ('gw1', 57, false, %s) RETURNING id", (went_offline,))
    handle = start_worker(database_url)
    state = topics.gateway_state("gw1")
    publisher.publish_all([
        (state, gateway_state("gw1", "online", 56, ts=went_offline - timedelta(minutes=5))),
        (state, gateway_state("gw1", "online", 2, ts=went_offline + timedelta(seconds=299))),
    ])
    wait_until(lambda: handle.worker.stats.acked == 2, what="both births handled")
    assert query(database_url, "SELECT bd_seq, online FROM gateway") == [(57, False)]

    publisher.publish_all([(state, gateway_state("gw1", "online", 1))])
    wait_until(lambda: query(database_url, "SELECT bd_seq, online FROM gateway") == [(1, True)],
               what="the replaced gateway online")
    publisher.publish_all([(state, gateway_state("gw1", "offline", 57))])  # the old session's
    wait_until(lambda: handle.worker.stats.acked == 4, what="the old will handled")
    assert query(database_url, "SELECT bd_seq, online FROM gateway") == [(1, True)]
    publisher.publish_all([(state, gateway_state("gw1", "offline", 1))])
    wait_until(lambda: query(database_url, "SELECT online FROM gateway") == [(False,)],
               what="the new will applied")


def test_our_gateway_restarted_at_once_with_a_new_outbox_is_online_again(
    database_url: str,
    mqtt_url: str,
    topic_prefix: str,
    tmp_path: Path,
    start_worker: Callable[..., RunningWorker],
) -> None:
    """Its outbox deleted, the gateway counts seq from 0 again but not bd_seq, which is at
    least the wall clock in milliseconds: its birth is above the old session's, so the platform
    takes it at once, within the 300 s after the offline in which rule 4 ignores a lower one."""
    config = make_config(tmp_path, mqtt_url, topic_prefix)
    register(database_url, {"xrd1": config.gateway_id})
    start_worker(database_url)

    def gateway() -> list[tuple[int, bool]]:
        return query(database_url, "SELECT bd_seq, online FROM gateway")

    clock = FastClock()
    old = GatewayAgent(config, clock=clock)
    old.start()
    wait_until(lambda: gateway() == [(old.link.bd_seq, True)], what="the gateway online")
    old.stop()
    wait_until(lambda: gateway() == [(old.link.bd_seq, False)], what="the gateway offline")
    for file in tmp_path.glob(f"{config.outbox_path.name}*"):
        file.unlink()

    new = GatewayAgent(config, clock=clock)
    new.start()
    try:
        wait_until(lambda: gateway() == [(new.link.bd_seq, True)], what="the new birth applied")
        assert new.link.bd_seq > old.link.bd_seq
        drive(new, clock, 3)
        new.flush()
        assert new.wait_drained(10), new.stats
    finally:
        new.stop()
    assert count(database_url, "state_sample") == 3


def test_a_replaced_outbox_reusing_a_seq_in_one_batch_loses_nothing(database_url: str) -> None:
    """Messages are keyed by (gateway, seq, created_at): an old message and a new one from an
    outbox that counts seq from 0 again are two messages, also within one batch; a resend of
    either is a duplicate."""
    register(database_url, {"i1": "gw1"})
    store = BatchStore(conninfo=database_url, session_max_gap=timedelta(minutes=10))
    decoder = Decoder(prefix="p", registry=InstrumentRegistry(loader=store.load_registry))
    topic = Topics("p").data("gw1", "i1")
    old = data_message("gw1", "i1", 3, [(BASE, "idle", None)])
    new = data_message("gw1", "i1", 3, [(BASE + timedelta(minutes=1), "running", None)])
    now = time.time()
    try:
        first = store.write([decoder.decode((topic, payload, mid, 1, now))
                             for mid, payload in enumerate([old, new, old])])
    finally:
        store.close()
    assert (first.fresh, first.duplicates) == (2, 1)
    assert query(database_url, "SELECT state FROM state_sample ORDER BY ts") == [
        ("idle",), ("running",)]


def test_a_message_repeating_a_timestamp_keeps_and_counts_the_first(database_url: str) -> None:
    """Within one message the first sample at a ts, and the first event of a ts and type, are
    stored; the others are dropped without a dead letter, and the message's row counts what
    was kept."""
    register(database_url, {"i1": "gw1"})
    store = BatchStore(conninfo=database_url, session_max_gap=timedelta(minutes=10))
    decoder = Decoder(prefix="p", registry=InstrumentRegistry(loader=store.load_registry))
    t = [BASE, BASE + timedelta(minutes=1)]
    payload = data_message(
        "gw1", "i1", 1, [(t[0], "idle", None), (t[1], "idle", None), (t[0], "running", "u")],
        events=[(t[0], "fault"), (t[0], "fault"), (t[0], "fault_cleared")])
    try:
        store.write([decoder.decode((Topics("p").data("gw1", "i1"), payload, 1, 1,
                                     time.time()))])
    finally:
        store.close()
    assert query(database_url, "SELECT ts, state FROM state_sample ORDER BY ts") == [
        (t[0], "idle"), (t[1], "idle")]
    assert query(database_url, "SELECT n_samples, n_events FROM ingested_message") == [(2, 2)]
    assert count(database_url, "instrument_event") == 2
    assert count(database_url, "dead_letter") == 0


def test_every_committed_message_is_confirmed_to_its_gateway(
    database_url: str,
    mqtt_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    """Stored, duplicate and dead-lettered data messages are all confirmed, invalid ones too
    when they name a seq; one without a readable seq is not (there is nothing to name), nor
    one the validation cannot parse though a laxer JSON parser would find its seq."""
    register(database_url, {"i1": "gw1"})
    with listening(mqtt_url, topics.stored("gw1")) as payloads:
        handle = start_worker(database_url)
        good = [(topics.data("gw1", "i1"),
                 data_message("gw1", "i1", k, [(BASE + timedelta(seconds=k), "idle", None)]))
                for k in range(5)]
        unknown = (topics.data("gw1", "nope"),
                   data_message("gw1", "nope", 5, [(BASE, "idle", None)]))
        valid = json.loads(good[0][1])
        invalid = [(topics.data("gw1", "i1"), json.dumps(valid | change).encode())
                   for change in ({"seq": 6, "v": 2}, {"seq": 7, "extra": 1},
                                  {"seq": 8, "samples": []},
                                  {"seq": 9.0}, {"seq": -1}, {"seq": True}, {"seq": "10"})]
        unreadable = [(topics.data("gw1", "i1"), p) for p in (
            b"{not json", b"[11]",
            *unparsable(data_message("gw1", "i1", 12, [(BASE, "idle", None)])))]
        publisher.publish_all([*good, unknown, *invalid, *unreadable, good[0]])
        wait_until(lambda: handle.worker.stats.acked == 19, what="all handled")

        def confirmed() -> set[int]:
            return {seq for p in payloads for seq in StoredMessages.model_validate_json(p).seqs}

        wait_until(lambda: confirmed() == set(range(9)), what="confirmations")
        time.sleep(0.2)
    assert confirmed() == set(range(9))  # the duplicate of 0 at least once
    assert handle.worker.stats.dead_lettered == {
        "unknown_instrument": 1, "unsupported_version": 1, "invalid_payload": 7,
        "malformed_json": 4}


def test_historical_samples_never_overwrite_live_status(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    register(database_url, {"i1": None})
    handle = start_worker(database_url)
    t = BASE
    publisher.publish_all([(topics.data("gw1", "i1"), data_message(
        "gw1", "i1", 1, [(t, "idle", None)]))])
    wait_until(lambda: handle.worker.stats.written == 1)
    publisher.publish_all([
        (topics.data("gw1", "i1"), data_message(
            "gw1", "i1", 2, [(t + timedelta(minutes=5), "running", "u")], historical=True)),
        (topics.data("gw1", "i1"), data_message(
            "gw1", "i1", 3, [(t - timedelta(minutes=5), "fault", None)])),
    ])
    wait_until(lambda: handle.worker.stats.written == 3)
    assert query(database_url, "SELECT state, last_ts FROM instrument_status") == [("idle", t)]
    # the replayed running sample still counts for usage
    assert query(database_url, "SELECT start_ts, end_ts FROM usage_session") == [
        (t + timedelta(minutes=5), None)
    ]


Phases = tuple[list[str], list[str], list[str]]


def _through_an_outage(database_url: str, one_batch: bool, states: Phases) -> list[datetime]:
    """Live samples of ``states[0]``, those held during an outage (historical) of
    ``states[1]``, then live ones of ``states[2]``, a minute apart; their times."""
    register(database_url, {"i1": "gw1"})
    store = BatchStore(conninfo=database_url, session_max_gap=timedelta(minutes=10))
    decoder = Decoder(prefix="p", registry=InstrumentRegistry(loader=store.load_registry))
    topic = Topics("p").data("gw1", "i1")
    t = [BASE + timedelta(minutes=k) for k in range(sum(map(len, states)))]
    times = iter(t)
    before, held, after = (
        data_message("gw1", "i1", seq, [(next(times), state, "u" if state == "running" else None)
                                        for state in phase], historical=seq == 2)
        for seq, phase in enumerate(states, start=1))
    batches = [[before], [held, after]] if one_batch else [[before], [held], [after]]
    try:
        for mid, batch in enumerate(batches):
            store.write([decoder.decode((topic, payload, mid, 1, time.time()))
                         for payload in batch])
    finally:
        store.close()
    return t


@pytest.mark.parametrize("one_batch", [False, True])
def test_live_status_since_follows_the_data_of_an_outage(
    database_url: str, one_batch: bool
) -> None:
    """Running before an outage, idle and running again in the data held during it, running
    live after it: running since it started again, not since before the outage."""
    t = _through_an_outage(database_url, one_batch, (
        ["running", "running"], ["idle", "running"], ["running", "running"]))
    assert query(database_url, "SELECT state, since, last_ts FROM instrument_status") == [
        ("running", t[3], t[5])]
    assert query(database_url, "SELECT start_ts FROM usage_session ORDER BY start_ts") == [
        (t[0],), (t[3],)]


@pytest.mark.parametrize("one_batch", [False, True])
def test_a_state_begun_during_an_outage_is_dated_by_its_held_samples(
    database_url: str, one_batch: bool
) -> None:
    """Idle before an outage, running in the held data and live after it: running since the
    held samples say, as its usage session does."""
    t = _through_an_outage(database_url, one_batch, (
        ["idle", "idle"], ["running", "running"], ["running", "running"]))
    assert query(database_url, "SELECT state, since, last_ts FROM instrument_status") == [
        ("running", t[2], t[5])]
    assert query(database_url, "SELECT start_ts FROM usage_session ORDER BY start_ts") == [
        (t[2],)]


def test_graceful_stop_commits_and_acks_everything_received(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    register(database_url, {"i1": None})
    # a long delay and a big batch: messages wait in the queue until the stop flushes them
    handle = start_worker(database_url, batch_max_delay_s=30, batch_max_messages=5000)
    publisher.publish_all([
        (topics.data("gw1", "i1"), data_message(
            "gw1", "i1", k, [(BASE + timedelta(seconds=k), "idle", None)]))
        for k in range(200)
    ])
    wait_until(lambda: handle.worker.stats.received == 200)
    assert count(database_url, "ingested_message") == 0
    handle.halt(timeout=10)
    stats = handle.worker.stats
    assert stats.acked == stats.written == 200
    assert count(database_url, "ingested_message") == 200


def test_a_gateway_birth_gets_a_live_announcement_at_once(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    """Gateways trust only live announcements; a birth is answered without waiting an interval."""
    handle = start_worker(database_url, announce_interval_s=300)
    seen: list[tuple[float, bool]] = []
    publisher.client.on_message = lambda _c, _u, m: seen.append((time.monotonic(), m.retain))
    publisher.client.subscribe(topics.all_ingest_states, qos=1)
    time.sleep(0.5)  # the worker's own first announcement may still be on its way
    seen.clear()
    born = time.monotonic()
    publisher.publish_all([(topics.gateway_state("gw9"), gateway_state("gw9", "online", 1))])
    wait_until(lambda: any(not retain for _, retain in seen), timeout=5, what="a live one")
    answered = min(t for t, retain in seen if not retain)
    assert answered - born < 2.0
    assert handle.worker.online.is_set()
