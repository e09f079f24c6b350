"""The lean PUBLISH path agrees with paho's own decoding, and batched PUBACKs really ack."""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest._mqtt import LeanClient
from instrushare.settings import MqttAddress

from .conftest import Publisher, wait_until


def _props() -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 300
    props.ReceiveMaximum = 1000
    return props


class _Receiver:
    """A LeanClient with a persistent session that records what reaches it, and how."""

    def __init__(self, url: str, client_id: str, topic: str) -> None:
        self.got: list[tuple[str, bytes, int, int]] = []
        self.slow: list[tuple[str, bytes]] = []
        addr = MqttAddress.from_url(url)
        self.client = LeanClient(CallbackAPIVersion.VERSION2, client_id=client_id,
                                 protocol=mqtt.MQTTv5, manual_ack=True, deliver=self._deliver)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect(addr.host, addr.port, clean_start=False, properties=_props())
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(10)

    def _deliver(self, topic: str, payload: Any, mid: int, qos: int) -> None:
        self.got.append((topic, bytes(payload), mid, qos))

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.slow.append((msg.topic, bytes(msg.payload)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_lean_path_decodes_like_paho() -> None:
    for qos in (0, 1):
        for topic, payload in (("a/b", b"{}"), ("t/\u4e2d/x", b""), ("x", bytes(range(256)))):
            head = topic.encode()
            packet = len(head).to_bytes(2, "big") + head
            packet += (513).to_bytes(2, "big") if qos else b""
            packet += b"\x00" + payload  # MQTT 5: no properties
            got: list[tuple[str, Any, int, int]] = []
            ref: list[mqtt.MQTTMessage] = []
            client = LeanClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                manual_ack=True, deliver=lambda *a: got.append(a))  # noqa: B023
            client.on_message = lambda _c, _u, m: ref.append(m)  # noqa: B023
            for handle in (LeanClient._handle_publish, mqtt.Client._handle_publish):
                client._in_packet["command"] = 0x30 | qos << 1
                client._in_packet["packet"] = bytearray(packet)
                handle(client)
            assert got == [(r.topic, r.payload, r.mid, r.qos) for r in ref]
            assert len(got) == 1 and got[0][1] == payload


def test_lean_client_requires_manual_ack() -> None:
    with pytest.raises(ValueError, match="manual_ack"):
        LeanClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, deliver=print)


def test_batched_acks_clear_the_session_and_unacked_come_back(
    mqtt_url: str, topic_prefix: str, publisher: Publisher
) -> None:
    topic = f"{topic_prefix}/lean"
    client_id = f"lean-{topic_prefix}"
    first = _Receiver(mqtt_url, client_id, topic)
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = ("k", "v")
    publisher.publish_all([(topic, f"m{k}".encode()) for k in range(10)])
    info = publisher.client.publish(topic, b"with-props", qos=1, properties=props)
    info.wait_for_publish(10)
    wait_until(lambda: len(first.got) == 10 and len(first.slow) == 1, what="11 deliveries")
    assert [p for _t, p, _m, _q in first.got] == [f"m{k}".encode() for k in range(10)]
    assert first.slow == [(topic, b"with-props")]  # properties: paho's own path
    assert first.client.ack_all([m for _t, _p, m, _q in first.got[:6]]) == 6
    time.sleep(0.3)  # let the network thread write the PUBACKs before leaving
    first.close()

    again = _Receiver(mqtt_url, client_id, topic)
    try:
        wait_until(lambda: len(again.got) + len(again.slow) >= 5, what="redelivery")
        time.sleep(0.3)
        assert sorted(p for _t, p, _m, _q in again.got) == [f"m{k}".encode() for k in range(6, 10)]
        assert [p for _t, p in again.slow] == [b"with-props"]
    finally:
        again.close()
