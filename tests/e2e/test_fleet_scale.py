"""The simulator runs 3,000 instruments (3,000 real gateway agents) in one process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device_sim.registry import register_fleet
from device_sim.runner import Simulation, SimulationSpec
from tests.e2e.helpers import count, ingest_thread, wait_until


@pytest.mark.slow
def test_three_thousand_instruments_in_one_process(
    tmp_path: Path, database_url: str, mqtt_url: str, topic_prefix: str
) -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    simulation = Simulation(
        SimulationSpec(instruments=3000, days=1 / 24, start=start, id_prefix=f"{topic_prefix}-"),
        mqtt_url=mqtt_url,
        topic_prefix=topic_prefix,
        state_dir=tmp_path / "outbox",
    )
    register_fleet(database_url, simulation.fleet)
    with ingest_thread(database_url=database_url, mqtt_url=mqtt_url, topic_prefix=topic_prefix):
        result = simulation.run(drain_timeout=600)
        assert result.drained and result.dropped == 0
        wait_until(
            lambda: count(database_url, "SELECT count(*) FROM ingested_message") >= result.messages,
            300,
            "every message committed",
        )
    samples = count(database_url, "SELECT count(*) FROM state_sample")
    assert samples == 3000 * (simulation.ticks + 1)
    print(
        f"3000 instruments, {simulation.ticks} ticks: {result.messages} messages, "
        f"{result.wall_s:.1f} s"
    )
