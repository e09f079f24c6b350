"""Counters a worker keeps (``IngestWorker.stats``) and the Prometheus metrics mirroring them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(slots=True)
class IngestStats:
    """A snapshot of what one worker has done since it started."""

    received: int = 0
    """Messages delivered by the broker (redeliveries included), counted on arrival; the
    ``messages_received`` metric counts them only once their batch has committed."""
    written: int = 0
    """Data messages newly stored (committed)."""
    duplicates: int = 0
    """Data messages whose (gateway, seq, created_at) was already stored or repeated within a
    batch."""
    dead_lettered: dict[str, int] = field(default_factory=dict)
    """Dead-letter rows committed, by reason."""
    batches: int = 0
    db_retries: int = 0
    acked: int = 0

    def copy(self) -> IngestStats:
        return IngestStats(
            received=self.received,
            written=self.written,
            duplicates=self.duplicates,
            dead_lettered=dict(self.dead_lettered),
            batches=self.batches,
            db_retries=self.db_retries,
            acked=self.acked,
        )


_SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class Metrics:
    """Prometheus metrics on an injected registry (a fresh one per worker in tests)."""

    def __init__(
        self, *, registry: CollectorRegistry, queue_depth: Callable[[], float],
        unacked: Callable[[], float],
    ) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"instrushare_ingest_{name}", doc, labels, registry=registry)

        self.received = counter(
            "messages_received",
            "Deliveries handled in a committed batch (stored, duplicate or dead-lettered),"
            " counted after the commit; a redelivery counts again.",
        )
        self.written = counter("messages_written", "Data messages newly committed.")
        self.duplicates = counter("messages_duplicate", "Data messages already stored.")
        self.dead_lettered = counter(
            "messages_dead_lettered", "Dead letters committed, each arrival of a refused"
            " message counted (one received again is one row, counted again).", ("reason",)
        )
        self.db_retries = counter(
            "db_retries",
            "Database attempts (batch writes, registry reads) that failed and were retried, by"
            " the database's SQLSTATE (none: the connection failed).",
            ("sqlstate",),
        )
        self.db_retries.labels("none")  # exported as 0 from the start, as before any failure
        self.batch_size = Histogram(
            "instrushare_ingest_batch_size",
            "Messages per committed batch.",
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self.write_latency = Histogram(
            "instrushare_ingest_write_seconds",
            "Time to write and commit one batch (or each part of one the database timed out"
            " on).",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.lag = Histogram(
            "instrushare_ingest_lag_seconds",
            "Per data message in a committed batch (new or duplicate, not dead-lettered):"
            " the worker's receive time minus the message's created_at (gateway clock).",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "instrushare_ingest_queue_depth",
            "Messages received and not yet taken into a batch.",
            registry=registry,
        )
        self.queue_depth.set_function(queue_depth)
        self.unacked = Gauge(
            "instrushare_ingest_messages_unacked",
            "Deliveries received and not yet acknowledged: waiting for a batch, in one, or"
            " being written; what a stalled worker holds, however few.",
            registry=registry,
        )
        self.unacked.set_function(unacked)
