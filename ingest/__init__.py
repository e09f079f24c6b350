"""Ingest service: MQTT deliveries to PostgreSQL, batched, deduplicated, acked after commit."""

from ._config import IngestConfig
from ._gc import tune_gc
from ._stats import IngestStats
from ._worker import IngestWorker

__all__ = ["IngestConfig", "IngestStats", "IngestWorker", "tune_gc"]
