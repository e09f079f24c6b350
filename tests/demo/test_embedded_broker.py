"""The demo's embedded MQTT broker under what the demo does to it: a fleet of gateways with
persistent sessions reconnecting together while retained messages wait for them."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from instrushare.demo.embedded import EmbeddedBroker
from tests.services import free_port

RETAINED = 20
CLIENTS = 30


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(free_port())
    broker.start()
    yield broker
    broker.stop()


class Gateway:
    """A persistent-session client that subscribes to the retained topics and its own, and
    counts the retained messages and the connections the broker dropped."""

    def __init__(self, broker: EmbeddedBroker, n: int) -> None:
        self.retained = 0
        self.dropped = 0
        self.leaving = False
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{n}",
                                  clean_session=False)
        self.client.on_connect = lambda c, *_: c.subscribe([("retained/#", 1), (f"own/{n}", 1)])
        self.client.on_message = self._message
        self.client.on_disconnect = self._disconnect
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.retain:
            with self.lock:
                self.retained += 1

    def _disconnect(self, *_: object) -> None:
        if not self.leaving:
            self.dropped += 1

    def leave(self) -> None:
        self.leaving = True
        self.client.disconnect()
        self.client.loop_stop()


def gone(broker: EmbeddedBroker) -> None:
    """Wait until the broker has closed every client's connection: a client reconnecting
    before that is a take-over, which amqtt 0.12 handles by dropping one side at times (the
    gateways' reconnecting with backoff copes; this test is about the subscriptions)."""
    sessions = broker._broker._sessions
    deadline = time.monotonic() + 10
    while any(s.transitions.is_connected() for s, _ in list(sessions.values())):
        assert time.monotonic() < deadline, "clients still connected after leaving"
        time.sleep(0.02)


def test_gateways_reconnecting_together_are_all_served(broker: EmbeddedBroker) -> None:
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ingest")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    for k in range(RETAINED):
        publisher.publish(f"retained/{k}", "online", qos=1, retain=True).wait_for_publish(5)
    publisher.disconnect()
    publisher.loop_stop()
    for _ in range(3):  # the sessions exist from the second round on, as on a demo's restart
        fleet = [Gateway(broker, n) for n in range(CLIENTS)]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(g.retained < RETAINED for g in fleet):
            time.sleep(0.05)
        for gateway in fleet:
            gateway.leave()
        gone(broker)
        assert [g.dropped for g in fleet] == [0] * CLIENTS
        # each has every retained message (amqtt may send one twice: harmless for state)
        assert min(g.retained for g in fleet) >= RETAINED


def test_a_late_puback_prints_no_warning_nor_traceback(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """The ingest acknowledges only after its commit, which on a busy machine comes after
    amqtt's fixed 5 s: the message was delivered all the same, retained or live, and the demo's
    output stays free of amqtt's complaints about it."""
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gateway")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    publisher.publish("late/retained", "online", qos=1, retain=True).wait_for_publish(5)
    received: list[tuple[str, int]] = []
    ingest = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ingest", manual_ack=True)
    ingest.on_connect = lambda c, *_: c.subscribe("late/#", 1)
    ingest.on_message = lambda _c, _u, m: received.append((m.topic, m.mid))
    ingest.connect("127.0.0.1", broker.port)
    ingest.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not received:
            assert time.monotonic() < deadline, "the retained message never came"
            time.sleep(0.05)
        publisher.publish("late/live", "data", qos=1).wait_for_publish(5)
        time.sleep(6)  # past amqtt's wait for the PUBACKs
        for _topic, mid in received:
            ingest.ack(mid, 1)
        time.sleep(0.5)
        gc.collect()  # a task whose error nobody read reports it when collected
    finally:
        for client in (ingest, publisher):
            client.disconnect()
            client.loop_stop()
    assert sorted(topic for topic, _mid in received) == ["late/live", "late/retained"]
    complaints = [r for r in caplog.records
                  if r.levelno >= logging.WARNING and r.name.startswith(("amqtt", "asyncio"))]
    assert complaints == []
