"""Ingest settings at their bounds work against a real broker."""

from __future__ import annotations

from collections.abc import Callable

from tests.services import Mosquitto

from .conftest import RunningWorker


def test_the_largest_keepalive_and_session_expiry_taken_connect(
    database_url: str, mosquitto_factory: Callable[..., Mosquitto],
    start_worker: Callable[..., RunningWorker],
) -> None:
    """Both fit their MQTT fields, so the worker connects and announces itself (a private
    broker: a session that never expires must not stay behind on a shared one)."""
    broker = mosquitto_factory()
    start_worker(database_url, broker.url, keepalive_s=2**16 - 1, session_expiry_s=2**32 - 1)
