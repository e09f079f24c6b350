"""Drive one real gateway agent per simulated instrument through its timeline.

There is no second publishing path: every reading goes through ``gateway.GatewayAgent`` (detector,
outbox, MQTT), exactly as on an edge box, only with a simulated probe and a simulated clock.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from device_sim.bookings import NO_SHOW_PER_DAY, SimBooking, plan_bookings
from device_sim.certifications import SimCertification, plan_certifications
from device_sim.fleet import ANONYMOUS_SHARE, Fleet, SimInstrument, build_fleet
from device_sim.schedule import FAULT_PER_DAY, LOCAL_TZ, Segment, Timeline, plan_timelines
from device_sim.truth import ground_truth
from gateway import (
    DetectorConfig,
    GatewayAgent,
    GatewayConfig,
    InstrumentConfig,
    OutboxError,
    ProbeConfig,
    Reading,
    SimulatedProbe,
)
from instrushare.protocol import IDENTIFIER_RE, MAX_SAMPLE_INTERVAL_S, State

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
    """Put before every id (gateways, instruments, institutions, users): a gateway's id is its
    MQTT client id, unique on the whole broker whatever the topic prefix, so sims run at once
    on one broker need different ones."""
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
    anonymous_share: float = ANONYMOUS_SHARE
    """Chance that an instrument's gateway sees power only and reports no user."""

    def __post_init__(self) -> None:
        if self.instruments < 1:
            raise ValueError("instruments must be at least 1")
        if self.days <= 0:
            raise ValueError("days must be positive")
        if not 1 <= self.tick_s <= MAX_SAMPLE_INTERVAL_S:
            raise ValueError(f"tick_s must be between 1 and {MAX_SAMPLE_INTERVAL_S} seconds")
        if self.speed is not None and self.speed <= 0:
            raise ValueError("speed must be positive (or None for as fast as possible)")
        if self.id_prefix and not IDENTIFIER_RE.fullmatch(f"{self.id_prefix}ins-00001"):
            raise ValueError("id_prefix must start with a letter or digit and hold only"
                             " letters, digits and _ . - (ids are at most 64 characters)")
        for name in ("no_show_rate", "fault_rate", "anonymous_share"):
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
    """``ticks``: the last tick played (0 to the simulation's ``ticks``, all of them when it
    equals that; -1: none, stopped before the first);
    ``unsent``: messages left in the outboxes at the end, kept there for a later run."""

    ticks: int
    messages: int
    dropped: int
    unsent: int
    wall_s: float
    per_gateway: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def drained(self) -> bool:
        return self.unsent == 0


def reading_for(segment: Segment, instrument: SimInstrument, rng: random.Random) -> Reading:
    """What the power meter and the instrument software report in this state; a gateway that
    sees power only reads no user."""
    profile = instrument.profile
    if segment.state is State.OFF:
        return Reading(power_w=rng.uniform(0, 2))
    if segment.state is State.RUNNING:
        return Reading(
            power_w=profile.run_w * rng.uniform(0.9, 1.1),
            user=segment.user if instrument.reports_user else None,
            metrics={"chamber_temp_c": round(rng.gauss(24.0, 0.3), 2)},
        )
    idle_power = profile.idle_w * rng.uniform(0.95, 1.05)
    if segment.state is State.IDLE:
        return Reading(power_w=idle_power)
    return Reading(power_w=idle_power, state=segment.state)


class Simulation:
    """A fleet, its planned timelines and the gateway agents that report them."""

    STOP_CHECK_S = 0.2
    DRAIN_POLL_S = 0.05
    STOP_GRACE_S = 1.0
    """Told to stop, the drain waits this much longer at most: the outboxes are files, so
    what is left waits there for a later run on the same ``state_dir``."""

    def __init__(
        self, spec: SimulationSpec, *, mqtt_url: str, topic_prefix: str, state_dir: Path
    ) -> None:
        self.spec = spec
        self.fleet: Fleet = build_fleet(spec.instruments, seed=spec.seed, id_prefix=spec.id_prefix,
                                       networked_on=spec.networked_on,
                                       anonymous_share=spec.anonymous_share)
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
        self.state_dir = state_dir.resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.agents = [
            GatewayAgent(
                self._gateway_config(tl, mqtt_url, topic_prefix, self.state_dir),
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
        on_drain: Callable[[int], None] | None = None,
        drain_timeout: float = 300.0,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> SimulationResult:
        """Play every tick until ``should_stop()``, then wait until each outbox is empty: at
        most ``drain_timeout``, or ``STOP_GRACE_S`` once ``should_stop()``. ``on_drain`` gets
        the messages still in the outboxes while it waits, so a caller can show them fall.
        OutboxError if an outbox cannot be opened (say, another simulation on ``state_dir``
        holds it), before any tick. A paced run (``speed``) first waits, as a gateway
        does, up to ``GatewayAgent.START_WAIT_S`` for its gateways to be able to publish, so
        that its first tick goes out live and shows on the platform's live status at once."""
        began = time.monotonic()
        try:
            for agent in self.agents:
                agent.start()
        except OutboxError:  # those started let go of their outboxes and connections
            _stop_all(self.agents)
            raise
        if self.spec.speed:  # the first tick goes out live, as a gateway's first poll
            deadline = began + GatewayAgent.START_WAIT_S
            for agent in self.agents:
                agent.await_publishing(deadline, should_stop)
            if (held := _why_held(self.agents)) and not should_stop():
                logger.info("starting without waiting longer for the gateways to publish live"
                            " (%s): what they send before they can is historical", held)
        paced_from = time.monotonic()
        noise = [
            random.Random(f"{self.spec.seed}:noise:{tl.instrument.id}") for tl in self.timelines
        ]
        hints = [0] * len(self.timelines)
        outage_hints = [0] * len(self.timelines)
        link_up = [True] * len(self.timelines)
        played = -1
        try:
            for tick in range(self.ticks + 1):
                if not self._pace(paced_from, tick, should_stop):
                    break
                self.now = self.start + timedelta(seconds=tick * self.spec.tick_s)
                for n, (tl, agent) in enumerate(zip(self.timelines, self.agents, strict=True)):
                    hints[n], segment = tl.state_at(tick, hints[n])
                    self._probes[n].set(reading_for(segment, tl.instrument, noise[n]))
                    outage_hints[n], down = _in_outage(tl, tick, outage_hints[n])
                    if down == link_up[n]:
                        link_up[n] = not down
                        agent.set_link(not down)
                    agent.poll(self.now)
                played = tick
                if on_tick:
                    on_tick(tick, self.ticks)
        finally:
            self._drain(drain_timeout, should_stop, on_drain or (lambda _left: None))
        stats = {agent.config.gateway_id: agent.stats for agent in self.agents}
        return SimulationResult(
            ticks=played,
            messages=sum(s.enqueued for s in stats.values()),
            dropped=sum(s.dropped_full + s.dropped_age for s in stats.values()),
            unsent=_unsent(self.agents),
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

    def _drain(
        self, timeout: float, should_stop: Callable[[], bool], on_drain: Callable[[int], None]
    ) -> None:
        """Publish what the outboxes hold until the platform has confirmed it all, the time is
        up or, told to stop, the grace is over; then stop the agents."""
        for agent in self.agents:
            agent.flush()
            agent.set_link(True)
        deadline = time.monotonic() + timeout
        pending = self.agents
        if (left := _unsent(pending)) and not should_stop():
            logger.info("waiting up to %.0f s for the platform to take %d message(s) from the"
                        " outboxes (stopping ends the wait and keeps them)", timeout, left)
        while pending and time.monotonic() < deadline:
            if should_stop():
                deadline = min(deadline, time.monotonic() + self.STOP_GRACE_S)
            time.sleep(self.DRAIN_POLL_S)
            pending = [agent for agent in pending if not agent.wait_drained(0)]
            on_drain(_unsent(pending))
        why = _why_undelivered(self.agents)  # before the stop, which takes every link down
        _stop_all(self.agents)
        if left := _unsent(self.agents):
            logger.warning(
                "%d message(s) not delivered %s: they stay in the outboxes in %s, and a later"
                " run on that directory sends them", left,
                "(stopped)" if should_stop() else f"within {timeout:.0f} s ({why})",
                self.state_dir)


def _stop_all(agents: list[GatewayAgent]) -> None:
    """Stop every agent, in about the time the slowest takes: each waits for the broker to
    take its offline state (seconds, from a broker that stopped answering), all at once."""
    for agent in agents:
        agent.begin_stop()
    for agent in agents:
        agent.stop()


def _unsent(agents: list[GatewayAgent]) -> int:
    """Messages in these agents' outboxes, not yet confirmed stored by the platform."""
    return sum(agent.stats.outbox_depth for agent in agents)


def _why_held(agents: Iterable[GatewayAgent], otherwise: str | None = None) -> str:
    """Why the gateways cannot publish, the commonest reason first, and ``otherwise`` of those
    that can (None leaves them out): a broker that cannot be reached or refuses them is not
    an ingest that is missing."""
    reasons = Counter(agent.link.held_by or otherwise for agent in agents)
    return "; ".join(f"{count} gateway(s): {why}" for why, count in reasons.most_common()
                     if why is not None)


def _why_undelivered(agents: list[GatewayAgent]) -> str:
    """Why the gateways with messages left hold them."""
    return _why_held((agent for agent in agents if agent.stats.outbox_depth),
                     otherwise="published, but not confirmed stored by the platform")


def _in_outage(tl: Timeline, tick: int, hint: int) -> tuple[int, bool]:
    while hint < len(tl.outages) and tl.outages[hint].end <= tick:
        hint += 1
    down = hint < len(tl.outages) and tl.outages[hint].start <= tick
    return hint, down
