"""The simulator's plan of the days: deterministic per seed, realistic, and exact as ground truth.

No broker or database: fleets and timelines are planned in memory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device_sim.fleet import PROFILES, Fleet, build_fleet
from device_sim.runner import Simulation, SimulationSpec, reading_for
from device_sim.schedule import LOCAL_TZ, MIN_GAP_TICKS, Timeline, plan_timelines
from device_sim.truth import ground_truth
from gateway.config import DetectorConfig
from gateway.detector import StateDetector
from instrushare.protocol import EventType, State

MONDAY = datetime(2025, 3, 10, tzinfo=LOCAL_TZ)
"""Local midnight of an ordinary working Monday (2025-03-10 and -11 are working days)."""
SATURDAY = datetime(2025, 3, 15, tzinfo=LOCAL_TZ)
TICK_S = 60
TWO_DAYS = 2 * 86400 // TICK_S


def _plan(
    size: int, *, seed: int, start: datetime = MONDAY, ticks: int = TWO_DAYS, tick_s: int = TICK_S
) -> tuple[Fleet, list[Timeline]]:
    fleet = build_fleet(size, seed=seed)
    return fleet, plan_timelines(fleet, start=start, ticks=ticks, tick_s=tick_s, seed=seed)


def _truth(size: int, *, seed: int, start: datetime = MONDAY) -> dict[str, Any]:
    _, timelines = _plan(size, seed=seed, start=start)
    return ground_truth(timelines, start=start, tick_s=TICK_S, ticks=TWO_DAYS, seed=seed)


# -- determinism ------------------------------------------------------------------------------


def test_same_seed_same_fleet_timelines_and_truth() -> None:
    fleet_a, plan_a = _plan(50, seed=7)
    fleet_b, plan_b = _plan(50, seed=7)
    assert fleet_a == fleet_b
    assert plan_a == plan_b
    assert _truth(50, seed=7) == _truth(50, seed=7)


def test_different_seed_different_days() -> None:
    a, b = _truth(50, seed=7), _truth(50, seed=8)
    assert a["sessions"] != b["sessions"]
    assert a["states"] != b["states"]
    # not just a shift: the users and bounds of sessions differ
    bounds_a = {(s["instrument"], s["start"], s["end"], s["user"]) for s in a["sessions"]}
    bounds_b = {(s["instrument"], s["start"], s["end"], s["user"]) for s in b["sessions"]}
    assert len(bounds_a & bounds_b) < 0.1 * len(bounds_a)


def test_instruments_plan_independently_of_fleet_order() -> None:
    """Each instrument's days come from its own generator: a bigger fleet keeps the first days
    (users differ with fleet size, so compare state bounds only)."""
    _, small = _plan(10, seed=3)
    _, big = _plan(40, seed=3)
    for a, b in zip(small, big, strict=False):
        if a.instrument.profile == b.instrument.profile:
            assert [(s.start, s.end, s.state) for s in a.segments] == [
                (s.start, s.end, s.state) for s in b.segments
            ]


def _states(timeline: Timeline, ticks: range) -> list[tuple[State, str | None]]:
    return [(seg.state, seg.user) for seg in (timeline.state_at(t)[1] for t in ticks)]


def test_runs_agree_on_a_day_whatever_their_start_and_open_ends_continue() -> None:
    """Runs of one seed plan a day alike whatever their start: a run from Monday to Tuesday
    10:07 and one from there on, both with open ends, read as the run over both days,
    sessions in progress at the handover included (but for what lasts less than the shortest
    segment on either side of it)."""
    fleet = build_fleet(20, seed=5)
    tuesday = MONDAY + timedelta(days=1, hours=10, minutes=7)
    handover = (tuesday - MONDAY) // timedelta(seconds=TICK_S)
    whole = plan_timelines(fleet, start=MONDAY, ticks=TWO_DAYS, tick_s=TICK_S, seed=5)
    before = plan_timelines(fleet, start=MONDAY, ticks=handover, tick_s=TICK_S, seed=5,
                            open_ends=True)
    after = plan_timelines(fleet, start=tuesday, ticks=TWO_DAYS - handover, tick_s=TICK_S,
                           seed=5, open_ends=True)
    in_session = 0
    for w, a, b in zip(whole, before, after, strict=True):
        assert _states(a, range(MIN_GAP_TICKS, handover - MIN_GAP_TICKS)) == _states(
            w, range(MIN_GAP_TICKS, handover - MIN_GAP_TICKS))
        assert _states(b, range(MIN_GAP_TICKS, TWO_DAYS - handover - MIN_GAP_TICKS)) == _states(
            w, range(handover + MIN_GAP_TICKS, TWO_DAYS - MIN_GAP_TICKS))
        spanning = w.state_at(handover)[1]
        if (spanning.state is State.RUNNING and spanning.start <= handover - MIN_GAP_TICKS
                and spanning.end > handover + MIN_GAP_TICKS):
            in_session += 1  # neither run begins or ends it
            ran = [(State.RUNNING, spanning.user)] * (MIN_GAP_TICKS + 1)
            assert _states(a, range(handover - MIN_GAP_TICKS, handover + 1)) == ran
            assert _states(b, range(MIN_GAP_TICKS + 1)) == ran
    assert in_session >= 3  # the handover falls in sessions, not only at rest


def test_truth_does_not_depend_on_hash_seed() -> None:
    """The same seed gives the same truth in another process (no set or hash ordering)."""
    code = (
        "import hashlib, json, sys\n"
        "from datetime import datetime\n"
        "from device_sim.schedule import LOCAL_TZ\n"
        "from tests.device_sim.test_schedule import _truth\n"
        "t = _truth(30, seed=5)\n"
        "print(hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest())\n"
    )
    root = Path(__file__).resolve().parents[2]
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"},
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for hash_seed in ("1", "2")
    }
    here = hashlib.sha256(json.dumps(_truth(30, seed=5), sort_keys=True).encode()).hexdigest()
    assert digests == {here}


def test_simulation_truth_is_reproducible(tmp_path: Path) -> None:
    """Two simulations with the same spec report the same truth (no broker needed to plan)."""
    spec = SimulationSpec(instruments=8, days=1, seed=11, start=MONDAY)
    truths = [
        Simulation(
            spec, mqtt_url="mqtt://127.0.0.1:1", topic_prefix="unused", state_dir=tmp_path / str(n)
        ).truth()
        for n in range(2)
    ]
    assert truths[0] == truths[1]
    other = Simulation(
        SimulationSpec(instruments=8, days=1, seed=12, start=MONDAY),
        mqtt_url="mqtt://127.0.0.1:1",
        topic_prefix="unused",
        state_dir=tmp_path / "other",
    ).truth()
    assert other["sessions"] != truths[0]["sessions"]


# -- invariants of the ground truth -----------------------------------------------------------


@pytest.mark.parametrize("start", [MONDAY, SATURDAY, MONDAY + timedelta(hours=10, minutes=17)])
@pytest.mark.parametrize("tick_s", [60, 300])
def test_state_intervals_cover_the_span_without_gaps(start: datetime, tick_s: int) -> None:
    ticks = 2 * 86400 // tick_s
    fleet, timelines = _plan(50, seed=2, start=start, ticks=ticks, tick_s=tick_s)
    truth = ground_truth(timelines, start=start, tick_s=tick_s, ticks=ticks, seed=2)
    by_instrument: dict[str, list[dict[str, str]]] = {}
    for st in truth["states"]:
        by_instrument.setdefault(st["instrument"], []).append(st)
    assert sorted(by_instrument) == sorted(i.id for i in fleet.instruments)
    for instrument, states in by_instrument.items():
        assert states[0]["start"] == truth["start"], instrument
        assert states[-1]["end"] == truth["end"], instrument
        for prev, nxt in itertools.pairwise(states):
            assert prev["end"] == nxt["start"], f"{instrument}: gap or overlap at {prev['end']}"
            assert (prev["state"], prev["user"]) != (nxt["state"], nxt["user"]), (
                f"{instrument}: equal neighbours not merged at {prev['end']}"
            )


@pytest.mark.parametrize("start", [MONDAY, SATURDAY, MONDAY + timedelta(hours=10, minutes=17)])
@pytest.mark.parametrize("tick_s", [60, 300])
def test_every_segment_lasts_at_least_min_ticks(start: datetime, tick_s: int) -> None:
    """docs/simulator.md: every state segment lasts at least three ticks (longer than the
    debounce), whatever the start time; the last one may be cut by the end of the run."""
    ticks = 2 * 86400 // tick_s
    _, timelines = _plan(50, seed=2, start=start, ticks=ticks, tick_s=tick_s)
    for tl in timelines:
        for seg in tl.segments:
            assert seg.end - seg.start >= MIN_GAP_TICKS, (tl.instrument.id, seg)


@pytest.mark.parametrize("tick_s", [60, 300])
def test_user_changes_are_observable(tick_s: int) -> None:
    """Two sessions of different users never touch: the gateway sees a session change only
    through a state change, so touching sessions would reach the database as one."""
    ticks = 2 * 86400 // tick_s
    _, timelines = _plan(50, seed=2, ticks=ticks, tick_s=tick_s)
    for tl in timelines:
        for a, b in zip(tl.segments, tl.segments[1:], strict=False):
            assert not (a.state is State.RUNNING and b.state is State.RUNNING), (
                tl.instrument.id,
                a,
                b,
            )


def test_sessions_are_running_intervals_with_users() -> None:
    fleet, timelines = _plan(50, seed=4)
    truth = ground_truth(timelines, start=MONDAY, tick_s=TICK_S, ticks=TWO_DAYS, seed=4)
    running = {
        (s["instrument"], s["start"], s["end"], s["user"])
        for s in truth["states"]
        if s["state"] == "running"
    }
    sessions = [(s["instrument"], s["start"], s["end"], s["user"]) for s in truth["sessions"]]
    assert sessions, "two working days without a single session"
    assert len(sessions) == len(set(sessions))
    assert set(sessions) == running
    users = {u.id: u for u in fleet.users}
    owner = {i.id: i.institution_id for i in fleet.instruments}
    kinds: Counter[str] = Counter()
    for instrument, _, _, user in sessions:
        assert user in users, f"{instrument}: session without a known user ({user})"
        home = users[user].institution_id
        assert home is None or home == owner[instrument], "internal user of another institution"
        kinds["external" if home is None else "internal"] += 1
    assert kinds["internal"] > 0 and kinds["external"] > 0
    for st in truth["states"]:
        assert (st["user"] is not None) == (st["state"] == "running"), st


def test_fleet_has_faults_maintenance_outages_at_documented_rates() -> None:
    """About 3% of days with sessions have a fault, 2% maintenance; 15% of gateway-days an
    outage of 5 min to 3 h; 20% of sessions by outside users; days 08:00 to 23:00."""
    size, days, seed = 300, 2, 9
    fleet, timelines = _plan(size, seed=seed)
    states = Counter(seg.state for tl in timelines for seg in tl.segments)
    assert states[State.FAULT] > 0 and states[State.MAINTENANCE] > 0
    assert 0.01 <= states[State.FAULT] / (size * days) <= 0.06
    assert 0.005 <= states[State.MAINTENANCE] / (size * days) <= 0.045
    outages = [o for tl in timelines for o in tl.outages]
    assert 0.10 <= len(outages) / (size * days) <= 0.20
    for o in outages:
        assert 1 <= o.end - o.start <= 180
    external = {u.id for u in fleet.external_users}
    runs = [seg for tl in timelines for seg in tl.segments if seg.state is State.RUNNING]
    share = sum(seg.user in external for seg in runs) / len(runs)
    assert 0.15 <= share <= 0.25
    for tl in timelines:
        for seg in tl.segments:
            if seg.state in (State.RUNNING, State.FAULT, State.MAINTENANCE):
                local = (MONDAY + timedelta(minutes=seg.start)).astimezone(LOCAL_TZ)
                assert 8 * 60 <= local.hour * 60 + local.minute <= 22 * 60, (tl.instrument.id, seg)
                assert seg.end - seg.start <= 6 * 60
            if seg.state is State.OFF:
                assert not tl.instrument.profile.always_on


def test_weekends_are_mostly_quiet() -> None:
    _, weekdays = _plan(200, seed=6)
    _, weekend = _plan(200, seed=6, start=SATURDAY)

    def busy(timelines: list[Timeline]) -> int:
        return sum(any(s.state is State.RUNNING for s in tl.segments) for tl in timelines)

    assert busy(weekdays) > 190
    assert busy(weekend) < 0.5 * 200  # quiet 80% of days: ~36% busy over two weekend days


# -- power profiles against the gateway's detector --------------------------------------------


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.code)
def test_power_bands_separate_at_the_detector_thresholds(profile: object) -> None:
    fleet = build_fleet(60, seed=1)
    inst = next(i for i in fleet.instruments if i.profile == profile)
    # what the runner gives each gateway; refuses unordered thresholds itself
    cfg = DetectorConfig(off_below_w=5.0, run_on_w=inst.run_on_w, run_off_w=inst.run_off_w)
    p = inst.profile
    assert 2 < cfg.off_below_w < p.idle_w * 0.95  # off readings are 0-2 W
    assert p.idle_w * 1.05 < cfg.run_off_w <= cfg.run_on_w < p.run_w * 0.9


@pytest.mark.parametrize("start", [MONDAY, MONDAY + timedelta(hours=10, minutes=17)])
@pytest.mark.parametrize("tick_s", [60, 300])
def test_detector_on_simulated_readings_finds_exactly_the_true_sessions(
    tmp_path: Path, start: datetime, tick_s: int
) -> None:
    """Feeding each planned reading through the gateway's own detector, with the thresholds the
    simulator configures, yields every true session with its bounds and user, to the tick (no
    user where the gateway sees power only)."""
    spec = SimulationSpec(instruments=30, days=2, seed=13, start=start, tick_s=tick_s)
    simulation = Simulation(
        spec, mqtt_url="mqtt://127.0.0.1:1", topic_prefix="unused", state_dir=tmp_path
    )
    truth = simulation.truth()
    expected = sorted((s["instrument"], s["reported_user"], s["start"], s["end"])
                      for s in truth["sessions"])
    found: list[tuple[str, str | None, str, str]] = []
    for tl, agent in zip(simulation.timelines, simulation.agents, strict=True):
        detector = StateDetector(agent.config.instruments[0].detector)
        rng = random.Random(0)
        opened: tuple[str | None, datetime] | None = None
        hint = 0
        for tick in range(simulation.ticks + 1):
            hint, seg = tl.state_at(tick, hint)
            ts = simulation.start + timedelta(seconds=tick * spec.tick_s)
            out = detector.feed(ts, reading_for(seg, tl.instrument, rng))
            for ev in out.events:
                if ev.type is EventType.SESSION_START:
                    opened = (ev.user, ev.ts)
                elif ev.type is EventType.SESSION_END:
                    assert opened is not None
                    assert ev.user == opened[0]
                    found.append(
                        (
                            tl.instrument.id,
                            ev.user,
                            opened[1].astimezone(UTC).isoformat(),
                            ev.ts.astimezone(UTC).isoformat(),
                        )
                    )
                    opened = None
        assert opened is None, f"{tl.instrument.id}: a session still open at the end"
    assert sorted(found) == expected
