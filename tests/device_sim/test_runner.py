"""The end of a run: waiting for the outboxes to empty shows them falling, a stop cuts it short,
and what is left stays for a later run on the same state directory, which sends it."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from device_sim.runner import Simulation, SimulationSpec
from tests.gateway.helpers import IngestStandIn

SPEC = SimulationSpec(instruments=2, days=0.01, seed=3)


def test_a_stop_while_waiting_for_delivery_ends_the_wait_and_keeps_the_data(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir = tmp_path / "outbox"
    left: list[int] = []
    stopped_at: list[float] = []

    def stop_once_waiting() -> bool:
        if left and not stopped_at:  # told to stop only once the drain has begun
            stopped_at.append(time.monotonic())
        return bool(stopped_at)

    first = Simulation(SPEC, mqtt_url=mqtt_url, topic_prefix=topic_prefix, state_dir=state_dir)
    with caplog.at_level(logging.INFO, "device_sim"):  # no ingest online: nothing goes out
        result = first.run(on_drain=left.append, drain_timeout=120, should_stop=stop_once_waiting)
    assert time.monotonic() - stopped_at[0] < Simulation.STOP_GRACE_S + 2
    assert result.ticks == first.ticks  # every tick played: the stop came while waiting
    assert result.unsent > 0 and not result.drained
    assert left[0] > 0 and sorted(left, reverse=True) == left
    assert "waiting up to 120 s for the platform to take" in caplog.text
    assert (f"{result.unsent} message(s) not delivered (stopped): they stay in the outboxes in"
            f" {state_dir}") in caplog.text

    ingest = IngestStandIn(mqtt_url, topic_prefix, "w1", 0.2)
    try:
        second = Simulation(SPEC, mqtt_url=mqtt_url, topic_prefix=topic_prefix,
                            state_dir=state_dir)
        again = second.run(drain_timeout=60)
    finally:
        ingest.stop("offline")
    assert again.drained
    confirmed = sum(gateway["confirmed"] for gateway in again.per_gateway.values())
    assert confirmed == result.unsent + again.messages  # what the first run kept, sent now


def test_a_run_not_delivered_in_time_says_so_and_why(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    simulation = Simulation(SPEC, mqtt_url=mqtt_url, topic_prefix=topic_prefix,
                            state_dir=tmp_path / "outbox")
    with caplog.at_level(logging.WARNING, "device_sim"):
        result = simulation.run(drain_timeout=1)
    assert result.unsent == result.messages > 0
    assert (f"{result.unsent} message(s) not delivered within 1 s ("
            f"{SPEC.instruments} gateway(s): no ingest worker online)" in caplog.text)
