"""Drive one real gateway agent per simulated instrument through its timeline.

There is no second publishing path: every reading goes through ``gateway.GatewayAgent`` (detector,
outbox, MQTT), exactly as on an edge box, only with a simulated probe and a simulated clock.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from device_sim.bookings import NO_SHOW_PER_DAY, SimBooking, plan_bookings
from device_sim.certifications import SimCertification, plan_certifications
from device_sim.fleet import Fleet, Profile, build_fleet
from device_sim.schedule import FAULT_PER_DAY, LOCAL_TZ, Segment, Timeline, plan_timelines
from device_sim.truth import ground_truth
from gateway import (
    DetectorConfig,
    GatewayAgent,
    GatewayConfig,
    InstrumentConfig,
    ProbeConfig,
    Reading,
    SimulatedProbe,
)
from instrushare.protocol import MAX_SAMPLE_INTERVAL_S, State

logger = logging.getLogger("device_sim")


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationSpec:
    """What to simulate. ``speed`` is simulated seconds per real second; None runs flat out."""

    instruments: int = 50
    days: float = 1.0
    seed: int = 1
    tick_s: int = 60
    publish_interval_s: int = 300
    start: datetime | None = None
    speed: float | None = None
    id_prefix: str = ""
    no_show_rate: float = NO_SHOW_PER_DAY
    """Chance that an instrument has a booking nobody turns up to on a simulated day."""
    fault_rate: float = FAULT_PER_DAY
    """Chance that one of an instrument's sessions on a simulated day is a fault instead."""
    open_ends: bool = False
    """Keep what is in progress at the start and the end instead of beginning and ending at
    rest: runs of one seed back to back (simulated past days, then live) read as one. The
    ground truth's sessions at either end are then cut by the run's bounds."""
    networked_on: date | None = None
    """The day the whole fleet went on the platform (its registry's acceptance dates lie the
    drawn delay before it); None draws each instrument's dates years back."""

    def __post_init__(self) -> None:
        if self.instruments < 1:
            raise ValueError("instruments must be at least 1")
        if self.days <= 0:
            raise ValueError("days must be positive")
        if not 1 <= self.tick_s <= MAX_SAMPLE_INTERVAL_S:
            raise ValueError(f"tick_s must be between 1 and {MAX_SAMPLE_INTERVAL_S} seconds")
        if self.speed is not None and self.speed <= 0:
            raise ValueError("speed must be positive (or None for as fast as possible)")
        for name in ("no_show_rate", "fault_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")

    def resolved_start(self, now: datetime) -> datetime:
        """Default start: local midnight ``days`` before today, so no timestamp is in the future."""
        if self.start is not None:
            return self.start.astimezone(UTC)
        if self.speed == 1:
            return now.replace(second=0, microsecond=0)
        today = now.astimezone(LOCAL_TZ).date()
        first = today - timedelta(days=max(1, round(self.days + 0.4999)))
        return datetime.combine(first, datetime.min.time(), LOCAL_TZ).astimezone(UTC)


@dataclass(slots=True)
class SimulationResult:
    ticks: int
    messages: int
    dropped: int
    drained: bool
    wall_s: float
    per_gateway: dict[str, dict[str, int]] = field(default_factory=dict)


def reading_for(segment: Segment, profile: Profile, rng: random.Random) -> Reading:
    """What the power meter and the instrument software report in this state."""
    if segment.state is State.OFF:
        return Reading(power_w=rng.uniform(0, 2))
    if segment.state is State.RUNNING:
        return Reading(
            power_w=profile.run_w * rng.uniform(0.9, 1.1),
            user=segment.user,
            metrics={"chamber_temp_c": round(rng.gauss(24.0, 0.3), 2)},
        )
    idle_power = profile.idle_w * rng.uniform(0.95, 1.05)
    if segment.state is State.IDLE:
        return Reading(power_w=idle_power)
    return Reading(power_w=idle_power, state=segment.state)


class Simulation:
    """A fleet, its planned timelines and the gateway agents that report them."""

    STOP_CHECK_S = 0.2

    def __init__(
        self, spec: SimulationSpec, *, mqtt_url: str, topic_prefix: str, state_dir: Path
    ) -> None:
        self.spec = spec
        self.fleet: Fleet = build_fleet(spec.instruments, seed=spec.seed, id_prefix=spec.id_prefix,
                                       networked_on=spec.networked_on)
        self.start = spec.resolved_start(datetime.now(UTC))
        self.ticks = round(spec.days * 86400 / spec.tick_s)
        self.timelines: list[Timeline] = plan_timelines(
            self.fleet, start=self.start, ticks=self.ticks, tick_s=spec.tick_s, seed=spec.seed,
            fault_rate=spec.fault_rate, open_ends=spec.open_ends,
        )
        self.bookings: list[SimBooking] = plan_bookings(
            self.fleet, self.timelines, start=self.start, tick_s=spec.tick_s, ticks=self.ticks,
            seed=spec.seed, no_show_rate=spec.no_show_rate,
        )
        self.certifications: list[SimCertification] = plan_certifications(
            self.fleet, self.timelines, seed=spec.seed
        )
        self.now = self.start
        self._probes = [SimulatedProbe() for _ in self.timelines]
        state_dir.mkdir(parents=True, exist_ok=True)
        self.agents = [
            GatewayAgent(
                self._gateway_config(tl, mqtt_url, topic_prefix, state_dir),
                probes={tl.instrument.id: probe},
                clock=lambda: self.now,
            )
            for tl, probe in zip(self.timelines, self._probes, strict=True)
        ]

    def _gateway_config(
        self, tl: Timeline, mqtt_url: str, topic_prefix: str, state_dir: Path
    ) -> GatewayConfig:
        inst = tl.instrument
        return GatewayConfig(
            gateway_id=inst.gateway_id,
            mqtt_url=mqtt_url,
            topic_prefix=topic_prefix,
            outbox_path=state_dir / f"{inst.gateway_id}.sqlite3",
            sample_interval_s=self.spec.tick_s,
            publish_interval_s=self.spec.publish_interval_s,
            instruments=[
                InstrumentConfig(
                    id=inst.id,
                    probe=ProbeConfig(kind="simulated"),
                    detector=DetectorConfig(
                        off_below_w=5.0, run_on_w=inst.run_on_w, run_off_w=inst.run_off_w
                    ),
                )
            ],
        )

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.ticks * self.spec.tick_s)

    def truth(self) -> dict[str, Any]:
        return ground_truth(
            self.timelines,
            bookings=self.bookings,
            certifications=self.certifications,
            start=self.start,
            tick_s=self.spec.tick_s,
            ticks=self.ticks,
            seed=self.spec.seed,
        )

    def run(
        self,
        *,
        on_tick: Callable[[int, int], None] | None = None,
        drain_timeout: float = 300.0,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> SimulationResult:
        """Play every tick, then wait until each outbox is empty (or ``drain_timeout``)."""
        began = time.monotonic()
        for agent in self.agents:
            agent.start()
        noise = [
            random.Random(f"{self.spec.seed}:noise:{tl.instrument.id}") for tl in self.timelines
        ]
        hints = [0] * len(self.timelines)
        outage_hints = [0] * len(self.timelines)
        link_up = [True] * len(self.timelines)
        tick = 0
        try:
            for tick in range(self.ticks + 1):
                if not self._pace(began, tick, should_stop):
                    break
                self.now = self.start + timedelta(seconds=tick * self.spec.tick_s)
                for n, (tl, agent) in enumerate(zip(self.timelines, self.agents, strict=True)):
                    hints[n], segment = tl.state_at(tick, hints[n])
                    self._probes[n].set(reading_for(segment, tl.instrument.profile, noise[n]))
                    outage_hints[n], down = _in_outage(tl, tick, outage_hints[n])
                    if down == link_up[n]:
                        link_up[n] = not down
                        agent.set_link(not down)
                    agent.poll(self.now)
                if on_tick:
                    on_tick(tick, self.ticks)
        finally:
            drained = self._drain(drain_timeout)
        stats = {agent.config.gateway_id: agent.stats for agent in self.agents}
        return SimulationResult(
            ticks=tick,
            messages=sum(s.enqueued for s in stats.values()),
            dropped=sum(s.dropped_full + s.dropped_age for s in stats.values()),
            drained=drained,
            wall_s=time.monotonic() - began,
            per_gateway={
                gw: {"enqueued": s.enqueued, "acked": s.acked, "confirmed": s.confirmed,
                     "reconnects": s.reconnects}
                for gw, s in stats.items()
            },
        )

    def _pace(self, began: float, tick: int, should_stop: Callable[[], bool]) -> bool:
        """Wait until the tick is due in real time; False if told to stop meanwhile."""
        due = began + tick * self.spec.tick_s / self.spec.speed if self.spec.speed else 0.0
        while not should_stop():
            delay = due - time.monotonic()
            if delay <= 0:
                return True
            time.sleep(min(delay, self.STOP_CHECK_S))
        return False

    def _drain(self, timeout: float) -> bool:
        for agent in self.agents:
            agent.flush()
            agent.set_link(True)
        deadline = time.monotonic() + timeout
        drained = all(
            agent.wait_drained(max(0.0, deadline - time.monotonic())) for agent in self.agents
        )
        if not drained:
            logger.warning("outboxes not empty after %.0f s (is an ingest worker online?)", timeout)
        for agent in self.agents:
            agent.stop()
        return drained


def _in_outage(tl: Timeline, tick: int, hint: int) -> tuple[int, bool]:
    while hint < len(tl.outages) and tl.outages[hint].end <= tick:
        hint += 1
    down = hint < len(tl.outages) and tl.outages[hint].start <= tick
    return hint, down
