"""The simulated bookings and certifications: deterministic, bookings never overlapping, used
ones around their session, missed ones far from any use; most users certified on what they
run; all recorded in the database as the platform would have."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

import psycopg

from device_sim.bookings import SimBooking, plan_bookings
from device_sim.certifications import plan_certifications
from device_sim.fleet import build_fleet
from device_sim.registry import register_bookings, register_certifications, register_fleet
from device_sim.schedule import LOCAL_TZ, plan_timelines
from instrushare.protocol import State

START = datetime(2025, 3, 10, tzinfo=LOCAL_TZ)  # a working Monday
TICK_S = 60
TICKS = 20 * 86400 // TICK_S
GRACE = timedelta(hours=1)


def _plan(seed: int = 5) -> tuple[list[SimBooking], dict[str, list[tuple[datetime, datetime]]]]:
    fleet = build_fleet(40, seed=seed)
    timelines = plan_timelines(fleet, start=START, ticks=TICKS, tick_s=TICK_S, seed=seed)
    running = {
        tl.instrument.id: [(START + timedelta(seconds=s.start * TICK_S),
                            START + timedelta(seconds=s.end * TICK_S))
                           for s in tl.segments if s.state is State.RUNNING]
        for tl in timelines
    }
    bookings = plan_bookings(fleet, timelines, start=START, tick_s=TICK_S, ticks=TICKS, seed=seed)
    return bookings, running


def test_bookings_follow_use_and_never_overlap() -> None:
    bookings, running = _plan()
    assert bookings == _plan()[0] and bookings != _plan(6)[0]
    sessions = sum(len(r) for r in running.values())
    used = [bk for bk in bookings if bk.used]
    missed = [bk for bk in bookings if not bk.used]
    assert 0.45 * sessions < len(used) < 0.75 * sessions
    assert 15 < len(missed) < 70  # 40 instruments x 21 days x 5%
    for instrument, runs in running.items():
        mine = [bk for bk in bookings if bk.instrument == instrument]
        assert all(a.end <= b.start for a, b in pairwise(mine))
        for bk in mine:
            hit = [r for r in runs if r[0] < bk.end + GRACE and r[1] > bk.start - GRACE]
            assert bool(hit) == bk.used, bk
            assert bk.start.timestamp() % 1800 == 0 and bk.end.timestamp() % 1800 == 0
            if bk.used:  # its session begins inside it: the platform takes it to be its
                assert any(bk.start <= r[0] < bk.end for r in runs), bk
                assert bk.fee_rmb > 0 and bk.voucher_rmb <= bk.fee_rmb // 2
            else:
                assert (bk.fee_rmb, bk.rating) == (0, None)
    assert {bk.kind for bk in used} == {"self", "assisted", "sample"}
    assert {bk.purpose for bk in bookings} == {"research", "development", "teaching", "other"}


def test_recorded_once_with_service_records(database_url: str) -> None:
    fleet = build_fleet(40, seed=5)
    register_fleet(database_url, fleet)
    bookings, _ = _plan()
    assert register_bookings(database_url, bookings) == len(bookings)
    assert register_bookings(database_url, bookings) == 0  # a second run adds nothing
    with psycopg.connect(database_url) as conn:
        statuses: dict[str, int] = dict(conn.execute(
            "SELECT status, count(*) FROM booking GROUP BY status").fetchall())
        fees = conn.execute("SELECT sum(fee_rmb), sum(voucher_rmb) FROM service_record"
                            ).fetchone()
    assert statuses == {"completed": sum(bk.used for bk in bookings),
                        "approved": sum(not bk.used for bk in bookings)}
    assert fees == (sum(bk.fee_rmb for bk in bookings), sum(bk.voucher_rmb for bk in bookings))


def test_most_users_are_certified_on_what_they_run(database_url: str) -> None:
    fleet = build_fleet(40, seed=5)
    timelines = plan_timelines(fleet, start=START, ticks=TICKS, tick_s=TICK_S, seed=5)
    certifications = plan_certifications(fleet, timelines, seed=5)
    assert certifications == plan_certifications(fleet, timelines, seed=5)
    used = {(s.user, tl.instrument.id) for tl in timelines for s in tl.segments
            if s.state is State.RUNNING and s.user}
    pairs = {(c.user, c.instrument) for c in certifications}
    assert pairs < used and 0.85 * len(used) < len(pairs) < 0.95 * len(used)
    outside = {u.id for u in fleet.external_users}
    assert all((c.level == "assisted") == (c.user in outside) for c in certifications)
    register_fleet(database_url, fleet)
    assert register_certifications(database_url, certifications) == len(certifications)
    assert register_certifications(database_url, certifications) == 0
