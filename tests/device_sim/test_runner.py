"""The end of a run: waiting for the outboxes to empty shows them falling, a stop cuts it short,
and what is left stays for a later run on the same state directory, which sends it."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from device_sim import schedule
from device_sim.runner import Simulation, SimulationSpec
from gateway.outbox import Outbox
from gateway.publisher import MqttLink
from instrushare.protocol import Topics
from tests.gateway.helpers import IngestStandIn, Recorder
from tests.services import Mosquitto

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


def test_a_paced_run_sends_its_first_tick_live(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    """As a gateway's first poll, so that the live status shows each instrument at once: data
    created before an ingest worker is known to listen would be historical."""
    ingest = IngestStandIn(mqtt_url, topic_prefix, "w1", 0.2)
    recorder = Recorder(mqtt_url, f"{topic_prefix}/gw/#")
    try:
        result = Simulation(replace(SPEC, speed=600.0), mqtt_url=mqtt_url,
                            topic_prefix=topic_prefix, state_dir=tmp_path / "outbox").run(
            drain_timeout=60)
        firsts: dict[str, tuple[int, bool]] = {}
        for message in recorder.data():
            firsts.setdefault(message.gateway, (message.seq, message.historical))
    finally:
        ingest.stop("offline")
        recorder.close()
    assert result.drained
    assert list(firsts.values()) == [(0, False)] * SPEC.instruments


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


def test_a_fleet_stops_in_about_the_time_of_one_gateway_when_the_broker_stops_answering(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto], topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broker that still holds the connections but answers nothing (a stopped process): each
    gateway waits STOP_TIMEOUT_S for it to take its offline state. The fleet's gateways wait
    at once, not one after another (20 x 2 s here), and nothing they hold is lost."""
    monkeypatch.setattr(MqttLink, "STOP_TIMEOUT_S", 2.0)
    # every gateway connected when the broker stops: no simulated network outage, which the
    # days (drawn per instrument id, so anew in each run here) would now and then begin at
    # the first tick
    monkeypatch.setattr(schedule, "OUTAGE_PER_DAY", 0.0)
    broker = mosquitto_factory()
    assert broker.proc is not None
    state_dir = tmp_path / "outbox"
    spec = SimulationSpec(instruments=20, days=0.01, seed=3, id_prefix=topic_prefix)
    simulation = Simulation(spec, mqtt_url=broker.url, topic_prefix=topic_prefix,
                            state_dir=state_dir)
    paused_at: list[float] = []

    def pause_the_broker_once_connected(tick: int, _ticks: int) -> None:
        if tick < 1 or paused_at:  # the first tick's messages are in the outboxes by now
            return
        deadline = time.monotonic() + 30
        while not all(agent.link.connected for agent in simulation.agents):
            assert time.monotonic() < deadline, "the gateways did not connect"
            time.sleep(0.05)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)
        paused_at.append(time.monotonic())

    try:
        result = simulation.run(on_tick=pause_the_broker_once_connected, drain_timeout=60,
                                should_stop=lambda: bool(paused_at))
        took = time.monotonic() - paused_at[0]
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    assert took < Simulation.STOP_GRACE_S + 3 * MqttLink.STOP_TIMEOUT_S
    assert result.unsent == result.messages > 0  # no ingest online: every message kept
    kept = 0
    for agent in simulation.agents:  # each outbox let go of: another can open it
        with Outbox(agent.config.outbox_path, max_messages=agent.config.outbox_max_messages,
                    max_age_s=agent.config.outbox_max_age_s) as outbox:
            kept += outbox.depth
    assert kept == result.unsent

    # resumed, the broker takes each gateway's offline state, sent before it disconnected
    recorder = Recorder(broker.url, Topics(topic_prefix).all_gateway_states)
    stopped_cleanly = {agent.config.gateway_id: ("offline", True) for agent in simulation.agents}
    try:
        recorder.wait_for(lambda r: {s["gateway"]: (s["status"], s["ts"] is not None)
                                     for s in r.states()} == stopped_cleanly, timeout=10)
    finally:
        recorder.close()
