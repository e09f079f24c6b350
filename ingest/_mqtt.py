"""A paho client with a lean path for the deliveries the ingest lives on, and batched PUBACKs.

paho builds an ``MQTTMessage``, an MQTT 5 ``Properties`` object, a debug log record and a
topic match per PUBLISH, and queues each PUBACK with its own wake-up write: together about as
much Python per 1-sample message as the whole decode and write. QoS 0/1 deliveries without
MQTT 5 properties (what gateways send) are parsed here into ``(topic, payload, mid, qos)``
and handed to ``deliver``; anything else (QoS 2, properties, a malformed packet) takes paho's
own path and reaches ``on_message`` as usual. Both hooks use paho internals
(``_handle_publish``, ``_in_packet``, ``_packet_queue``): ``tests/ingest/test_mqtt.py`` checks
them against the installed paho, and ``ack_all`` falls back to ``ack`` if they are missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

Deliver = Callable[[str, bytes | bytearray, int, int], None]
"""Called on paho's network thread with (topic, payload, mid, qos)."""

_PUBACK = 0x40
_PUBACK_HEAD = bytes((_PUBACK, 2))


class LeanClient(mqtt.Client):
    """``mqtt.Client`` that hands plain QoS 0/1 deliveries to ``deliver`` (manual ack only)."""

    def __init__(self, *args: Any, deliver: Deliver, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not kwargs.get("manual_ack"):
            raise ValueError("LeanClient needs manual_ack=True: it never acks on its own")
        self._deliver = deliver
        self._v5 = kwargs.get("protocol") == mqtt.MQTTv5

    def _handle_publish(self) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        qos = (self._in_packet["command"] & 0x06) >> 1
        try:
            if qos > 1:
                raise ValueError
            end = 2 + (packet[0] << 8 | packet[1])
            topic = packet[2:end].decode()
            mid = 0
            if qos:
                mid = packet[end] << 8 | packet[end + 1]
                end += 2
            if self._v5:
                if packet[end]:  # properties present (alias, expiry, ...): paho decodes them
                    raise ValueError
                end += 1
            if not topic or end > len(packet):
                raise ValueError
        except (IndexError, ValueError):  # UnicodeDecodeError is a ValueError
            return super()._handle_publish()
        self._deliver(topic, packet[end:], mid, qos)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_all(self, mids: Iterable[int]) -> int:
        """PUBACK every ``mid`` (QoS 1) in one queued write; returns how many."""
        packet = b"".join([_PUBACK_HEAD + mid.to_bytes(2, "big") for mid in mids])
        if not packet:
            return 0
        queue = getattr(self, "_packet_queue", None)
        if queue is None:  # pragma: no cover - a paho without the internal: one by one
            for k in range(0, len(packet), 4):
                self.ack(int.from_bytes(packet[k + 2:k + 4], "big"), 1)
        else:
            queue(_PUBACK, packet, 0, 0)
        return len(packet) // 4
