"""Test helpers: a recording subscriber, a stand-in ingest presence, configs and fast clocks."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypedDict, Unpack

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway import GatewayAgent, GatewayConfig, Reading, SimulatedProbe
from instrushare.protocol import DataMessage, Topics
from instrushare.settings import MqttAddress

T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
"""Recent enough for an ingest to accept, old enough that fast test clocks stay in the past."""


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Recorder:
    """Subscribes to a filter and keeps every message, in arrival order."""

    def __init__(self, url: str, topic: str, *, username: str | None = None,
                 password: str | None = None, persistent: bool = False) -> None:
        """``persistent``: a durable session, so nothing is missed across broker restarts."""
        address = MqttAddress.from_url(url)
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"rec-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,
        )
        self.client.reconnect_delay_set(1, 1)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("recorder did not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def data(self) -> list[DataMessage]:
        return [
            DataMessage.model_validate_json(m.payload)
            for m in self.snapshot()
            if "/data/" in m.topic
        ]

    def first_arrivals(self) -> list[DataMessage]:
        """Each data message's first copy, in arrival order (later copies are resends)."""
        seen: set[int] = set()
        firsts = []
        for message in self.data():
            if message.seq not in seen:
                seen.add(message.seq)
                firsts.append(message)
        return firsts

    def states(self) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.snapshot() if m.topic.endswith("/state")
                and "/gw/" in m.topic and m.payload]

    def wait_for(self, predicate: Callable[[Recorder], bool], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.02)
        raise AssertionError("condition not met before the timeout")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Login(TypedDict, total=False):
    """A broker login: both or neither."""

    username: str
    password: str


class IngestStandIn:
    """Announces an ingest worker's state the way a real worker does: retained, and again every
    ``interval`` seconds (gateways trust only announcements made while they are connected),
    and confirms each data message it receives as stored, unless ``confirm`` is off."""

    _running: ClassVar[dict[tuple[str, str, str], IngestStandIn]] = {}

    def __init__(self, url: str, prefix: str, worker: str, interval: float, *,
                 confirm: bool = True, **login: Unpack[Login]) -> None:
        address = MqttAddress.from_url(url)
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"ingest-{uuid.uuid4().hex[:8]}")
        if login:
            self.client.username_pw_set(login["username"], login["password"])
        self.topics = Topics(prefix)
        subscribed = threading.Event()
        if confirm:
            self.client.on_connect = lambda c, u, f, r, p: c.subscribe(self.topics.all_data, 1)
            self.client.on_subscribe = lambda c, u, m, r, p: subscribed.set()
            self.client.on_message = self._confirm
        else:
            subscribed.set()
        self.client.connect(address.host, address.port)
        self.client.loop_start()  # reconnects by itself after a broker restart
        # as a real worker: online only once subscribed, else the first messages go unconfirmed
        assert subscribed.wait(10), "the stand-in ingest's subscription was never granted"
        self.topic = self.topics.ingest_state(worker)
        self.payload = json.dumps({"v": 1, "worker": worker, "status": "online"})
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._announce, args=(interval,), daemon=True)
        self.thread.start()

    def _confirm(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        gateway = msg.topic.split("/")[-3]
        seq = json.loads(msg.payload)["seq"]
        client.publish(self.topics.stored(gateway),
                       json.dumps({"v": 1, "gateway": gateway, "seqs": [seq]}), qos=1)

    def _announce(self, interval: float) -> None:
        while True:
            self.client.publish(self.topic, self.payload, qos=1, retain=True)
            if self.stopped.wait(interval):
                return

    def stop(self, final_status: str) -> None:
        self.stopped.set()
        self.thread.join(5)
        payload = json.dumps({"v": 1, "worker": self.topic.split("/")[-2], "status": final_status})
        info = self.client.publish(self.topic, payload, qos=1, retain=True)
        if self.client.is_connected():  # the test may have stopped its broker already
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()

    @classmethod
    def stop_all(cls) -> None:
        while cls._running:
            cls._running.popitem()[1].stop("offline")


def set_ingest(url: str, prefix: str, status: str, worker: str = "w1", *,
               interval: float = 0.2, confirm: bool = True, **login: Unpack[Login]) -> None:
    """Make a stand-in ingest worker online (announcing, and confirming what it receives,
    until the test ends) or offline."""
    key = (url, prefix, worker)
    running = IngestStandIn._running.pop(key, None)
    if status == "online":
        IngestStandIn._running[key] = running or IngestStandIn(
            url, prefix, worker, interval, confirm=confirm, **login)
    elif running:
        running.stop(status)
    else:
        IngestStandIn(url, prefix, worker, interval, **login).stop(status)


def gateway_id_for(prefix: str) -> str:
    """The gateway id of a test using `prefix`: MQTT client ids are broker-wide, so a fixed one
    would be taken over by any other run sharing the broker, each connect dropping the other."""
    return f"gw1-{prefix}"


def make_config(tmp_path: Path, url: str, prefix: str, *, gateway_id: str | None = None,
                instruments: tuple[str, ...] = ("xrd1",), **overrides: Any) -> GatewayConfig:
    gateway_id = gateway_id or gateway_id_for(prefix)
    data: dict[str, Any] = {
        "gateway_id": gateway_id,
        "mqtt_url": url,
        "topic_prefix": prefix,
        "outbox_path": tmp_path / f"{gateway_id}.sqlite",
        "instruments": [{"id": i, "probe": {"kind": "simulated"}} for i in instruments],
    }
    data.update(overrides)
    return GatewayConfig.model_validate(data)


class FastClock:
    """A clock the test advances: one sample interval per poll."""

    def __init__(self, start: datetime = T0, step: timedelta = timedelta(seconds=60)) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> datetime:
        self.now += self.step
        return self.now


def power_schedule(n: int) -> Iterator[float]:
    """A varied power trace: off, idle, running sessions, with noise around the thresholds."""
    pattern = [0.0, 2.0, 12.0, 15.0, 45.0, 80.0, 120.0, 35.0, 90.0, 20.0, 10.0, 0.0, 50.0, 3.0]
    for i in range(n):
        yield pattern[i % len(pattern)] + (i % 7) * 0.5


def drive(agent: GatewayAgent, clock: FastClock, n: int, *, user: str | None = "alice",
          sent: list[tuple[datetime, float]] | None = None) -> None:
    """Poll ``n`` times with the power schedule, recording what the probe said."""
    probes = agent.probes
    for power in power_schedule(n):
        now = clock.tick()
        for probe in probes.values():
            assert isinstance(probe, SimulatedProbe)
            probe.set(Reading(power_w=power, user=user if power >= 40 else None))
        agent.poll(now)
        if sent is not None:
            sent.append((now, power))


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` up with one file, which the caller deletes to free it."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):  # ENOSPC
        while True:
            out.write(b"\0" * 4096)
    return filler


Sent = list[tuple[datetime, float]]
"""What a test set its probe to: (time, power) per poll."""


def assert_delivered(rec: Recorder, sent: Sent, gateway: str, *, first_seq: int = 0) -> None:
    """Every message arrived, first copies in seq order, samples exactly as the probe said."""
    firsts = rec.first_arrivals()
    assert [m.seq for m in firsts] == list(range(first_seq, first_seq + len(firsts)))
    assert all(m.gateway == gateway for m in firsts)
    samples = [(s.ts, s.power_w) for m in firsts for s in m.samples]
    assert samples == sent


def wait_confirmed(agent: GatewayAgent, count: int, timeout: float = 10) -> None:
    """Wait until the outbox is empty, then check that the platform confirmed ``count``
    messages: the stats read the outbox and the counters at one instant."""
    assert agent.wait_drained(timeout), agent.stats
    assert agent.stats.confirmed == count, agent.stats


def wait_ready(agent: GatewayAgent, timeout: float = 10, *, ready: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while agent.link.can_publish != ready:
        assert time.monotonic() < deadline, f"agent's readiness to publish never became {ready}"
        time.sleep(0.01)
