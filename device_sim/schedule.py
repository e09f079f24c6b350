"""Realistic days for each simulated instrument: power-on, usage sessions, faults, maintenance,
and the gateway's network outages. Times are whole ticks (the sample interval) from the start."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

from device_sim.fleet import Fleet, SimInstrument
from instrushare.protocol import State

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
MIN_GAP_TICKS = 3
"""Shortest segment: longer than the gateway's debounce, so every state change is seen."""
EXTERNAL_SHARE = 0.2
FAULT_PER_DAY = 0.03
MAINTENANCE_PER_DAY = 0.02
OUTAGE_PER_DAY = 0.15


@dataclass(frozen=True, slots=True)
class Segment:
    """The instrument is in ``state`` over ticks [start, end), used by ``user`` when running."""

    start: int
    end: int
    state: State
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Outage:
    """The gateway's network link is down over ticks [start, end)."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Timeline:
    instrument: SimInstrument
    segments: list[Segment]
    outages: list[Outage]

    def state_at(self, tick: int, hint: int = 0) -> tuple[int, Segment]:
        """The segment holding ``tick``, searching forward from index ``hint`` (ticks only grow)."""
        index = hint
        while self.segments[index].end <= tick:
            index += 1
        return index, self.segments[index]


def _is_workday(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # years the calendar does not know yet
        return day.weekday() < 5


def plan_timelines(
    fleet: Fleet, *, start: datetime, ticks: int, tick_s: int, seed: int,
    fault_rate: float = FAULT_PER_DAY, open_ends: bool = False,
) -> list[Timeline]:
    """One timeline per instrument covering ticks [0, ticks]; on a share ``fault_rate`` of
    its working days one of its sessions is a fault instead. Each local day is planned from
    the seed, the instrument and the date alone, so runs of one seed agree on a day whatever
    their start. Without ``open_ends`` the timeline begins and ends at rest, every session
    whole inside it; with it, what is in progress at either end is kept, so that a run
    continues the one before it."""
    return [
        _plan_instrument(fleet, inst, start=start, ticks=ticks, tick_s=tick_s, seed=seed,
                         fault_rate=fault_rate, open_ends=open_ends)
        for inst in fleet.instruments
    ]


def _plan_instrument(
    fleet: Fleet, inst: SimInstrument, *, start: datetime, ticks: int, tick_s: int, seed: int,
    fault_rate: float, open_ends: bool,
) -> Timeline:
    base = State.IDLE if inst.profile.always_on else State.OFF
    internal = fleet.internal_users(inst.institution_id)
    external = fleet.external_users
    changes: list[Segment] = []  # non-base intervals, in order, not overlapping
    outages: list[Outage] = []

    def tick_of(moment: datetime) -> int:
        return round((moment - start).total_seconds() / tick_s)

    first, last = (0, ticks + 1) if open_ends else (MIN_GAP_TICKS, ticks - MIN_GAP_TICKS)
    local_day = start.astimezone(LOCAL_TZ).date()
    last_day = (start + timedelta(seconds=ticks * tick_s)).astimezone(LOCAL_TZ).date()
    while local_day <= last_day:
        day = f"{seed}:{inst.id}:{local_day.isoformat()}"
        rng, users = random.Random(day), random.Random(f"{day}:users")
        midnight = datetime.combine(local_day, datetime.min.time(), LOCAL_TZ)
        day_changes = _plan_day(rng, users, inst, midnight, internal, external,
                                _is_workday(local_day), fault_rate)
        for seg_start, seg_end, state, user in day_changes:
            a = max(tick_of(seg_start), changes[-1].end if changes else first)
            b = min(tick_of(seg_end), last)
            if b > a:
                changes.append(Segment(a, b, state, user))
        if rng.random() < OUTAGE_PER_DAY:
            begin = midnight + timedelta(minutes=rng.uniform(0, 24 * 60))
            a = max(tick_of(begin), 1)
            b = min(a + max(1, round(rng.uniform(5, 180) * 60 / tick_s)), ticks)
            if a < b:
                outages.append(Outage(a, b))
        local_day += timedelta(days=1)
    return Timeline(inst, _fill_with_base(changes, base, ticks), outages)


def _plan_day(
    rng: random.Random,
    users: random.Random,
    inst: SimInstrument,
    midnight: datetime,
    internal: list,  # type: ignore[type-arg]
    external: list,  # type: ignore[type-arg]
    workday: bool,
    fault_rate: float,
) -> list[tuple[datetime, datetime, State, str | None]]:
    """Intervals of one local day that differ from the instrument's resting state. Who runs
    each session is drawn from ``users``, apart from the rest: the user pools grow with the
    fleet, and the day's states and times stay the same whatever their size."""
    if not workday and rng.random() > 0.2:
        return []
    minute = timedelta(minutes=1)
    power_on = midnight + minute * rng.uniform(8 * 60, 9.5 * 60)
    work_end = midnight + minute * rng.uniform(17.5 * 60, 22 * 60)
    out: list[tuple[datetime, datetime, State, str | None]] = []
    t = power_on
    sessions: list[tuple[datetime, datetime, State, str | None]] = []
    t += minute * rng.uniform(5, 40)
    while t < work_end:
        length = minute * min(max(rng.expovariate(1 / inst.profile.mean_session_min), 10), 360)
        pool = external if external and rng.random() < EXTERNAL_SHARE else internal
        sessions.append((t, min(t + length, work_end), State.RUNNING, users.choice(pool).id))
        t += length + minute * rng.uniform(5, 90)
    if sessions and rng.random() < fault_rate:
        i = rng.randrange(len(sessions))
        a, b, _, _ = sessions[i]
        sessions[i] = (a, b, State.FAULT, None)
    if sessions and rng.random() < MAINTENANCE_PER_DAY:
        a, b, _, _ = sessions[0]
        sessions[0] = (a, b, State.MAINTENANCE, None)
    if not inst.profile.always_on:
        # powered (idle) from power-on until a while after the last session
        last = sessions[-1][1] if sessions else power_on + minute * 60
        off_at = last + minute * rng.uniform(15, 60)
        out.append((power_on, off_at, State.IDLE, None))
        return _nest(out[0], sessions)
    return sessions


def _nest(
    powered: tuple[datetime, datetime, State, str | None],
    inner: list[tuple[datetime, datetime, State, str | None]],
) -> list[tuple[datetime, datetime, State, str | None]]:
    """Split the powered (idle) interval around the sessions it contains."""
    out: list[tuple[datetime, datetime, State, str | None]] = []
    cursor = powered[0]
    for a, b, state, user in inner:
        if a > cursor:
            out.append((cursor, a, State.IDLE, None))
        out.append((a, b, state, user))
        cursor = b
    if powered[1] > cursor:
        out.append((cursor, powered[1], State.IDLE, None))
    return out


def _fill_with_base(changes: list[Segment], base: State, ticks: int) -> list[Segment]:
    """Complete timeline over [0, ticks + 1): gaps take the base state, a segment shorter than
    MIN_GAP_TICKS is absorbed by the one before it, equal neighbours merge."""
    out: list[Segment] = []

    def add(seg: Segment) -> None:
        if seg.end <= seg.start:
            return
        if out and (seg.end - seg.start < MIN_GAP_TICKS or _same(out[-1], seg)):
            out[-1] = Segment(out[-1].start, seg.end, out[-1].state, out[-1].user)
        else:
            out.append(seg)

    cursor = 0
    for seg in changes:
        add(Segment(cursor, seg.start, base))
        add(seg)
        cursor = seg.end
    add(Segment(cursor, ticks + 1, base))
    merged: list[Segment] = []
    for seg in out:  # absorbing can make neighbours equal
        if merged and _same(merged[-1], seg):
            merged[-1] = Segment(merged[-1].start, seg.end, seg.state, merged[-1].user)
        else:
            merged.append(seg)
    return merged


def _same(a: Segment, b: Segment) -> bool:
    """Touching sessions are one: the gateway sees no state change between them (the first
    user keeps the session, as in the detector)."""
    return a.state == b.state and (a.user == b.user or a.state is State.RUNNING)
