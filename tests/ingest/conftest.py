"""Helpers for ingest tests: registry rows, a plain paho publisher, a worker in a thread."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from ingest import IngestConfig, IngestWorker
from instrushare.protocol import DataMessage, Event, GatewayState, Sample, Topics, dumps
from instrushare.settings import MqttAddress

GAP_S = 600.0


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.02)


def register(db: str, instruments: dict[str, str | None], institution: str = "inst1") -> None:
    """Registry rows: instrument id -> gateway id (None = any gateway)."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO institution (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (institution, institution),
        )
        for iid, gw in instruments.items():
            conn.execute(
                "INSERT INTO instrument (id, name, institution_id, gateway_id)"
                " VALUES (%s, %s, %s, %s)",
                (iid, iid, institution, gw),
            )


def query(db: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(db, autocommit=True) as conn:
        return list(conn.execute(sql, params))


def count(db: str, table: str) -> int:
    return int(query(db, f"SELECT count(*) FROM {table}")[0][0])


BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def data_message(
    gateway: str,
    instrument: str,
    seq: int,
    samples: Sequence[tuple[datetime, str, str | None]] = (),
    *,
    events: Sequence[tuple[datetime, str]] = (),
    historical: bool = False,
) -> bytes:
    return dumps(
        DataMessage(
            v=1,
            gateway=gateway,
            instrument=instrument,
            seq=seq,
            bd_seq=1,
            created_at=datetime.now(UTC),
            historical=historical,
            samples=[
                Sample(ts=ts, state=state, user=user, power_w=100.0)  # type: ignore[arg-type]
                for ts, state, user in samples
            ],
            events=[Event(ts=ts, type=kind) for ts, kind in events],  # type: ignore[arg-type]
        )
    )


def gateway_state(
    gateway: str, status: str, bd_seq: int, ts: datetime | None = None,
    dropped: int | None = None,
) -> bytes:
    """A birth or will as the gateway sends it: a birth stamped ``ts`` (default: now), a will
    undated unless ``ts`` is given."""
    if ts is None and status == "online":
        ts = datetime.now(UTC)
    return dumps(GatewayState(v=1, gateway=gateway, status=status, bd_seq=bd_seq,  # type: ignore[arg-type]
                              ts=ts, instruments=["i1"], dropped=dropped))


def unparsable(payload: bytes) -> list[bytes]:
    """A JSON object made unreadable to pydantic-core three ways Python's ``json.loads`` reads
    all the same, its ``seq`` included: a UTF-8 BOM, UTF-16, a lone surrogate escape."""
    doc = json.loads(payload)
    return [b"\xef\xbb\xbf" + payload, payload.decode().encode("utf-16"),
            json.dumps(doc | {"gateway": "\ud800"}).encode()]


class Publisher:
    """A bare paho MQTT v5 client publishing QoS 1 and waiting for every PUBACK."""

    def __init__(self, url: str, client_id: str = "") -> None:
        addr = MqttAddress.from_url(url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect(addr.host, addr.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=1, retain=retain)

    def publish_all(self, items: Sequence[tuple[str, bytes]]) -> None:
        infos = [self.publish(t, p) for t, p in items]
        for info in infos:
            info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mqtt_url: str) -> Iterator[Publisher]:
    pub = Publisher(mqtt_url)
    yield pub
    pub.close()


@contextlib.contextmanager
def listening(url: str, topic: str) -> Iterator[list[bytes]]:
    """The payloads arriving on ``topic`` (a retained one included) while the block runs,
    subscribed before it starts."""
    payloads: list[bytes] = []
    address = MqttAddress.from_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: payloads.append(bytes(m.payload))
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(address.host, address.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(10), f"not subscribed to {topic}"
        yield payloads
    finally:
        client.disconnect()
        client.loop_stop()


@dataclass
class RunningWorker:
    worker: IngestWorker
    stop: threading.Event
    thread: threading.Thread

    def halt(self, timeout: float = 30) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"


@pytest.fixture
def start_worker(
    topic_prefix: str, mqtt_url: str
) -> Iterator[Callable[..., RunningWorker]]:
    """Start IngestWorkers in threads (stopped after the test); keyword args go to IngestConfig,
    but ``registry``, which receives the worker's metrics."""
    running: list[RunningWorker] = []

    def start(database_url: str, mqtt: str | None = None, *, retire: bool = False,
              registry: CollectorRegistry | None = None, **overrides: Any) -> RunningWorker:
        fields: dict[str, Any] = {
            "worker_id": f"w{len(running)}-{topic_prefix}",
            "share_group": f"g{topic_prefix}",
            "topic_prefix": topic_prefix,
            "batch_max_delay_s": 0.05,
        } | overrides
        config = IngestConfig(  # type: ignore[call-arg]  # the aliases are the env names
            DATABASE_URL=database_url, MQTT_URL=mqtt or mqtt_url, **fields
        )
        worker = IngestWorker(config, retire=retire, registry=registry)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        handle = RunningWorker(worker, stop, thread)
        running.append(handle)
        assert retire or worker.online.wait(10), "worker did not come online"
        return handle

    yield start
    for handle in running:
        if handle.thread.is_alive():
            handle.halt()


@pytest.fixture
def topics(topic_prefix: str) -> Topics:
    return Topics(topic_prefix)


def reference_sessions(
    samples: Sequence[tuple[datetime, str, str | None]], gap_s: float = GAP_S
) -> list[tuple[datetime, datetime | None, datetime, str | None]]:
    """Usage sessions from the full, time-ordered samples: (start, end, last, user)."""
    gap = timedelta(seconds=gap_s)
    out: list[tuple[datetime, datetime | None, datetime, str | None]] = []
    cur: list[Any] | None = None  # [start, last, user]
    for ts, state, user in sorted(samples, key=lambda s: s[0]):
        if cur is not None:
            continues = state == "running" and user == cur[2] and ts - cur[1] <= gap
            if continues:
                cur[1] = ts
                continue
            out.append((cur[0], ts if ts - cur[1] <= gap else cur[1], cur[1], cur[2]))
            cur = None
        if state == "running":
            cur = [ts, ts, user]
    if cur is not None:
        out.append((cur[0], None, cur[1], cur[2]))
    return out
