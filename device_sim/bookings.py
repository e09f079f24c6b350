"""The bookings behind the simulated use: most sessions were booked (outside users' more often
than inside users'), on the half hour around the session, and now and then a booking nobody
turned up to. Completed bookings carry a service record: a fee from the instrument's rate,
innovation vouchers at voucher institutions, often a rating. Drawn on streams of their own, so
the fleet's days are the same with or without them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from device_sim.fleet import Fleet
from device_sim.schedule import LOCAL_TZ, Timeline
from instrushare.protocol import State

BOOKED_SHARE_OUTSIDE = 0.8
BOOKED_SHARE_INSIDE = 0.5
NO_SHOW_PER_DAY = 0.05
NO_SHOW_SLOT = (time(6), time(7))
"""Local hours of the missed bookings: before any simulated day begins (power-on is 08:00 at
the earliest), so even with a grace of an hour on each side nobody runs the instrument."""
PURPOSES = ("research", "development", "teaching", "other")
PURPOSE_WEIGHTS = (6, 2, 1, 1)
_HALF_HOUR = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class SimBooking:
    instrument: str
    user: str
    kind: str
    purpose: str
    start: datetime
    end: datetime
    used: bool
    """False for a no-show: nobody ran the instrument in or near the window."""
    fee_rmb: int = 0
    voucher_rmb: int = 0
    rating: int | None = None


def _floor(t: datetime) -> datetime:
    return t - timedelta(seconds=t.timestamp() % 1800)


def _ceil(t: datetime) -> datetime:
    floor = _floor(t)
    return floor if floor == t else floor + _HALF_HOUR


def plan_bookings(
    fleet: Fleet, timelines: list[Timeline], *, start: datetime, tick_s: int, ticks: int,
    seed: int, no_show_rate: float = NO_SHOW_PER_DAY,
) -> list[SimBooking]:
    """Every instrument's bookings over the simulated span, in time order, never overlapping;
    on a share ``no_show_rate`` of the days an instrument also has one nobody turns up to."""
    outside = {u.id for u in fleet.external_users}
    tiers = {i.id: i.tier for i in fleet.institutions}
    end = start + timedelta(seconds=ticks * tick_s)
    bookings: list[SimBooking] = []
    for tl in timelines:
        inst = tl.instrument
        rng = random.Random(f"{seed}:bookings:{inst.id}")
        mine: list[SimBooking] = []
        booked_until: datetime | None = None
        for seg in tl.segments:
            if seg.state is not State.RUNNING or seg.user is None or seg.start >= ticks:
                continue
            external = seg.user in outside
            if rng.random() >= (BOOKED_SHARE_OUTSIDE if external else BOOKED_SHARE_INSIDE):
                continue
            used_from = start + timedelta(seconds=seg.start * tick_s)
            used_to = start + timedelta(seconds=seg.end * tick_s)
            # from the half hour before the session (one running when the span begins was
            # booked before it), never into the instrument's previous booking; a session
            # begun before that booking ends (on the half hour) stays unbooked: booked from
            # later, the platform would take its user from the booking it began in, another
            a = _floor(used_from - timedelta(minutes=rng.uniform(0, 15)))
            if booked_until is not None:
                a = max(a, booked_until)
            if a > used_from:
                continue
            b = _ceil(used_to)
            fee = round(inst.profile.fee_per_hour(outside=external)
                        * (b - a).total_seconds() / 3600)
            voucher = (fee // 2 if external and tiers[inst.institution_id] == "voucher"
                       and rng.random() < 0.3 else 0)
            mine.append(SimBooking(
                inst.id, seg.user, rng.choice(("assisted", "sample")) if external else "self",
                _purpose(rng), a, b, True, fee, voucher,
                rng.choice((3, 4, 4, 5, 5, 5)) if rng.random() < 0.6 else None))
            booked_until = b
        users = [u.id for u in fleet.internal_users(inst.institution_id)]
        users += [u.id for u in fleet.external_users]
        rng = random.Random(f"{seed}:no-shows:{inst.id}")  # whatever the sessions booked
        day = start.astimezone(LOCAL_TZ).date()
        while day <= end.astimezone(LOCAL_TZ).date():
            a = datetime.combine(day, NO_SHOW_SLOT[0], LOCAL_TZ)
            b = datetime.combine(day, NO_SHOW_SLOT[1], LOCAL_TZ)
            if rng.random() < no_show_rate and start <= a and b <= end:
                user = rng.choice(users)
                kind = "self" if user not in outside else "assisted"
                mine.append(SimBooking(inst.id, user, kind, _purpose(rng), a, b, False))
            day += timedelta(days=1)
        bookings += sorted(mine, key=lambda bk: bk.start)
    return bookings


def _purpose(rng: random.Random) -> str:
    return rng.choices(PURPOSES, PURPOSE_WEIGHTS)[0]
