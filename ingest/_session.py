"""The worker's MQTT session: persistent, acknowledged by hand after commit, announced.

It subscribes to the data and gateway-state topics (through the share group when shared),
publishes the worker's retained ``online`` state once subscribed and again periodically and
soon after any gateway state (a birth, for which the gateway waits), and leaves its ``offline``
state (also its will) when closed.

Under MQTT 5 its ``online`` announcements carry a hash of its share group as a user property
(gateways read them too, and the group is a secret), and it listens to the other workers'
(QoS 0, not its own): a worker that takes the prefix's data through another group, or through
no group, receives every message as well, so each message is written twice (the second time
as a duplicate). That is logged once per other group.

A retiring session (a worker taken out of service) instead unsubscribes: Mosquitto goes on
handing a share of the group's messages to a persistent session while its client is away, and
drops them once its queue is full, so a worker that is simply not started again would lose
data. The messages already queued still arrive; once they are stored the session clears the
worker's retained state and ends.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from instrushare.protocol import MAX_STORED_SEQS, IngestState, StoredMessages, Topics, dumps
from instrushare.settings import LOGIN_REFUSED, connect_refusal

from ._config import IngestConfig
from ._mqtt import LeanClient

logger = logging.getLogger("ingest")

Deliver = Callable[[str, bytes | bytearray, int, int], None]
"""Called on paho's network thread with (topic, payload, mid, qos) of each delivery."""
SHARE_GROUP_PROPERTY = "share_group_hash"
"""User property of a worker's ``online`` announcement: ``share_group_hash`` of its share group,
empty when it takes a plain subscription (every message)."""
_PLAIN = "a plain subscription"
PACKET_ID_BITS = 16
"""A delivery's mid is its MQTT packet id, with the number of its connection above these
bits: an acknowledgement goes out only while the broker's session still knows that id."""


class BrokerSession:
    """One worker's connection to the broker."""

    ANNOUNCE_COALESCE_S = 0.2
    _stop: threading.Event
    """The worker's, given to ``start``: set when the first connection's log-in is refused."""

    def __init__(self, config: IngestConfig, *, deliver: Deliver, retire: bool = False) -> None:
        self._config = config
        self._retire = retire
        self.left = threading.Event()
        """Set once a retiring session's subscriptions are gone: nothing new is routed to it."""
        self._topics = Topics(config.topic_prefix)
        self._state_topic = self._topics.ingest_state(config.worker_id)
        self._group = (share_group_hash(config.topic_prefix, config.share_group)
                       if config.shared_subscription else "")
        self._groups_seen: set[str] = set()
        """Other workers' share groups (hashed) already warned about."""
        self._deliver_on = deliver
        self._state_seen = threading.Event()
        self.online = threading.Event()
        """Set once subscribed and announced online."""
        self.found_session: bool | None = None
        """Whether the broker held a session for this worker when it first connected; None
        until then. Retiring a worker whose session is not there retires nothing."""
        self.refusal: str | None = None
        """Why the broker refused the log-in of the first connection, after which the session
        gave up (``start``); None otherwise."""
        self._reported: str | None = None
        """The connection problem last logged as a WARNING; None once connected."""
        self._ack_lock = threading.Lock()
        self._connection = 0
        self._session_connections: set[int] = set()
        """The connections whose packet ids the broker's session knows: the current one, and
        those before it as long as the session was found present on reconnecting. A new
        session numbers its messages from 1 again and would take an older connection's
        acknowledgement for one of its own, not stored yet."""
        self._connected = False  # acknowledgements wait for the CONNACK's word on the session
        self._client = self._make_client()

    def _make_client(self) -> LeanClient:
        cfg = self._config
        if cfg.mqtt_protocol == "5":
            client = LeanClient(CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
                                protocol=mqtt.MQTTv5, manual_ack=True, deliver=self._deliver)
        else:
            client = LeanClient(CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
                                protocol=mqtt.MQTTv311, clean_session=False, manual_ack=True,
                                deliver=self._deliver)
        cfg.mqtt.configure(client)
        if not self._retire:
            client.will_set(self._state_topic, self._state_payload("offline"), qos=1,
                            retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def start(self, stop: threading.Event) -> None:
        """Connect in the background (a persistent session) and keep reconnecting; but a
        log-in the broker refuses at the first connection sets ``refusal`` and ``stop``: only
        a setting, not a retry, mends that (a later refusal, the broker's accounts changed
        meanwhile, is retried)."""
        self._stop = stop
        cfg = self._config
        addr = cfg.mqtt
        if cfg.mqtt_protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = cfg.session_expiry_s
            props.ReceiveMaximum = cfg.receive_maximum
            self._client.connect_async(addr.host, addr.port, keepalive=cfg.keepalive_s,
                                       clean_start=False, properties=props)
        else:
            self._client.connect_async(addr.host, addr.port, keepalive=cfg.keepalive_s)
        self._client.loop_start()

    def _state_payload(self, status: str) -> bytes:
        return dumps(IngestState(v=1, worker=self._config.worker_id, status=status))  # type: ignore[arg-type]

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any
    ) -> None:
        if reason.is_failure:
            refusal = self._refusal(reason)
            if reason.value in LOGIN_REFUSED and self.found_session is None:
                self.refusal = refusal
                client.disconnect()  # no further attempt
                self._stop.set()
            else:
                self._report(refusal)
            return
        self._reported = None
        logger.info("connected to the broker (session present: %s)", flags.session_present)
        with self._ack_lock:
            if not flags.session_present:
                self._session_connections.clear()
            self._connection += 1
            self._session_connections.add(self._connection)
            self._connected = True
        if self.found_session is None:
            self.found_session = bool(flags.session_present)
        cfg, topics = self._config, self._topics
        share = f"$share/{cfg.share_group}/" if cfg.shared_subscription else ""
        wanted = [f"{share}{topics.all_data}", f"{share}{topics.all_gateway_states}"]
        if self._retire:  # the other workers' states too: nothing is left for this session
            client.unsubscribe([*wanted, topics.all_ingest_states])
        elif cfg.mqtt_protocol == "5":
            client.subscribe([(t, SubscribeOptions(qos=1)) for t in wanted]
                             + [(topics.all_ingest_states, SubscribeOptions(qos=0, noLocal=True))])
        else:
            client.subscribe([(t, 1) for t in wanted])

    def _refusal(self, reason: ReasonCode) -> str:
        addr = self._config.mqtt
        return connect_refusal(reason.value, str(reason),
                               broker=f"the broker at {addr.host}:{addr.port}", setting="MQTT_URL")

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        """paho calls it while handling the OSError that failed the attempt: its cause (a host
        name not found, a connection refused, ...) is ``sys.exception()``."""
        addr = self._config.mqtt
        exc = sys.exception()
        cause = f" ({exc.strerror or exc})" if isinstance(exc, OSError) else ""
        self._report(f"cannot reach the broker at {addr.host}:{addr.port}{cause}")

    def _report(self, problem: str) -> None:
        """Log a connection problem as a WARNING when it starts or changes, as DEBUG while it
        lasts: paho retries every 1 to 30 s."""
        log = logger.debug if problem == self._reported else logger.warning
        log("%s; retrying", problem)
        self._reported = problem

    def _on_subscribe(
        self, client: mqtt.Client, _u: Any, _mid: int, reasons: list[Any], _p: Any
    ) -> None:
        failed = [r for r in reasons[:2] if r.is_failure]  # the data and the gateway states
        if failed:
            logger.error("subscription refused: %s", failed)
            return
        if any(r.is_failure for r in reasons[2:]):  # the other workers' states: only a warning
            logger.warning("cannot read the other ingest workers' states (%s): a worker of"
                           " another share group would go unnoticed", reasons[2])
        self._announce()
        self.online.set()

    def _on_unsubscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, _reasons: Any, _p: Any
    ) -> None:
        logger.info("left the share group; storing the messages queued for this worker")
        self.left.set()

    def _announce(self) -> None:
        """Publish "online" (retained): now that we are subscribed, and then periodically;
        under MQTT 5 with our share group's hash for the other workers (``_peer_state``)."""
        props = None
        if self._config.mqtt_protocol == "5":
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = (SHARE_GROUP_PROPERTY, self._group)
        self._client.publish(self._state_topic, self._state_payload("online"), qos=1, retain=True,
                             properties=props)

    def announce_loop(self, stop: threading.Event) -> None:
        """Re-announce every interval, and soon after any gateway state, until ``stop`` is set
        (``wake`` makes it see that at once): a gateway trusts only announcements made while
        it is connected, so after its birth it need not wait a whole interval."""
        while True:
            woken = self._state_seen.wait(self._config.announce_interval_s)
            if stop.is_set():
                return
            if woken:
                stop.wait(self.ANNOUNCE_COALESCE_S)  # one announcement for a burst of states
                self._state_seen.clear()
            if self.online.is_set() and not stop.is_set() and not self._retire:
                self._announce()

    def wake(self) -> None:
        """Wake ``announce_loop`` at once (to see that it must stop)."""
        self._state_seen.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any
    ) -> None:
        self.online.clear()
        with self._ack_lock:
            was_connected, self._connected = self._connected, False
        if reason.is_failure and was_connected:
            logger.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        """Deliveries paho decodes itself (with MQTT 5 properties, say): same as the rest,
        but for other workers' announcements, which carry their share group's hash."""
        if mqtt.topic_matches_sub(self._topics.all_ingest_states, msg.topic):
            self._peer_state(msg)
        else:
            self._deliver(msg.topic, msg.payload, msg.mid, msg.qos)

    def _peer_state(self, msg: mqtt.MQTTMessage) -> None:
        """Warn, once per group, of a worker that receives this prefix's data besides ours.

        Only announcements made now count: a retained one may be a worker's that is gone."""
        groups = [value for name, value in getattr(msg.properties, "UserProperty", ())
                  if name == SHARE_GROUP_PROPERTY]
        if msg.retain or not groups or groups[0] in self._groups_seen:
            return
        theirs = groups[0]
        if theirs == self._group and theirs:
            return
        try:
            state = IngestState.model_validate_json(msg.payload)
        except ValidationError:
            return
        if state.status != "online":
            return
        self._groups_seen.add(theirs)
        cfg = self._config
        logger.warning(
            "ingest worker %s takes the data under prefix %s through %s, this worker (%s)"
            " through %s: each receives every message, so all data is written twice (the"
            " copies are ignored as duplicates, the work is not); give every worker of one"
            " prefix the same INSTRUSHARE_SHARE_GROUP", state.worker, cfg.topic_prefix,
            f"another share group (hash {theirs})" if theirs else _PLAIN, cfg.worker_id,
            f"share group {cfg.share_group!r} (hash {self._group})" if self._group else _PLAIN)

    def _deliver(self, topic: str, payload: bytes | bytearray, mid: int, qos: int) -> None:
        if topic.endswith("/state"):
            if mqtt.topic_matches_sub(self._topics.all_ingest_states, topic):
                return  # a worker's state without its share group (MQTT 3.1.1): nothing to say
            # Births need the answer; wills and offline states get it too: telling them apart
            # would parse payloads on the network thread, and a birth the ingest refuses
            # (its gateway waits all the same) would go unanswered.
            self._state_seen.set()
        self._deliver_on(topic, payload, mid | self._connection << PACKET_ID_BITS, qos)

    def confirm_stored(self, messages: Iterable[tuple[str, int]]) -> None:
        """Tell each gateway which of its data messages (gateway, seq) are committed for good,
        before their PUBACKs: a worker that dies in between leaves them unacknowledged, so
        they come back and are confirmed again."""
        by_gateway: dict[str, set[int]] = defaultdict(set)
        for gateway, seq in messages:
            by_gateway[gateway].add(seq)
        for gateway, seqs in by_gateway.items():
            ordered = sorted(seqs)
            for k in range(0, len(ordered), MAX_STORED_SEQS):
                payload = dumps(StoredMessages(v=1, gateway=gateway,
                                               seqs=ordered[k:k + MAX_STORED_SEQS]))
                self._client.publish(self._topics.stored(gateway), payload, qos=1)

    def acknowledge(self, deliveries: Iterable[tuple[int, int]]) -> int:
        """Acknowledge (mid, qos) deliveries, now committed; return how many were settled.

        Those whose session is gone, or that come while disconnected, are not sent: the broker
        either has forgotten them or, its session kept, redelivers them (stored already: acked
        then as duplicates)."""
        pending = [(mid, qos) for mid, qos in deliveries if qos]
        packet_id = (1 << PACKET_ID_BITS) - 1
        with self._ack_lock:
            known = self._session_connections if self._connected else set()
            live = [(mid & packet_id, qos) for mid, qos in pending
                    if mid >> PACKET_ID_BITS in known]
            self._client.ack_all([mid for mid, qos in live if qos == 1])
            for mid, qos in live:
                if qos > 1:  # never subscribed for, but acked correctly all the same
                    self._client.ack(mid, qos)
        if len(live) < len(pending):
            logger.info("%d acknowledgement(s) not sent: the connection they came on has gone"
                        " (their messages are stored)", len(pending) - len(live))
        return len(pending)

    def close(self, *, retired: bool = False) -> None:
        """Publish the offline state and disconnect; a worker ``retired`` (its queue stored)
        has its state cleared instead (an empty retained message) and its session ended
        (MQTT 5; under 3.1.1 it stays, subscribed to nothing, until the broker expires it).
        A retire stopped early keeps the session and what is queued in it. A session that
        never connected has nothing to say."""
        retiring = self._retire and retired
        if self.found_session is not None:
            if self._retire and not retired:
                logger.warning("retiring stopped before everything queued for this worker was"
                               " stored: its session stays; run the retire again to finish")
            state = b"" if retiring else self._state_payload("offline")
            info = self._client.publish(self._state_topic, state, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=5)
            except (RuntimeError, ValueError) as exc:
                logger.warning("could not publish the worker's state: %s", exc)
        if retiring and self._config.mqtt_protocol == "5":
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
            self._client.disconnect(properties=props)
        else:
            self._client.disconnect()
        self._client.loop_stop()
        self.online.clear()


def share_group_hash(prefix: str, group: str) -> str:
    """Tells share groups apart without revealing them (gateways read the announcements, and a
    gateway account that knows the group can take a share of all data, docs/deploy.md)."""
    return hashlib.sha256(f"{prefix}/{group}".encode()).hexdigest()[:16]
