"""The report query against a plain-Python reading of docs/metrics.md, on randomised data.

Each seed builds an institution tree, users of every kind (inside, outside, not approved,
firms, unknown), instruments with and without margins and noise floors, sessions that cross
midnight and the period's bounds (one still open), bookings of every kind (adjacent, before
and after the period, not approved; their users taken by the unreported sessions in them)
and certifications (expired, revoked, revoked before they began).
Then late data arrives: sessions inserted into the past, an open session closed, a session
replaced by two, as the ingest does when samples come in late. After each step the query
must equal the reference for several periods.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row

from monitor_api.queries import metrics
from monitor_api.queries.metrics import per_instrument
from monitor_api.queries.session_month import MonthSplit
from monitor_api.report import period_bounds
from tests.api.metrics_reference import (
    Booking,
    Certification,
    Figures,
    Instrument,
    Session,
    User,
    World,
    booking_of,
    expected,
)

GRACE = timedelta(minutes=30)
TIMEOUT = timedelta(minutes=15)
FIRST_DAY = date.today() - timedelta(days=60)  # periods in the past: every booking has ended


def _world(rng: random.Random) -> World:
    world = World(
        parents={"A": None, "A-lab": "A", "A-lab-x": "A-lab", "B": None, "C": None},
        instruments=[
            Instrument("i0", "A-lab"),
            Instrument("i1", "A-lab-x", warmup_s=1800, cooldown_s=900, min_session_s=300),
            Instrument("i2", "B", cooldown_s=3600),
            Instrument("i3", "C", warmup_s=7200, cooldown_s=7200, min_session_s=600),
            Instrument("i4", "A"),  # bookings only, until late sessions arrive
        ],
        users=[
            User("uA", "A", "", True), User("uAlab", "A-lab", "", True),
            User("uB", "B", "", True), User("uBnew", "B", "", False),
            User("firm", None, "Firm Ltd", True), User("firm2", None, "Firm Ltd", True),
            User("solo", None, "", True),
        ],
    )
    lo, _ = period_bounds(FIRST_DAY, FIRST_DAY)
    who = ["uA", "uAlab", "uB", "uBnew", "firm", "firm2", "solo", "ghost", None, None]
    for inst in world.instruments[:4]:
        t = lo - timedelta(days=2, hours=rng.uniform(0, 6))
        while t < lo + timedelta(days=6):
            length = rng.choice([timedelta(seconds=rng.uniform(1, 400)),
                                 timedelta(minutes=rng.uniform(5, 50)),
                                 timedelta(hours=rng.uniform(1, 5)),
                                 timedelta(hours=rng.uniform(20, 30))])
            world.sessions.append(Session(inst.id, t, t + length, t + length, rng.choice(who)))
            t += length + rng.choice([timedelta(0), timedelta(minutes=rng.uniform(1, 90)),
                                      timedelta(hours=rng.uniform(2, 12))])
    # the gateways report until an hour ago, but i2's fell silent on the period's third day
    # (no-shows count only up to its last sample) and i4 has none (never any no-show)
    world.heard = {i.id: datetime.now(UTC) - timedelta(hours=1)
                   for i in world.instruments if i.id != "i4"}
    world.heard["i2"] = lo + timedelta(days=2, hours=rng.uniform(0, 24))
    last = world.sessions[-1]  # still running: ends at its last sample
    world.sessions[-1] = Session(last.instrument_id, last.start, None, last.last, last.user_id)
    for inst in world.instruments:
        t = lo - timedelta(days=3) + timedelta(hours=rng.uniform(0, 24))
        while t < lo + timedelta(days=6):
            length = timedelta(hours=rng.uniform(0.5, 4))
            status = rng.choice(["approved", "approved", "completed", "requested", "cancelled",
                                 "void"])
            world.bookings.append(Booking(inst.id, rng.choice(["uA", "uB", "firm"]), t,
                                          t + length, status,
                                          rng.choice(["self", "self", "assisted", "sample"])))
            t += length + rng.choice([timedelta(0), timedelta(hours=rng.uniform(1, 30))])
    # half the sessions begun in a booking's window have no reported user: the booking's
    world.sessions = [
        replace(s, user_id=None) if booking_of(world, s, GRACE) and rng.random() < 0.5 else s
        for s in world.sessions]
    for user in ("uA", "uAlab", "uB", "firm", "solo", "uBnew"):
        for inst in world.instruments:
            if rng.random() < 0.5:
                start = lo + timedelta(hours=rng.uniform(-48, 96))
                until = start + timedelta(hours=rng.uniform(1, 72))
                revoked = start + timedelta(hours=rng.uniform(-30, 60))
                world.certifications.append(Certification(
                    user, inst.id, start, until if rng.random() < 0.4 else None,
                    revoked if rng.random() < 0.4 else None))
    # a future certification revoked before it began: never valid
    world.certifications.append(Certification("uB", "i2", lo + timedelta(days=1), None, lo))
    return world


def _late_data(world: World, rng: random.Random) -> None:
    """Sessions arriving late, an open session closed, one session replaced by two."""
    lo, _ = period_bounds(FIRST_DAY, FIRST_DAY)
    for k in range(12):
        inst = rng.choice(world.instruments)
        start = lo + timedelta(hours=rng.uniform(-30, 120), microseconds=k)
        length = timedelta(hours=rng.uniform(0.2, 28))
        world.sessions.append(Session(inst.id, start, start + length, start + length,
                                      rng.choice(["uA", "uB", "firm", "solo", None])))
    for n, s in enumerate(world.sessions):
        if s.end is None:
            world.sessions[n] = Session(s.instrument_id, s.start, s.last + timedelta(minutes=3),
                                        s.last, s.user_id)
    victim = world.sessions.pop(rng.randrange(len(world.sessions) // 2))
    end = victim.end or victim.last
    middle = victim.start + (end - victim.start) / 2
    world.sessions += [Session(victim.instrument_id, victim.start, middle, middle, "uB"),
                       Session(victim.instrument_id, middle, end, end, victim.user_id)]


def _store(url: str, world: World) -> None:
    """Replace the database's registry and activity with ``world``."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("usage_session", "state_sample", "certification", "booking",
                      "platform_user", "instrument", "institution"):
            conn.execute(f"DELETE FROM {table}")
        with conn.cursor() as cur:
            for iid, parent in world.parents.items():  # parents first
                cur.execute("INSERT INTO institution (id, name, parent_id) VALUES (%s, %s, %s)",
                            (iid, iid, parent))
            cur.executemany(
                "INSERT INTO instrument (id, name, institution_id, warmup_s, cooldown_s,"
                " min_session_s) VALUES (%s, %s, %s, %s, %s, %s)",
                [(i.id, i.id, i.institution_id, i.warmup_s, i.cooldown_s, i.min_session_s)
                 for i in world.instruments])
            cur.executemany(
                "INSERT INTO platform_user (id, institution_id, organisation, approved)"
                " VALUES (%s, %s, %s, %s)",
                [(u.id, u.institution_id, u.organisation, u.approved) for u in world.users])
            # the gateways report until now: past months are final for the usage rollup
            cur.executemany(
                "INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
                " VALUES (%s, %s, 'idle', 'gw', 0)", list(world.heard.items()))
            cur.executemany(
                "INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(s.instrument_id, s.start, s.end, s.last, s.user_id) for s in world.sessions])
            cur.executemany(
                "INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [(b.instrument_id, b.user_id, b.kind, b.start, b.end, b.status)
                 for b in world.bookings])
            cur.executemany(
                "INSERT INTO certification (user_id, instrument_id, level, valid_from,"
                " valid_until, revoked_at) VALUES (%s, %s, 'self', %s, %s, %s)",
                [(c.user_id, c.instrument_id, c.valid_from, c.valid_until, c.revoked_at)
                 for c in world.certifications])


async def _query(
    url: str, lo: datetime, hi: datetime, parallel: int
) -> tuple[list[dict[str, Any]], int]:
    """The report's rows, and how many connections it used."""
    opened = 0

    @asynccontextmanager
    async def connect() -> AsyncIterator[AsyncConnection[DictRow]]:
        nonlocal opened
        opened += 1
        async with await AsyncConnection.connect(
            url, row_factory=dict_row, options="-c TimeZone=UTC"
        ) as conn, conn.transaction():
            yield conn

    rows = await per_instrument(
        connect, lo=lo, hi=hi, timeout=TIMEOUT, grace=GRACE, institutions=None,
        category=None, region=None, working_days=30, with_availability=False,
        parallel=parallel)
    return rows, opened


def _months(first: date, last: date) -> tuple[date, date]:
    """The first day of ``first``'s month and the last of ``last``'s."""
    after = (last.replace(day=1) + timedelta(days=32)).replace(day=1)
    return first.replace(day=1), after - timedelta(days=1)


def _check(url: str, world: World) -> None:
    for (first, days), parallel in itertools.product(
        ((0, 1), (1, 1), (0, 3), (-1, 6), (2, 2)), (1, 3)  # one statement, or runs of instruments
    ):
        lo, hi = period_bounds(FIRST_DAY + timedelta(days=first),
                               FIRST_DAY + timedelta(days=first + days - 1))
        rows, opened = asyncio.run(_query(url, lo, hi, parallel))
        assert opened == 1 + min(parallel, len(world.instruments)), "the selection, each run"
        _compare(rows, world, lo, hi, f"{parallel} runs")
    # Whole months: computed and rolled up, then read back from the rollup (an instrument
    # with a session still open is not final and goes on being computed from its sessions).
    # Then periods of rolled-up months and days before or after them, which cut sessions.
    months: set[date] = set()
    first_day, last_day = _months(FIRST_DAY - timedelta(days=40), FIRST_DAY + timedelta(days=6))
    for start, end in (_months(FIRST_DAY, FIRST_DAY), (first_day, last_day),
                       (first_day, FIRST_DAY + timedelta(days=2)),
                       (first_day + timedelta(days=5), FIRST_DAY + timedelta(days=2)),
                       (first_day + timedelta(days=5), last_day)):
        lo, hi = period_bounds(start, end)
        months.update(MonthSplit.of(lo, hi, now=datetime.now(UTC)).months)
        for attempt in ("first", "again"):
            rows, _ = asyncio.run(_query(url, lo, hi, 2))
            _compare(rows, world, lo, hi, f"{attempt} report")
    # final: no session still open, and heard from since (not i2, silent since the third
    # day, nor i4, never heard)
    recent = datetime.now(UTC) - timedelta(days=1)
    final = [i.id for i in world.instruments
             if not any(s.end is None and s.instrument_id == i.id for s in world.sessions)
             and world.heard.get(i.id, recent) > recent]
    with psycopg.connect(url) as conn:
        rolled = conn.execute("SELECT count(*) FROM session_month WHERE instrument_id = ANY(%s)",
                              (final,)).fetchone()
    assert rolled == (len(final) * len(months),), "every month of the final instruments"


def _compare(rows: list[dict[str, Any]], world: World, lo: datetime, hi: datetime,
             how: str) -> None:
    truth = expected(world, lo, hi, GRACE, datetime.now(UTC))
    assert [r["instrument_id"] for r in rows] == sorted(truth)
    for row in rows:
        want: Figures = truth[row["instrument_id"]]
        where = f"{row['instrument_id']} in [{lo}, {hi}), {how}"
        for name in ("sessions", "uncertified_sessions", "bookings", "no_shows"):
            assert row[name] == getattr(want, name), f"{name} of {where}"
        for name in ("effective_s", "running_s", "external_s", "uncertified_s",
                     "unattributed_s", "booked_s"):
            assert row[name] == pytest.approx(getattr(want, name), abs=1e-6), \
                f"{name} of {where}"
        assert set(row["outside_users"]) == want.outside_users, where
        assert sorted(row["outside_orgs"]) == sorted(want.outside_orgs), where


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_report_equals_reference_before_and_after_late_data(
    database_url: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "PARALLEL_MIN_INSTRUMENTS", 1)  # split even small reports
    rng = random.Random(seed)
    world = _world(rng)
    _store(database_url, world)
    _check(database_url, world)
    _late_data(world, rng)
    _store(database_url, world)
    _check(database_url, world)


def test_reference_sees_what_it_should() -> None:
    """Guards the guard: the random worlds exercise every rule at least once."""
    rng = random.Random(1)
    world = _world(rng)
    lo, hi = period_bounds(FIRST_DAY, FIRST_DAY + timedelta(days=2))
    figures = expected(world, lo, hi, GRACE, datetime.now(UTC)).values()
    assert sum(f.sessions for f in figures) > 10
    assert all(sum(getattr(f, k) for f in figures) > 0 for k in (
        "external_s", "uncertified_s", "unattributed_s", "booked_s", "no_shows"))
    assert any(f.bookings > f.no_shows for f in figures)
    assert any(s.end is None for s in world.sessions)
    booked = [b for s in world.sessions
              if s.user_id is None and (b := booking_of(world, s, GRACE)) is not None]
    assert {b.kind == "self" for b in booked} == {True, False}, "who operated, who did not"
    assert any(c.revoked_at is not None and c.revoked_at < c.valid_from
               for c in world.certifications)
