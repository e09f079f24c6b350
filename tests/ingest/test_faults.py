"""Faults: database outage, two workers sharing the load, kill -9 and SIGTERM of the process,
a writing thread that breaks, a broker that stops taking the worker's password."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg import conninfo

from ingest import IngestConfig, IngestWorker
from ingest._store import BatchStore
from instrushare.protocol import Topics
from instrushare.settings import MqttAddress
from tests.services import Mosquitto, TcpProxy, running

from .conftest import (
    BASE,
    Publisher,
    RunningWorker,
    count,
    data_message,
    listening,
    query,
    register,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]


def _load(topics: Topics, seqs: range, instruments: int = 4) -> list[tuple[str, bytes]]:
    out = []
    for k in seqs:
        inst = f"i{k % instruments}"
        ts = BASE + timedelta(seconds=k)
        out.append((topics.data("gw1", inst),
                    data_message("gw1", inst, k, [(ts, "running" if k % 7 else "idle", None)])))
    return out


def _register_all(db: str, instruments: int = 4) -> None:
    register(db, {f"i{k}": "gw1" for k in range(instruments)})


def test_database_outage_nothing_acked_then_everything_once(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(IngestWorker, "INITIAL_BACKOFF_S", 0.05)
    monkeypatch.setattr(IngestWorker, "MAX_BACKOFF_S", 0.3)
    _register_all(database_url)
    port = int(conninfo.conninfo_to_dict(database_url).get("port") or 5432)
    proxy = TcpProxy(port)
    proxy.up()
    try:
        via_proxy = conninfo.make_conninfo(database_url, host="127.0.0.1", port=proxy.port)
        handle = start_worker(via_proxy)
        w = handle.worker
        publisher.publish_all(_load(topics, range(0, 50)))
        wait_until(lambda: w.stats.written == 50)
        assert w.stats.acked == 50

        proxy.down()
        with caplog.at_level(logging.WARNING, logger="ingest"):
            publisher.publish_all(_load(topics, range(50, 150)))
            wait_until(lambda: w.stats.received == 150 and w.stats.db_retries >= 3,
                       what="retries while the database is down")
            time.sleep(0.3)
            assert w.stats.acked == 50  # nothing acked while nothing is committed
            assert handle.thread.is_alive()
            assert any("database write failed" in r.getMessage() for r in caplog.records)
            proxy.up()
            wait_until(lambda: w.stats.acked == 150, what="acked after recovery")
    finally:
        proxy.down()
    assert w.stats.written == 150 and w.stats.duplicates == 0
    assert count(database_url, "ingested_message") == 150
    assert count(database_url, "state_sample") == 150
    assert query(database_url, "SELECT count(DISTINCT seq) FROM ingested_message") == [(150,)]


def test_two_workers_share_the_load_exactly_once(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    _register_all(database_url, 8)
    a = start_worker(database_url, batch_max_messages=50)
    b = start_worker(database_url, batch_max_messages=50)
    publisher.publish_all(_load(topics, range(600), instruments=8))
    wait_until(lambda: a.worker.stats.acked + b.worker.stats.acked == 600, what="600 acked")
    assert a.worker.stats.written > 0 and b.worker.stats.written > 0
    assert a.worker.stats.written + b.worker.stats.written == 600
    assert count(database_url, "ingested_message") == 600
    assert count(database_url, "state_sample") == 600
    # sessions derived by two workers at once still match the ordered data
    from .conftest import reference_sessions

    for k in range(8):
        samples = query(database_url, "SELECT ts, state, user_id FROM state_sample"
                        " WHERE instrument_id = %s ORDER BY ts", (f"i{k}",))
        got = query(database_url, "SELECT start_ts, end_ts, last_ts, user_id FROM usage_session"
                    " WHERE instrument_id = %s ORDER BY start_ts", (f"i{k}",))
        assert got == reference_sessions(samples)


def test_a_retired_worker_stores_its_queued_share_and_leaves_the_group(
    database_url: str,
    mqtt_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    """The broker queues a share of the group's messages for a stopped worker's session; the
    worker run with ``retire`` stores them and leaves, so the group's other workers take
    everything after it and nothing is queued for a worker that never comes back."""
    _register_all(database_url)
    a = start_worker(database_url, worker_id=f"a-{topics.prefix}")
    b = start_worker(database_url)
    a.halt()
    publisher.publish_all(_load(topics, range(100)))
    retiring = start_worker(database_url, retire=True, worker_id=f"a-{topics.prefix}")
    retiring.thread.join(30)
    assert not retiring.thread.is_alive(), "the retiring worker stops by itself"
    kept = retiring.worker.stats.written
    assert kept > 0, "the broker kept a share for the stopped worker"
    wait_until(lambda: b.worker.stats.written == 100 - kept, what="b stored the rest")
    assert count(database_url, "ingested_message") == 100
    settled = b.worker.stats.acked
    publisher.publish_all(_load(topics, range(100, 200)))
    wait_until(lambda: b.worker.stats.acked == settled + 100, what="b takes everything now")
    assert count(database_url, "ingested_message") == 200
    with listening(mqtt_url, topics.ingest_state(f"a-{topics.prefix}")) as retained:
        time.sleep(0.5)
    assert retained == [], "its retained state is cleared"


def test_a_retire_stopped_early_keeps_what_is_queued(
    database_url: str, publisher: Publisher, topics: Topics,
    start_worker: Callable[..., RunningWorker],
) -> None:
    """Only a retire that stored the whole queue ends the session; one stopped before (a
    SIGTERM, say) leaves it for the next run, which finishes the job."""
    _register_all(database_url)
    retiree = f"a-{topics.prefix}"
    start_worker(database_url, worker_id=retiree).halt()
    start_worker(database_url)  # the group goes on
    publisher.publish_all(_load(topics, range(100)))
    early = start_worker(database_url, retire=True, worker_id=retiree)
    early.halt()  # long before its queue has been quiet for DRAINED_AFTER_S
    assert not early.worker.retired
    again = start_worker(database_url, retire=True, worker_id=retiree)
    again.thread.join(30)
    assert again.worker.retired and again.worker.found_session
    wait_until(lambda: count(database_url, "ingested_message") == 100, what="nothing lost")


# -- the worker as a process ----------------------------------------------------------------


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(db: str, mqtt_url: str, prefix: str, *args: str) -> subprocess.Popen[bytes]:
        env = os.environ | {
            "DATABASE_URL": db, "MQTT_URL": mqtt_url, "INSTRUSHARE_TOPIC_PREFIX": prefix,
            "PYTHONPATH": str(ROOT),
        }
        log = open(tmp_path / f"ingest{len(procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "ingest", *args], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_online(mqtt_url: str, topics: Topics, worker: str) -> None:
    """Until the worker's retained state says online."""
    with listening(mqtt_url, topics.ingest_state(worker)) as states:
        wait_until(lambda: b'"online"' in (states[-1] if states else b""),
                   what="worker online")


def test_kill_9_mid_load_then_restart_loses_and_duplicates_nothing(
    make_database: Callable[[], str],
    mosquitto_factory: Callable[..., Mosquitto],
    topic_prefix: str,
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    db = make_database()
    _register_all(db)
    broker = mosquitto_factory()
    topics = Topics(topic_prefix)
    worker = f"k{uuid.uuid4().hex[:8]}"
    args = ("--worker-id", worker, "--batch-max-messages", "200")
    proc = spawn(db, broker.url, topic_prefix, *args)
    _wait_online(broker.url, topics, worker)
    total = 6000
    pub = Publisher(broker.url)
    try:
        load = _load(topics, range(total))
        done = threading.Event()

        def publish() -> None:
            for start in range(0, total, 500):
                pub.publish_all(load[start:start + 500])
            done.set()

        threading.Thread(target=publish, daemon=True).start()
        wait_until(lambda: count(db, "ingested_message") >= 1000, what="some written")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = count(db, "ingested_message")
        assert killed_at < total
        assert done.wait(60), "publisher did not finish"
        proc = spawn(db, broker.url, topic_prefix, *args)
        wait_until(lambda: count(db, "ingested_message") == total, timeout=60, what="all stored")
        time.sleep(0.5)
    finally:
        pub.close()
    assert count(db, "ingested_message") == total
    assert count(db, "state_sample") == total
    assert query(db, "SELECT min(seq), max(seq), count(DISTINCT seq) FROM ingested_message") \
        == [(0, total - 1, total)]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def test_a_stop_with_the_database_away_takes_one_grace_not_one_per_message(
    make_database: Callable[[], str],
    mosquitto_factory: Callable[..., Mosquitto],
    topic_prefix: str,
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    database_url = make_database()
    port = int(conninfo.conninfo_to_dict(database_url).get("port") or 5432)
    broker = mosquitto_factory()
    topics = Topics(topic_prefix)
    worker = f"d{uuid.uuid4().hex[:8]}"
    with running(TcpProxy(port)) as proxy:
        via_proxy = conninfo.make_conninfo(database_url, host="127.0.0.1", port=proxy.port)
        proc = spawn(via_proxy, broker.url, topic_prefix, "--worker-id", worker)
        _wait_online(broker.url, topics, worker)
        proxy.down()
        pub = Publisher(broker.url)
        try:
            pub.publish_all(_load(topics, range(40)))
        finally:
            pub.close()
        time.sleep(1.0)  # each waits for the instrument registry the database would give
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    assert time.monotonic() - asked < IngestWorker.STOP_GRACE_S + 10


def test_sigterm_flushes_commits_acks_and_goes_offline(
    make_database: Callable[[], str],
    mosquitto_factory: Callable[..., Mosquitto],
    topic_prefix: str,
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    db = make_database()
    _register_all(db)
    broker = mosquitto_factory()
    topics = Topics(topic_prefix)
    worker = f"s{uuid.uuid4().hex[:8]}"
    proc = spawn(db, broker.url, topic_prefix, "--worker-id", worker,
                 "--batch-max-messages", "5000", "--batch-max-delay-s", "60")
    _wait_online(broker.url, topics, worker)
    pub = Publisher(broker.url)
    try:
        pub.publish_all(_load(topics, range(300)))
    finally:
        pub.close()
    time.sleep(1.0)  # delivered and waiting in the worker's batch, nothing written yet
    assert count(db, "ingested_message") == 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert count(db, "ingested_message") == 300

    # Resume the worker's persistent session: anything unacked would be redelivered now.
    addr = MqttAddress.from_url(broker.url)
    redelivered: list[int] = []
    states: list[bytes | bytearray] = []  # our retained state as a new subscriber sees it
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ingest-{worker}",
                         protocol=mqtt.MQTTv5, manual_ack=True)

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        if m.topic == topics.ingest_state(worker):
            states.append(m.payload)
        else:
            redelivered.append(m.mid)

    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    client.connect(addr.host, addr.port, clean_start=False, properties=props)
    client.subscribe(topics.ingest_state(worker), qos=1)
    client.loop_start()
    try:
        wait_until(lambda: bool(states), what="retained state")
        time.sleep(1.0)
    finally:
        client.disconnect()
        client.loop_stop()
    assert redelivered == []
    assert b'"offline"' in states[-1]


def test_a_log_in_refused_once_running_is_retried_and_said_once(
    database_url: str,
    mosquitto_factory: Callable[..., Mosquitto],
    start_worker: Callable[..., RunningWorker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Refused at the first connection the worker ends (tests/test_cli.py); later, the broker's
    accounts changed while it ran, it keeps trying, for the accounts may be mended."""
    broker = mosquitto_factory(users={"ingest": "right"})
    handle = start_worker(database_url, broker.url.replace("mqtt://", "mqtt://ingest:right@"))
    caplog.set_level(logging.DEBUG, logger="ingest")
    broker.stop()
    subprocess.run(["mosquitto_passwd", "-b", str(broker.workdir / "passwd"), "ingest",
                    "changed"], check=True)
    broker.start()

    def refusals() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "refused the log-in (Not authorized)" in r.message]

    wait_until(lambda: len(refusals()) >= 2, what="two refused attempts")  # 1 s, then 2 s
    assert handle.thread.is_alive()
    assert [r.levelname for r in refusals()].count("WARNING") == 1
    assert "check the user name and password in MQTT_URL" in refusals()[0].message
    assert "right" not in caplog.text


@pytest.mark.parametrize("breaks", ["writing", "acknowledging"])
def test_a_writer_that_breaks_stops_the_worker_loudly_and_acks_nothing(
    breaks: str,
    database_url: str,
    mqtt_url: str,
    topic_prefix: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unexpected error in a writing thread (a bug, not a database failure) stops the
    worker with an error; the batches it held are redelivered to the next run. Broken in the
    acknowledgement of the first batch, no later batch is acked either (the other writer's
    included), though they were committed."""
    _register_all(database_url)
    worker_id = f"broken-{topic_prefix}"
    worker = IngestWorker(IngestConfig(  # type: ignore[call-arg]
        DATABASE_URL=database_url, MQTT_URL=mqtt_url, topic_prefix=topic_prefix,
        worker_id=worker_id, share_group=f"g{topic_prefix}", batch_max_delay_s=0.05,
        batch_max_messages=5,
    ))

    def broken(*_a: object, **_k: object) -> None:
        raise ZeroDivisionError("a bug")

    if breaks == "writing":
        monkeypatch.setattr(BatchStore, "write", broken)
    else:
        acknowledge = worker._acknowledge

        def broken_once(_items: object) -> None:  # later batches' acknowledgements would work
            monkeypatch.setattr(worker, "_acknowledge", acknowledge)
            broken()

        monkeypatch.setattr(worker, "_acknowledge", broken_once)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(threading.Event())
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert worker.online.wait(10)
    publisher.publish_all(_load(topics, range(0, 20)))
    thread.join(30)
    assert not thread.is_alive(), "the worker did not stop"
    monkeypatch.undo()
    assert [str(e) for e in raised] == ["ingest worker stopped: writing failed"]
    assert worker.stats.acked == 0
    committed = count(database_url, "ingested_message")
    assert committed == 0 if breaks == "writing" else committed >= 1
    second = start_worker(database_url, worker_id=worker_id).worker
    wait_until(lambda: second.stats.written + second.stats.duplicates == 20,
               what="every message redelivered")
    assert second.stats.duplicates == committed
    assert count(database_url, "state_sample") == 20
