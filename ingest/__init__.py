"""Ingest service: MQTT deliveries to PostgreSQL, batched, deduplicated, acked after commit."""

from ._config import IngestConfig
from ._stats import IngestStats
from ._tuning import tune_process
from ._worker import IngestWorker

__all__ = ["IngestConfig", "IngestStats", "IngestWorker", "tune_process"]
