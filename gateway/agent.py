"""The gateway agent: polls probes, detects states, stores messages durably, publishes them.

Threads: the caller polls (``poll``/``run_forever``); the network thread (one NetworkLoop,
shared by every agent in the process unless one is passed in) reports PUBACKs and connection
changes. Work triggered by paho (deleting acknowledged messages, feeding the
publish window) runs in whichever thread gets the agent lock without waiting: paho holds its
own message lock while calling back, so the network thread must never block on ours. Probes
that talk to an instrument are read in threads of their own (see gateway.reader).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.batch import MessageBatch
from gateway.config import GatewayConfig, InstrumentConfig
from gateway.delivery_log import DeliveryLog
from gateway.detector import StateDetector
from gateway.errors import OutboxError, ProbeError
from gateway.netloop import NetworkLoop
from gateway.outbox import Builder, Outbox
from gateway.probes import (
    Closeable,
    ModbusPowerProbe,
    Probe,
    ProcessProbe,
    Reading,
    SimulatedProbe,
)
from gateway.publisher import MqttLink
from gateway.reader import ProbeReader
from gateway.writer import OutboxWriter
from instrushare.protocol import Topics

logger = logging.getLogger("gateway")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AgentStats:
    """Counters of one agent. ``enqueued``/``published``/``acked`` (by the broker)/
    ``confirmed`` (stored by the platform, so deleted from the outbox) count since start; the
    drop counters are persisted in the outbox; ``seq`` is the last sequence number assigned
    (-1 when none yet)."""

    outbox_depth: int
    enqueued: int
    published: int
    acked: int
    confirmed: int
    dropped_full: int
    dropped_age: int
    reconnects: int
    seq: int


def build_probe(instrument: InstrumentConfig) -> Probe:
    cfg = instrument.probe
    if cfg.kind == "simulated":
        return SimulatedProbe()
    if cfg.kind == "process":
        assert cfg.process is not None
        return ProcessProbe(process=cfg.process, busy_cpu_percent=cfg.busy_cpu_percent,
                            users=cfg.users)
    if cfg.kind == "opcua":
        assert cfg.endpoint is not None
        from gateway.opcua_probe import OpcUaProbe  # the OPC UA library: only where configured

        return OpcUaProbe(
            endpoint=cfg.endpoint, state_node=cfg.state_node, states=cfg.states,
            power_node=cfg.power_node, scale=cfg.scale, user_node=cfg.user_node,
            metrics=cfg.metrics, username=cfg.username,
            password=None if cfg.password is None else cfg.password.get_secret_value(),
            security_policy=cfg.security_policy, security_mode=cfg.security_mode,
            certificate=cfg.certificate, private_key=cfg.private_key,
            server_certificate=cfg.server_certificate, timeout_s=cfg.timeout_s,
        )
    assert cfg.host is not None and cfg.address is not None
    return ModbusPowerProbe(
        host=cfg.host, port=cfg.port, unit=cfg.unit, address=cfg.address,
        register=cfg.register_type, word_order=cfg.word_order, scale=cfg.scale,
        timeout_s=cfg.timeout_s,
    )


class GatewayAgent:
    """One gateway: ``start``, ``poll`` at each sample instant (or ``run_forever``), ``stop``."""

    HOLD_QUIET_S = 60.0
    HOLD_REPORT_S = 300.0
    START_WAIT_S = 10.0
    UNSTORED_MAX = 1000
    """Most messages kept in memory while the outbox cannot be written (a full disk): some
    days of one instrument's messages at the default intervals."""
    STORE_RETRY_S = 5.0
    """Least time between two tries to store the messages kept in memory (``flush`` tries at
    once): each try builds and encodes them all."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        probes: Mapping[str, Probe] | None = None,
        clock: Callable[[], datetime] = utc_now,
        network: NetworkLoop | None = None,
    ) -> None:
        ids = [i.id for i in config.instruments]
        if probes is not None and set(probes) != set(ids):
            raise ValueError(f"probes must be given for exactly the instruments {sorted(ids)}")
        self.config = config
        self.clock = clock
        self._probes: dict[str, Probe] = (
            dict(probes)
            if probes is not None
            else {i.id: build_probe(i) for i in config.instruments}
        )
        self._readers = [ProbeReader(self._probes[i], i) for i in ids]
        self._detectors = {i.id: StateDetector(i.detector) for i in config.instruments}
        topics = Topics(config.topic_prefix)
        self._batches = {
            i: MessageBatch(instrument=i, topic=topics.data(config.gateway_id, i)) for i in ids
        }
        self._outbox = Outbox(
            config.outbox_path,
            max_messages=config.outbox_max_messages,
            max_age_s=config.outbox_max_age_s,
        )
        self._writer = OutboxWriter(self._outbox, gateway_id=config.gateway_id,
                                    held_max=self.UNSTORED_MAX, retry_s=self.STORE_RETRY_S,
                                    report_s=self.HOLD_REPORT_S)
        self._link = MqttLink(
            gateway_id=config.gateway_id,
            address=config.mqtt,
            topics=topics,
            instruments=ids,
            require_ingest_online=config.require_ingest_online,
            next_bd_seq=self._next_bd_seq,
            dropped=lambda: self._outbox.dropped_full + self._outbox.dropped_age,
            on_ack=self._on_ack,
            on_stored=self._on_stored,
            on_change=self._service,
            on_lost=self._on_link_lost,
            network=network if network is not None else NetworkLoop.default(),
            protocol=config.mqtt_protocol,
        )
        self._lock = threading.Lock()
        self._acks: deque[int] = deque()
        self._stored: deque[int] = deque()
        self._inflight: dict[int, int] = {}  # paho mid -> seq
        self._unconfirmed: set[int] = set()
        """Seqs the broker acknowledged that the platform has not confirmed stored yet."""
        self._waiting_since: float | None = None
        """Monotonic time of the last confirmation while some are awaited (None: none are)."""
        self._last_fed = -1
        self._sent_upto = -1
        """Highest seq published since start: a confirmation of a later one is not for this
        outbox's message (another gateway under this id, or one this outbox replaced)."""
        self._rewind = False  # set by the network thread when the connection ends
        self._failing: set[str] = set()
        self._started = False
        self._enqueued = self._published = self._acked = self._confirmed = 0
        self._delivery_log = DeliveryLog(
            gateway_id=config.gateway_id, topic_prefix=config.topic_prefix,
            protocol=config.mqtt_protocol, quiet_s=self.HOLD_QUIET_S, every_s=self.HOLD_REPORT_S)

    # -- public API ----------------------------------------------------------------------
    @property
    def probes(self) -> Mapping[str, Probe]:
        return self._probes

    @property
    def link(self) -> MqttLink:
        return self._link

    @property
    def stats(self) -> AgentStats:
        """Read under the lock the counters' writers hold, so that the figures agree (an
        empty outbox with the confirmations counted); then serve what arrived meanwhile."""
        outbox = self._outbox
        with self._lock:
            stats = AgentStats(
                outbox_depth=outbox.depth,
                enqueued=self._enqueued,
                published=self._published,
                acked=self._acked,
                confirmed=self._confirmed,
                dropped_full=outbox.dropped_full,
                dropped_age=outbox.dropped_age,
                reconnects=max(0, self._link.connects - 1),
                seq=outbox.last_seq,
            )
        self._service()
        return stats

    def start(self) -> None:
        """Open the outbox and connect in the background (a broker that is down is fine).

        An agent runs once: a stopped one cannot reconnect, so it is refused here rather
        than left silently offline (a new agent on the same outbox carries on)."""
        if self._link.stopping:
            raise RuntimeError(f"gateway {self.config.gateway_id}: a stopped agent cannot start"
                               " again; make a new one (on the same outbox)")
        self._outbox.open()
        self._inflight.clear()
        self._acks.clear()
        self._last_fed = self._sent_upto = -1
        try:
            self._outbox.expire(now=self.clock().timestamp())
        except OutboxError as exc:  # the file cannot be written (a full disk): run all the same
            self._writer.failed(exc)
        if self._outbox.depth:
            logger.info("gateway %s: %d message(s) in the outbox will be replayed",
                        self.config.gateway_id, self._outbox.depth)
        self._started = True
        self._link.start()

    def poll(self, now: datetime | None = None) -> None:
        """Read every probe once at ``now``; store due messages; feed the publish window.

        A probe that talks to an instrument has until ``sample_interval_s`` to answer (see
        gateway.reader); one that has not is skipped, the others are not held up."""
        self._poll(self.clock() if now is None else now, None)

    def _poll(self, now: datetime, stop: threading.Event | None) -> None:
        """``poll``; ``stop`` set ends the wait for slow probes early."""
        if now.tzinfo is None:
            raise ValueError("poll() needs a timezone-aware datetime")
        cfg = self.config
        for reader in self._readers:
            reader.begin()
        self._await_reads(time.monotonic() + cfg.sample_interval_s, stop)
        builders: list[Builder] = []
        live = self._link.can_publish
        for reader in self._readers:
            reading = self._read(reader)
            if reading is None:
                continue
            instrument_id = reader.instrument
            detected = self._detectors[instrument_id].feed(now, reading)
            batch = self._batches[instrument_id]
            batch.add(now, detected.samples, detected.events)
            if detected.changed or batch.due(
                interval_s=cfg.publish_interval_s, poll_s=cfg.sample_interval_s,
                max_samples=cfg.max_samples_per_message,
            ):
                builders += self._close(batch, now, live)
        self._store(builders, now, retry=False)

    def _await_reads(self, deadline: float, stop: threading.Event | None) -> None:
        """Wait for this poll's reads until ``deadline``, or until ``stop`` is set."""
        for reader in self._readers:
            while True:
                if stop is not None and stop.is_set():
                    return
                left = deadline - time.monotonic()
                if reader.wait(min(0.1, max(0.0, left))) or left <= 0:
                    break

    def flush(self) -> None:
        """Store every pending sample and event now, whatever the age of its message, and try
        again at once to store what the outbox could not take before.

        Readings held back by debounce are decided as the current state first.
        """
        now = self.clock()
        live = self._link.can_publish
        builders: list[Builder] = []
        for instrument_id, batch in self._batches.items():
            batch.add(now, self._detectors[instrument_id].release().samples, [])
            builders += self._close(batch, now, live)
        self._store(builders, now, retry=True)

    def set_link(self, up: bool) -> None:
        """Simulate a network outage (down) and its end (up); data keeps going to the outbox."""
        self._link.set_link(up)

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the platform has confirmed every message, those kept in memory while the
        outbox could not be written included (stored meanwhile); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self._store([], self.clock(), retry=False)
            if self._outbox.depth == 0 and not self._writer.held:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def begin_stop(self) -> None:
        """Flush and publish the offline state, without waiting for the broker to take it:
        ``stop`` waits. Many agents begun first and then stopped wait for their brokers at
        once, so they stop in about the time one takes, not in the sum of their times."""
        if self._started and not self._link.stopping:
            self.flush()
            self._link.begin_stop()

    def stop(self) -> None:
        """``begin_stop`` (if not done yet), disconnect and close the outbox and the probes
        (but one still reading: it may hang in its close too)."""
        if not self._started:
            return
        self.begin_stop()
        self._link.stop()
        with self._lock:
            self._apply_acks()
            self._writer.drop_held()
            self._outbox.close()
            self._started = False
        gateway = self.config.gateway_id
        for reader in self._readers:
            if reader.busy:
                logger.warning("gateway %s: instrument %s still reading: its probe is left open",
                               gateway, reader.instrument)
            elif isinstance(reader.probe, Closeable):
                reader.probe.close()
        logger.info("gateway %s stopped (%d message(s) left in the outbox)",
                    gateway, self._outbox.depth)

    def await_publishing(self, deadline: float, stopped: Callable[[], bool]) -> None:
        """Wait until messages can go out live, ``deadline`` (``time.monotonic()``) has passed
        or ``stopped()``: what a poll creates before is historical (see ``run_forever``)."""
        while not self._link.can_publish and time.monotonic() < deadline and not stopped():
            time.sleep(0.05)

    def run_forever(self, stop: threading.Event) -> None:
        """Poll every ``sample_interval_s`` (on the wall clock) until ``stop`` is set.

        The first poll waits up to ``START_WAIT_S`` for publishing to open: the state found at
        start is a change, so its message closes at once, and it should go out live, not as
        historical data that leaves the platform's live status as it was."""
        self.await_publishing(time.monotonic() + self.START_WAIT_S, stop.is_set)
        interval = self.config.sample_interval_s
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                self._poll(self.clock(), stop)
            except Exception:
                logger.exception("gateway %s: poll failed", self.config.gateway_id)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (suspend, slow probe): skip missed instants
                next_at = time.monotonic()
                delay = 0
            stop.wait(delay)

    # -- internals -----------------------------------------------------------------------
    def _read(self, reader: ProbeReader) -> Reading | None:
        """The reading of this poll, None if there is none: a failure is logged as a WARNING
        when it begins, and then at DEBUG until the instrument reads again."""
        gateway, instrument_id = self.config.gateway_id, reader.instrument
        try:
            reading = reader.result()
        except ProbeError as exc:
            if instrument_id in self._failing:
                logger.debug("gateway %s: instrument %s still cannot be read: %s",
                             gateway, instrument_id, exc)
            else:
                self._failing.add(instrument_id)
                logger.warning("gateway %s: instrument %s cannot be read: %s",
                               gateway, instrument_id, exc)
            return None
        if instrument_id in self._failing:
            self._failing.discard(instrument_id)
            logger.info("gateway %s: instrument %s readable again", gateway, instrument_id)
        return reading

    def _close(self, batch: MessageBatch, now: datetime, live: bool) -> list[Builder]:
        return batch.close(
            gateway=self.config.gateway_id,
            bd_seq=max(self._link.bd_seq, 0),
            created_at=now,
            historical=not live,
            max_samples=self.config.max_samples_per_message,
        )

    def _store(self, builders: list[Builder], now: datetime, *, retry: bool) -> None:
        """Store new messages (see OutboxWriter.store), then feed the publish window."""
        if builders or self._writer.held:
            with self._lock:
                self._enqueued += self._writer.store(builders, now=now.timestamp(), retry=retry)
        self._service()

    def _next_bd_seq(self) -> int:
        """At least the wall clock in milliseconds (not ``self.clock``, which a simulation
        runs at its own pace): an outbox replaced, counting from 0 again, still numbers its
        sessions above the old one's, so the platform takes its birth at once
        (docs/protocol.md, "Session", rule 1)."""
        floor = time.time_ns() // 1_000_000
        with self._lock:
            try:
                return self._outbox.next_bd_seq(at_least=floor)
            except OutboxError as exc:  # not saved: the next start's floor is still above it
                self._writer.failed(exc)
                return max(self._link.bd_seq + 1, floor)

    def _on_link_lost(self) -> None:
        """Nothing handed to paho is in flight any more: republish from the outbox head."""
        self._rewind = True

    def _on_ack(self, mid: int) -> None:
        self._acks.append(mid)
        self._service()

    def _on_stored(self, seqs: list[int]) -> None:
        self._stored.extend(seqs)
        self._service()

    def _service(self) -> None:
        """Apply PUBACKs and confirmations and refill the window, unless another thread is
        doing it right now.

        Whoever holds the lock re-checks after releasing it, so no acknowledgement waits for
        the next event.
        """
        while self._lock.acquire(blocking=False):
            try:
                if not self._started:
                    return
                self._apply_acks()
                if self._confirmations_stalled():
                    logger.warning(
                        "gateway %s: %d published message(s) unconfirmed for %.0f s; "
                        "publishing again from the outbox head%s", self.config.gateway_id,
                        len(self._unconfirmed), self.config.confirm_timeout_s,
                        self._delivery_log.unconfirmed_hint())
                    self._rewind = True
                if self._rewind:  # everything in the outbox goes out again, in seq order
                    self._rewind = False
                    self._inflight.clear()
                    self._unconfirmed.clear()
                    self._waiting_since = None
                    self._last_fed = -1
                self._feed()
                self._delivery_log.hold(self._link, self._outbox.depth)
            finally:
                self._lock.release()
            if not self._acks and not self._stored and not self._rewind:
                return

    def _apply_acks(self) -> None:
        """A PUBACK frees a place in the window; only the platform's confirmation that it
        stored a message deletes it from the outbox (the broker may crash before delivery)."""
        while self._acks:
            seq = self._inflight.pop(self._acks.popleft(), None)
            if seq is not None:
                self._acked += 1
                self._unconfirmed.add(seq)
                if self._waiting_since is None:
                    self._waiting_since = time.monotonic()
        if self._stored or self._writer.undeleted:
            seqs: set[int] = set()
            while self._stored:
                seqs.add(self._stored.popleft())
            unsent = {seq for seq in seqs if seq > self._sent_upto}
            if unsent:  # its resend, once sent, is confirmed again
                logger.debug("gateway %s: ignoring the confirmation of %d message(s) not sent"
                             " since start", self.config.gateway_id, len(unsent))
                seqs -= unsent
            self._confirmed += self._writer.delete(seqs)  # one that fails: at the next event
            self._unconfirmed -= seqs
            self._waiting_since = time.monotonic() if self._unconfirmed else None

    def _confirmations_stalled(self) -> bool:
        """Messages the broker took have waited ``confirm_timeout_s`` without any confirmation:
        the broker lost them (a crash) or the confirmations were lost; resending is safe."""
        return (self._waiting_since is not None and self._link.can_publish
                and time.monotonic() - self._waiting_since > self.config.confirm_timeout_s)

    def _feed(self) -> None:
        room = self.config.inflight_window - len(self._inflight)
        if room <= 0 or self._outbox.last_seq <= self._last_fed or not self._link.can_publish:
            return
        try:
            messages = self._outbox.after(self._last_fed, room)
        except OutboxError as exc:
            self._writer.failed(exc, reading=True)
            return
        for stored in messages:
            mid = self._link.publish(stored.topic, stored.payload)
            if mid is None:
                return
            self._inflight[mid] = stored.seq
            self._last_fed = stored.seq
            self._sent_upto = max(self._sent_upto, stored.seq)
            self._published += 1
