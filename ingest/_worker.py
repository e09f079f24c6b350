"""The ingest worker: MQTT deliveries in, batched durable writes, acknowledgements after commit.

Threads: paho's network loop (``BrokerSession``) only queues deliveries (``_deliver``); a
decoding thread validates them into numbered batches; ``writers`` writing threads, each with
its own database connection, take the batches in turn, so decoding and the database's work on
one batch overlap the next. Batches commit in any order but are acknowledged in batch order.
The broker stops sending once ``receive_maximum`` deliveries are unacknowledged, which bounds
the queues and so memory.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from datetime import timedelta

from prometheus_client import CollectorRegistry

from ._config import IngestConfig
from ._decode import Decoded, Decoder, Raw
from ._registry import InstrumentRegistry
from ._session import BrokerSession
from ._stats import IngestStats, Metrics
from ._store import BatchStore, WriteResult, write_isolating
from ._turns import Turns
from .errors import BrokerRefusedError, RetryableStoreError

logger = logging.getLogger("ingest")


class IngestWorker:
    """Consumes the shared subscription of one share group and stores what it receives."""

    INITIAL_BACKOFF_S = 0.5
    MAX_BACKOFF_S = 30.0
    BACKOFF_JITTER = 0.25
    """Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]."""
    STOP_GRACE_S = 10.0
    """How long a stopping worker keeps retrying its last batch before leaving it unacked."""
    IDLE_POLL_S = 0.05
    FILL_POLL_S = 0.002
    LOCK_TURN_WAIT_S = 1.0
    DRAINED_AFTER_S = 3.0
    """A retiring worker stops once everything received is stored and nothing has arrived for
    this long after it left the share group (the broker sends queued messages at once)."""

    def __init__(
        self, config: IngestConfig, *, registry: CollectorRegistry | None = None,
        retire: bool = False,
    ) -> None:
        """``retire``: take the worker out of service (``BrokerSession``): store what is
        queued for it, leave the share group, then ``run`` returns by itself."""
        self._config = config
        self._retire = retire
        self._settled = 0
        """Deliveries whose batch was acknowledged (or dead-lettered and acknowledged)."""
        self._last_delivery = 0.0
        self._inbox: deque[Raw] = deque()
        self._wake = threading.Event()
        self._idle = False
        self._stats = IngestStats()
        self._received = 0
        self._metrics = Metrics(
            registry=registry if registry is not None else CollectorRegistry(),
            queue_depth=lambda: len(self._inbox),
            unacked=lambda: self._received - self._settled,
        )
        self._stores = [
            BatchStore(conninfo=config.database_url,
                       session_max_gap=timedelta(seconds=config.session_max_gap_s))
            for _ in range(config.writers)
        ]
        self._acks = Turns()
        self._locks = Turns()
        self._gave_up = False
        """Set once a batch is left unacked at stop: every later one stays unacked too."""
        self._grace_ends_at: float | None = None
        self.retired = False
        """Retiring, the queue was stored to its end: only then does the session end."""
        self._retries_lock = threading.Lock()
        self._failed: list[str] = []
        """Threads that died of an unexpected error: ``run`` raises once it has shut down."""
        self._decoder = Decoder(
            prefix=config.topic_prefix,
            registry=InstrumentRegistry(loader=self._stores[0].load_registry),
        )
        self._session = BrokerSession(config, deliver=self._deliver, retire=retire)
        self.online = self._session.online
        """Set once subscribed and announced online (tests wait on it)."""

    @property
    def stats(self) -> IngestStats:
        snapshot = self._stats.copy()
        snapshot.received = self._received
        return snapshot

    # -- deliveries (paho's network thread) ---------------------------------------------

    def _deliver(self, topic: str, payload: bytes | bytearray, mid: int, qos: int) -> None:
        now = self._last_delivery = time.time()
        self._inbox.append((topic, payload, mid, qos, now))
        self._received += 1
        if self._idle:  # the decoding thread waits on the event only when it has no batch
            self._wake.set()

    # -- main loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, then flush, commit, ack, go offline and disconnect.

        Raises, once shut down, BrokerRefusedError if the broker refused the first log-in, and
        RuntimeError if the decoding or a writing thread died of an unexpected error (what it
        held stays unacknowledged, for redelivery)."""
        cfg = self._config
        addr = cfg.mqtt
        logger.info(
            "ingest worker %s starting: broker %s:%d (MQTT %s), share group %s, prefix %s",
            cfg.worker_id, addr.host, addr.port, cfg.mqtt_protocol,
            cfg.share_group if cfg.shared_subscription else "(none)", cfg.topic_prefix,
        )
        self._session.start(stop)
        batches: queue.Queue[_Job | None] = queue.Queue(maxsize=1)
        decoder = threading.Thread(target=self._decode_loop, args=(stop, batches),
                                   name=f"ingest-decode-{cfg.worker_id}", daemon=True)
        decoder.start()
        announcer = threading.Thread(target=self._session.announce_loop, args=(stop,),
                                     name=f"ingest-announce-{cfg.worker_id}", daemon=True)
        announcer.start()
        writers = [
            threading.Thread(target=self._write_loop, args=(stop, batches, store),
                             name=f"ingest-write{k}-{cfg.worker_id}", daemon=True)
            for k, store in enumerate(self._stores)
        ]
        for writer in writers:
            writer.start()
        if self._retire:
            threading.Thread(target=self._stop_when_drained, args=(stop,),
                             name=f"ingest-retire-{cfg.worker_id}", daemon=True).start()
        try:
            for writer in writers:
                writer.join()
        finally:
            stop.set()
            decoder.join(self.STOP_GRACE_S)
            self._session.wake()  # the announcer sees ``stop``
            announcer.join(self.STOP_GRACE_S)  # its last "online" must precede our "offline"
            self._shutdown()
        if self._session.refusal is not None:
            raise BrokerRefusedError(self._session.refusal)
        if self._failed:
            raise RuntimeError(f"ingest worker stopped: {', '.join(self._failed)} failed")

    @property
    def found_session(self) -> bool | None:
        """Whether the broker held this worker's session (see ``BrokerSession``)."""
        return self._session.found_session

    def _stop_when_drained(self, stop: threading.Event) -> None:
        """Retiring: stop once out of the share group, everything received is stored, and
        nothing has arrived for ``DRAINED_AFTER_S``, counted from leaving at the earliest."""
        while not self._session.left.wait(self.IDLE_POLL_S * 4):
            if stop.is_set():
                return
        if self._session.found_session is False:
            self.retired = True  # nothing was queued; the session this connection made ends
            stop.set()
            return
        left_at = time.time()
        while not stop.is_set():
            quiet_since = max(self._last_delivery, left_at)
            if (self._settled == self._received
                    and time.time() - quiet_since >= self.DRAINED_AFTER_S):
                logger.info("retired: the %d messages queued for this worker are stored",
                            self._settled)
                self.retired = True
                stop.set()
                return
            stop.wait(self.IDLE_POLL_S * 4)

    # -- decoding thread --------------------------------------------------------------------

    def _decode_loop(self, stop: threading.Event, out: queue.Queue[_Job | None]) -> None:
        """Decode deliveries into numbered batches until stopped and the inbox is drained."""
        numbered = 0
        try:
            while True:
                batch = self._next_batch(stop)
                if batch:
                    out.put((numbered, batch))
                    numbered += 1
                elif stop.is_set() and not self._inbox:
                    return
        except Exception:
            self._fail("decoding", stop)
        finally:
            out.put(None)

    def _next_batch(self, stop: threading.Event) -> list[Decoded]:
        """Decode until the batch holds ``batch_max_messages`` messages or ``batch_max_samples``
        samples and events, or nothing waits and its oldest delivery has waited
        ``batch_max_delay_s``.

        While a batch fills, the thread naps ``FILL_POLL_S`` between drains instead of being
        woken per delivery (an ``Event.set`` per message costs the network thread dearly);
        with nothing to do it sleeps on ``_wake``, which the next delivery sets.
        """
        cfg = self._config
        max_messages, max_weight = cfg.batch_max_messages, cfg.batch_max_samples
        delay = cfg.batch_max_delay_s
        inbox, wake, now, decode = self._inbox, self._wake, time.time, self._decode
        items: list[Decoded] = []
        weight = 0
        deadline: float | None = None
        while True:
            while inbox:  # while deliveries wait, the batch grows: the delay is for light load
                raw = inbox.popleft()
                if deadline is None:
                    deadline = raw[4] + delay
                item = decode(raw, stop)
                if item is None:
                    continue
                items.append(item)
                weight += len(item.samples) + len(item.events)
                if len(items) >= max_messages or weight >= max_weight:
                    return items
            if stop.is_set():
                return items
            if deadline is not None:
                left = deadline - now()
                if left <= 0:
                    return items
                time.sleep(min(left, self.FILL_POLL_S))
                continue
            wake.clear()
            self._idle = True
            if not inbox:
                wake.wait(self.IDLE_POLL_S)  # polls ``stop`` too
            self._idle = False

    def _decode(self, raw: Raw, stop: threading.Event) -> Decoded | None:
        """Decode one delivery; retry while the registry cannot be read (None: give up, unacked)."""
        delay = self.INITIAL_BACKOFF_S
        while True:
            try:
                return self._decoder.decode(raw)
            except RetryableStoreError as exc:
                self._count_retry(exc)
                pause = self._retry_pause(delay, stop)
                if pause is None:
                    return None
                logger.log(_level(exc), "cannot read the instrument registry%s, retry in %.2fs: %s",
                           _code(exc), pause, exc)
                time.sleep(pause)
                delay = min(delay * 2, self.MAX_BACKOFF_S)

    def _retry_pause(self, delay: float, stop: threading.Event) -> float | None:
        """The wait before the next database attempt, or None once a stopping worker gives up:
        ``STOP_GRACE_S`` after the first failure at stop, for every delivery and batch alike
        (a grace each would add up over a queue), no wait reaching past it."""
        pause = self._jittered(delay)
        if not stop.is_set():
            return pause
        with self._retries_lock:
            if self._grace_ends_at is None:
                self._grace_ends_at = time.monotonic() + self.STOP_GRACE_S
            left = self._grace_ends_at - time.monotonic()
        return min(pause, left) if left > 0 else None

    def _count_retry(self, exc: RetryableStoreError) -> None:
        with self._retries_lock:  # the decoding and every writing thread retry
            self._stats.db_retries += 1
        self._metrics.db_retries.labels(exc.sqlstate or "none").inc()

    def _jittered(self, delay: float) -> float:
        return min(delay, self.MAX_BACKOFF_S) * random.uniform(
            1 - self.BACKOFF_JITTER, 1 + self.BACKOFF_JITTER
        )

    # -- writing threads --------------------------------------------------------------------

    def _write_loop(
        self, stop: threading.Event, batches: queue.Queue[_Job | None], store: BatchStore
    ) -> None:
        """Write batches on ``store`` until the decoder is done; ack each in its turn."""
        try:
            while (job := batches.get()) is not None:
                number, items = job
                result: WriteResult | None = None
                try:
                    if not self._gave_up:
                        result = self._write_retrying(number, items, store, stop)
                finally:  # even on a bug below, so the next batches' turns still come
                    self._locks.finish(number)
                    with self._acks.turn(number):
                        if result is None:
                            self._gave_up = True
                        elif not self._gave_up:
                            try:
                                self._acknowledge(items)
                                self._account(items, result)
                            except BaseException:  # no later batch may be acked before it
                                self._gave_up = True
                                raise
            batches.put(None)  # the decoder's last word, passed on to the next writer
        except Exception:
            self._fail("writing", stop)

    def _fail(self, what: str, stop: threading.Event) -> None:
        logger.exception("%s failed; the worker stops", what)
        self._failed.append(what)
        stop.set()

    def _write_retrying(
        self, number: int, items: list[Decoded], store: BatchStore, stop: threading.Event
    ) -> WriteResult | None:
        """Write batch ``number``, retrying while the database fails; None if given up at stop.

        A part the database cancels (a statement timeout, most likely: batches grow while it
        is slow) is split in halves, written one after the other at once: the same rows again
        would take as long again. Its instruments are locked after the previous batch's write
        ended, or after ``LOCK_TURN_WAIT_S``: the previous writer may be waiting, inside
        PostgreSQL, for a key this batch copied, a wait PostgreSQL cannot see through."""

        def my_turn() -> None:
            self._locks.wait(number, self.LOCK_TURN_WAIT_S)

        parts = [items]
        """What is left to write, the next part last."""
        result = WriteResult()
        delay = self.INITIAL_BACKOFF_S
        while parts:
            part = parts[-1]
            started = time.perf_counter()
            try:
                result += write_isolating(store, part, before_lock=my_turn)
            except RetryableStoreError as exc:
                self._count_retry(exc)
                pause = self._retry_pause(delay, stop)
                if pause is None:
                    logger.warning(
                        "stopping with %d messages unacked (database%s: %s); the broker"
                        " redelivers them to this session", len(items), _code(exc), exc,
                    )
                    return None
                if exc.timed_out and len(part) > 1:
                    half = len(part) // 2
                    parts[-1:] = [part[half:], part[:half]]
                    logger.warning(
                        "database cancelled the write of %d messages%s, writing them in halves"
                        " (if it recurs, lower INSTRUSHARE_BATCH_MAX_SAMPLES): %s",
                        len(part), _code(exc), exc,
                    )
                    continue
                logger.log(
                    _level(exc),
                    "database write failed%s, keeping %d messages unacked, retry in %.2fs: %s",
                    _code(exc), len(items), pause, exc,
                )
                if stop.is_set():
                    time.sleep(pause)
                else:
                    stop.wait(pause)
                delay = min(delay * 2, self.MAX_BACKOFF_S)
                continue
            parts.pop()
            self._metrics.write_latency.observe(time.perf_counter() - started)
        return result

    def _acknowledge(self, items: list[Decoded]) -> None:
        self._session.confirm_stored(it.stored for it in items if it.stored is not None)
        self._stats.acked += self._session.acknowledge((it.mid, it.qos) for it in items)
        self._settled += len(items)

    def _account(self, items: list[Decoded], result: WriteResult) -> None:
        stats, metrics = self._stats, self._metrics
        stats.batches += 1
        stats.written += result.fresh
        stats.duplicates += result.duplicates
        metrics.received.inc(len(items))
        metrics.written.inc(result.fresh)
        metrics.duplicates.inc(result.duplicates)
        metrics.batch_size.observe(len(items))
        for reason, n in result.dead.items():
            stats.dead_lettered[reason] = stats.dead_lettered.get(reason, 0) + n
            metrics.dead_lettered.labels(reason).inc(n)
        observe = metrics.lag.observe
        for it in items:
            if it.lag_s is not None:
                observe(it.lag_s)

    def _shutdown(self) -> None:
        self._session.close(retired=self.retired and not self._gave_up and not self._failed)
        for store in self._stores:
            store.close()
        stats = self.stats
        logger.info(
            "ingest worker %s stopped: %d received (gateway status included), %d data messages"
            " written, %d duplicates, %d dead-lettered, %d acked", self._config.worker_id,
            stats.received, stats.written, stats.duplicates, sum(stats.dead_lettered.values()),
            stats.acked,
        )


_Job = tuple[int, list[Decoded]]
"""A batch and its number, which orders the acknowledgements."""


def _level(exc: RetryableStoreError) -> int:
    """ERROR for a fault someone must mend (it is retried all the same), else WARNING."""
    return logging.ERROR if exc.lasting else logging.WARNING


def _code(exc: RetryableStoreError) -> str:
    return f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
