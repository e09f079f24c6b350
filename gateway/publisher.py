"""The MQTT side of a gateway: connection, birth and last will, ingest presence, publishing.

One paho client per gateway, driven by a shared NetworkLoop thread (see netloop.py), which
also runs the reconnect schedule: exponential backoff with jitter, delays in class constants.
Callbacks never block on the agent: acknowledgements and state changes are handed over through
``on_ack`` / ``on_change``, which must return quickly (paho calls ``on_publish`` while holding
its message lock).
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from gateway.netloop import NetworkLoop
from instrushare.protocol import GatewayState, IngestState, StoredMessages, Topics, dumps
from instrushare.settings import MqttAddress, connect_refusal

logger = logging.getLogger("gateway")

SOFTWARE = "instrushare-gateway/0.1"
NOT_AUTHORIZED = 0x87
"""MQTT 5 reason code of a PUBACK refusing a message the ACL does not allow."""


NO_INGEST = "no ingest worker online"
"""Why data is held while no ingest worker's state says online (``require_ingest_online``)."""


def reconnect_delay(failures: int, least: float, most: float) -> float:
    """The wait after ``failures`` failed attempts in a row, between ``least`` and ``most``:
    doubling, each drawn from the upper half of its span, so gateways that lost the broker
    together do not all come back together."""
    return min(most, least * 2.0 ** min(failures, 64)) * random.uniform(0.5, 1.0)


class MqttLink:
    """Keeps one gateway connected and says when data may be published.

    Data may be published while connected, subscribed to ingest presence, and (unless
    ``require_ingest_online`` is False) while at least one ingest worker's retained state says
    online. ``next_bd_seq`` is called before every connection attempt: each connection gets a
    fresh session number in its will and birth, so a late will from an older connection is
    recognisably stale. With ``protocol`` "5" the broker says which topic it refuses (PUBACK
    reason codes); MQTT 3.1.1 cannot, and brokers such as Mosquitto just close the connection.
    """

    RECONNECT_MIN_DELAY = 1.0
    RECONNECT_MAX_DELAY = 60.0
    CONNECT_TIMEOUT_S = 5.0
    KEEPALIVE_S = 30
    STOP_TIMEOUT_S = 5.0
    RETRY_REPORT_S = 300.0
    """Failed connection attempts are logged as warnings: the first, then one per this long."""
    STABLE_CONNECTION_S = 20.0
    """A connection that lasted this long resets the backoff. One the broker closes sooner
    (typically another client connecting with the same client id, each taking the session
    over from the other) does not, so two such clients do not reconnect in a tight loop."""

    def __init__(
        self,
        *,
        gateway_id: str,
        address: MqttAddress,
        topics: Topics,
        instruments: list[str],
        require_ingest_online: bool,
        next_bd_seq: Callable[[], int],
        dropped: Callable[[], int],
        on_ack: Callable[[int], None],
        on_stored: Callable[[list[int]], None],
        on_change: Callable[[], None],
        on_lost: Callable[[], None],
        network: NetworkLoop,
        protocol: Literal["5", "3.1.1"],
    ) -> None:
        self.gateway_id = gateway_id
        self.address = address
        self.protocol = protocol
        self.topics = topics
        self.instruments = instruments
        self.require_ingest_online = require_ingest_online
        self._next_bd_seq = next_bd_seq
        self._dropped = dropped
        self._on_ack = on_ack
        self._on_stored = on_stored
        self._stored_topic = topics.stored(gateway_id)
        self._on_change = on_change
        self._on_lost = on_lost
        self.bd_seq = -1
        self.connects = 0
        self._connected = False
        self._subscribed = False
        self._sub_mid: int | None = None
        self._ingest_online: set[str] = set()
        self._link_up = True
        self._stopping = False
        self._failures = 0
        self._warned_at = 0.0
        self._refused: str | None = None
        """What the broker refused (the log-in, a message), for the disconnect that follows."""
        self._reported: set[str] = set()
        """Refusals logged as errors already: each cause once, not at every retry."""
        self._connected_at = 0.0
        self._stop_began = 0.0
        self._offline: mqtt.MQTTMessageInfo | None = None
        """The offline state published by ``begin_stop``, until ``stop`` has waited for it."""
        self._state_lock = threading.Lock()
        self._network = network
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        v5 = self.protocol == "5"
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.gateway_id,
            clean_session=None if v5 else True,  # MQTT 5: clean_start in connect_async
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        self.address.configure(client)
        client.max_inflight_messages_set(0)  # the agent's window bounds what is in flight
        client.max_queued_messages_set(0)
        client.connect_timeout = self.CONNECT_TIMEOUT_S
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    # -- state ---------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def stopping(self) -> bool:
        """True from ``begin_stop`` on: the link does not reconnect, nor start again."""
        return self._stopping

    @property
    def link_up(self) -> bool:
        """False while ``set_link(False)`` simulates a network outage."""
        return self._link_up

    @property
    def can_publish(self) -> bool:
        return self.held_by is None

    @property
    def held_by(self) -> str | None:
        """Why data may not be published now; None when it may."""
        if not self._link_up:
            return "network link down"
        if not self._connected:
            return f"not connected to the broker {self.address.host}:{self.address.port}"
        if not self._subscribed:
            return "subscribing"
        if self.require_ingest_online and not self._ingest_online:
            return NO_INGEST
        return None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; a broker that is down is retried with backoff."""
        self._client.connect_async(self.address.host, self.address.port, self.KEEPALIVE_S,
                                   clean_start=True)
        self._network.attach(self._client)
        self._network.call_soon(self._connect)

    def begin_stop(self) -> None:
        """Stop reconnecting and publish the retained offline state (when connected), without
        waiting for the broker: ``stop`` does, from then on. Links begun first and then
        stopped wait for their brokers at once, not one after another."""
        if self._stopping:
            return
        self._stopping = True
        self._stop_began = time.monotonic()
        if self._connected and self._link_up:
            self._offline = self._client.publish(
                self.topics.gateway_state(self.gateway_id),
                self._state_payload("offline", datetime.now(UTC)),
                qos=1,
                retain=True,
            )

    def stop(self) -> None:
        """``begin_stop`` (if not done yet); wait until ``STOP_TIMEOUT_S`` after it for the
        broker to take the offline state, disconnect, and wait until twice that at most for
        the connection to close; detach."""
        self.begin_stop()
        if self._offline is not None:
            with contextlib.suppress(RuntimeError, ValueError):
                self._offline.wait_for_publish(
                    max(0.0, self._stop_began + self.STOP_TIMEOUT_S - time.monotonic()))
            self._client.disconnect()
            deadline = self._stop_began + 2 * self.STOP_TIMEOUT_S
            while self._client.socket() is not None and time.monotonic() < deadline:
                time.sleep(0.002)
            self._offline = None
        self._link_up = False
        self._network.call_soon(self._cut)
        self._network.detach(self._client)
        self._connected = self._subscribed = False

    def set_link(self, up: bool) -> None:
        """Simulate a network outage: down cuts the TCP connection abruptly (the broker then
        publishes the last will) and stops reconnecting; up reconnects at once."""
        if up == self._link_up or self._stopping:
            return
        self._link_up = up
        if up:
            self._failures = 0
            self._network.call_soon(self._connect)
            return
        self._cut()
        self._on_change()

    def _cut(self) -> None:
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _connect(self) -> None:
        """(network thread) One connection attempt; failures schedule the next one."""
        if not self._link_up or self._stopping or self._client.socket() is not None:
            return
        try:
            self._client.reconnect()
        except Exception as exc:
            self._retry_later(f"cannot connect to {self.address.host}:{self.address.port}: {exc}")

    def _retry_later(self, why: str, *, reported: bool = False) -> None:
        """Schedule the next attempt; ``why`` is a WARNING at the first failure and then every
        ``RETRY_REPORT_S``, DEBUG otherwise, and always DEBUG once ``reported`` as an ERROR."""
        if not self._link_up or self._stopping:
            return
        self._failures += 1
        delay = reconnect_delay(self._failures, self.RECONNECT_MIN_DELAY,
                                self.RECONNECT_MAX_DELAY)
        now = time.monotonic()
        if not reported and (self._failures == 1 or now - self._warned_at >= self.RETRY_REPORT_S):
            self._warned_at = now
            log = logger.warning
        else:
            log = logger.debug
        log("gateway %s: %s; retry %d in %.1f s", self.gateway_id, why, self._failures, delay)
        self._network.call_later(delay, self._connect)

    def _refuse(self, why: str) -> None:
        """The broker refused the log-in or a message: an ERROR the first time for each cause
        (retrying cannot cure it; mending the broker's accounts or ACL, or this gateway's
        configuration, can), kept for the disconnect that follows."""
        self._refused = why
        if why not in self._reported:
            self._reported.add(why)
            logger.error("gateway %s: %s", self.gateway_id, why)

    def publish(self, topic: str, payload: bytes) -> int | None:
        """Hand one QoS 1 message to paho; its mid, or None if paho refused it."""
        info = self._client.publish(topic, payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            logger.warning("gateway %s: publish refused by client: %s", self.gateway_id,
                           mqtt.error_string(info.rc))
            return None
        return info.mid

    # -- paho callbacks (network thread) -------------------------------------------------
    def _state_payload(self, status: str, ts: datetime | None) -> bytes:
        """Birth (with the outbox's drop count), offline state or will; the will has no
        ``ts``: written now, it is published whenever the connection dies, and the ingest
        takes its receive time as going offline."""
        return dumps(
            GatewayState(
                v=1,
                gateway=self.gateway_id,
                status=status,  # type: ignore[arg-type]
                bd_seq=max(self.bd_seq, 0),
                ts=ts,
                instruments=self.instruments,
                software=SOFTWARE,
                dropped=self._dropped() if status == "online" else None,
            )
        )

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        _drop_unacknowledged(client)
        self.bd_seq = self._next_bd_seq()
        client.will_set(
            self.topics.gateway_state(self.gateway_id),
            self._state_payload("offline", None),
            qos=1,
            retain=True,
        )

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:  # the disconnect that follows retries
            self._refuse(connect_refusal(reason.value, str(reason), broker="the broker",
                                         setting="mqtt_url"))
            return
        if not self._link_up or self._stopping:
            self._cut()
            return
        self._connected_at = time.monotonic()
        self.connects += 1
        with self._state_lock:
            self._connected = True
            self._subscribed = False
            self._ingest_online.clear()
        logger.info("gateway %s connected to %s:%d (bd_seq %d)", self.gateway_id,
                    self.address.host, self.address.port, self.bd_seq)
        client.publish(
            self.topics.gateway_state(self.gateway_id),
            self._state_payload("online", datetime.now(UTC)),
            qos=1,
            retain=True,
        )
        _, self._sub_mid = client.subscribe(
            [(self.topics.all_ingest_states, 1), (self._stored_topic, 1)])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        if mid == self._sub_mid:
            self._subscribed = True
            self._on_change()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._stored_topic:
            self._confirmed(message.payload)
            return
        if not mqtt.topic_matches_sub(self.topics.all_ingest_states, message.topic):
            # some brokers (amqtt) also deliver retained messages the filter does not match
            logger.debug("gateway %s: ignoring %s", self.gateway_id, message.topic)
            return
        worker = message.topic.split("/")[-2]
        online = False
        if message.payload:
            try:
                state = IngestState.model_validate_json(message.payload)
            except ValidationError:
                logger.warning("gateway %s: ignoring malformed ingest state on %s",
                               self.gateway_id, message.topic)
            else:
                online = state.status == "online"
        if online and message.retain:
            # A retained "online" may predate a broker restart, after which the worker's
            # subscription may be gone (Mosquitto does not persist shared subscriptions):
            # only an announcement made while we are connected proves the worker listens.
            return
        with self._state_lock:
            if online:
                self._ingest_online.add(worker)
            else:
                self._ingest_online.discard(worker)
        self._on_change()

    def _confirmed(self, payload: bytes | bytearray) -> None:
        try:
            stored = StoredMessages.model_validate_json(payload)
        except ValidationError:
            logger.warning("gateway %s: ignoring a malformed confirmation", self.gateway_id)
            return
        if stored.gateway == self.gateway_id:
            self._on_stored(stored.seqs)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        was_connected = self._connected
        refused, self._refused = self._refused, None
        with self._state_lock:
            self._connected = self._subscribed = False
            self._ingest_online.clear()
        self._on_lost()
        self._on_change()
        if not self._link_up or self._stopping:
            if was_connected:
                log = logger.debug if self._stopping else logger.info
                log("gateway %s disconnected: %s", self.gateway_id, reason)
            return
        why = refused or f"disconnected ({reason})"
        if not was_connected and refused is None:  # TCP connected, and no CONNACK came
            why = (f"no MQTT answer from {self.address.host}:{self.address.port} ({reason}):"
                   " check that this port is the broker's MQTT listener, and that mqtts://"
                   " is used for a TLS one and mqtt:// for a plain one")
        elif was_connected:
            lasted = time.monotonic() - self._connected_at
            if lasted >= self.STABLE_CONNECTION_S:
                self._failures = 0
            elif refused is None:
                why += (f" {lasted:.1f} s after the broker accepted the connection; if this"
                        f" repeats, another client may be connected with client id"
                        f" {self.gateway_id!r}, or the broker's ACL refuses one of its topics"
                        " (with mqtt_protocol \"5\" the broker names it)")
        self._retry_later(why, reported=refused is not None)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        """A PUBACK; one refusing the message (MQTT 5 only) is no acknowledgement: the
        message stays in the outbox, and the connection is closed (as Mosquitto does anyway)
        so that publishing resumes from the outbox head after a backoff."""
        if not reason.is_failure:
            self._on_ack(mid)
            return
        sent = client._out_messages.get(mid)  # paho drops the message after this call
        why = f"the broker refused a message on {sent.topic if sent else 'a topic'} ({reason})"
        if reason.value == NOT_AUTHORIZED:
            user = self.address.username or "anonymous"
            why += (f": check that the broker's ACL lets user {user!r} publish there"
                    " (topic_prefix, gateway_id, instrument ids)")
        self._refuse(why)
        self._cut()


def _drop_unacknowledged(client: mqtt.Client) -> None:
    """Forget the messages paho would resend by itself right after the next CONNACK.

    That resend comes before we know an ingest worker listens again (after a broker restart its
    shared subscription may be gone), so it may reach no one, and it would run ahead of the
    agent's window, out of seq order. It would lose nothing (only the platform's confirmations
    delete from the outbox), but it is wasted: the agent republishes every message still in
    the outbox, in seq order, once publishing is allowed. paho offers no public call for this.
    """
    with client._out_message_mutex:
        client._out_messages.clear()
        client._inflight_messages = 0
