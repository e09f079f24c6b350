"""Sessions without a reported user take the user of the booking they started in
(docs/metrics.md, "Users by booking"), in reports and in the monthly rollup.

Registry of tests/api/conftest.py: 'nmr' belongs to 'uni-ac' (under 'uni'); 'in1' is of
'uni' (inside), 'out1' of 'other' and 'firm1' of no institution (outside, two organisations).
Nobody is certified. The no-show grace is the default 30 min. Times are 10 March 2026 (+08).
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import pytest

from monitor_api.db import make_pool
from monitor_api.queries import metrics
from monitor_api.report import period_bounds
from tests.api.conftest import Api

MARCH = date(2026, 3, 1)


def _at(hhmm: str) -> str:
    return f"2026-03-10 {hhmm}+08"


def _sessions(api: Api, *rows: tuple[str, str, str | None]) -> None:
    """Sessions of nmr: (start, end, reported user)."""
    for start, end, user in rows:
        api.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
                " VALUES ('nmr', %s, %s, %s, %s)", (_at(start), _at(end), _at(end), user))


def _bookings(api: Api, *rows: tuple[str, str, str, str, str]) -> None:
    """Bookings of nmr: (user, kind, start, end, status)."""
    for user, kind, start, end, status in rows:
        api.sql("INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
                " VALUES ('nmr', %s, %s, %s, %s, %s)", (user, kind, _at(start), _at(end), status))


def _nmr(api: Api, start: str = "2026-03-10", end: str = "2026-03-10") -> dict[str, Any]:
    with api.as_("evaluator") as c:
        r = c.get("/reports/utilisation",
                  params={"start": start, "end": end, "availability": "false"})
    assert r.status_code == 200, r.text
    nmr: dict[str, Any] = {item["key"]: item for item in r.json()["items"]}["nmr"]
    return nmr


def _hours(nmr: dict[str, Any]) -> dict[str, Any]:
    return {k: nmr[k] for k in ("effective_hours", "external_hours", "unattributed_hours",
                                "uncertified_hours", "uncertified_sessions", "outside_users",
                                "outside_organisations")}


def _expect(effective: float, external: float, unattributed: float, uncertified: float,
            uncertified_sessions: int, users: int, orgs: int) -> dict[str, Any]:
    return {"effective_hours": pytest.approx(effective, abs=1e-4),
            "external_hours": pytest.approx(external, abs=1e-4),
            "unattributed_hours": pytest.approx(unattributed, abs=1e-4),
            "uncertified_hours": pytest.approx(uncertified, abs=1e-4),
            "uncertified_sessions": uncertified_sessions, "outside_users": users,
            "outside_organisations": orgs}


def test_the_reported_user_wins_over_the_booking(api: Api) -> None:
    _bookings(api, ("out1", "self", "09:00", "12:00", "approved"))
    _sessions(api, ("10:00", "11:00", "in1"), ("11:00", "11:30", None))
    # 10-11 is in1's (inside, reported: uncertified); 11-11:30 out1's (outside, self: uncertified)
    assert _hours(_nmr(api)) == _expect(1.5, 0.5, 0, 1.5, 2, 1, 1)


def test_booked_outside_users_count_as_external(api: Api) -> None:
    _bookings(api, ("out1", "assisted", "09:00", "10:00", "approved"),
              ("firm1", "sample", "13:00", "14:00", "completed"),
              ("out1", "assisted", "15:00", "16:00", "completed"))
    _sessions(api, ("09:00", "09:45", None), ("13:15", "14:15", None), ("15:00", "15:30", None),
              ("17:00", "17:30", None))
    # 45 min + 30 min out1's, 1 h firm1's; 17:00 nobody's
    assert _hours(_nmr(api)) == _expect(2.75, 2.25, 0.5, 0, 0, 2, 2)


def test_a_session_starting_in_the_grace_around_the_window_takes_the_booking(api: Api) -> None:
    _bookings(api, ("out1", "assisted", "10:00", "11:00", "approved"))
    # in the grace: 09:31 (29 min before), 11:20 (20 min after); outside it: 09:29 and
    # 11:30, the end of the widened window [09:30, 11:30)
    _sessions(api, ("09:29", "09:30", None), ("09:31", "09:45", None),
              ("11:20", "11:29", None), ("11:30", "11:35", None))
    assert _hours(_nmr(api)) == _expect(29 / 60, 23 / 60, 6 / 60, 0, 0, 1, 1)


def test_the_nearest_booking_wins_and_on_a_tie_the_later_one(api: Api) -> None:
    _bookings(api, ("in1", "assisted", "09:00", "10:00", "approved"),
              ("out1", "assisted", "10:20", "11:00", "approved"))
    # 10:05 is nearer in1's window, 10:15 out1's; 10:10 is 10 min from both: out1's (later)
    _sessions(api, ("10:05", "10:08", None), ("10:10", "10:12", None), ("10:15", "10:19", None))
    assert _hours(_nmr(api)) == _expect(9 / 60, 6 / 60, 0, 0, 0, 1, 1)
    found = api.sql("SELECT t, (SELECT user_id FROM session_booking('nmr', t, '30 min'))"
                    " FROM unnest(%s::timestamptz[]) t ORDER BY t",
                    ([_at(t) for t in ("08:29", "08:30", "10:05", "10:10", "10:15", "11:30")],))
    assert [user for _, user in found] == [None, "in1", "in1", "out1", "out1", None]


def test_bookings_not_approved_never_attribute(api: Api) -> None:
    _bookings(api, ("out1", "self", "09:00", "10:00", "cancelled"),
              ("out1", "self", "11:00", "12:00", "rejected"),
              ("out1", "self", "13:00", "14:00", "requested"),
              ("out1", "self", "15:00", "16:00", "void"))
    _sessions(api, ("09:10", "09:40", None), ("11:10", "11:40", None), ("13:10", "13:40", None),
              ("15:10", "15:40", None))
    assert _hours(_nmr(api)) == _expect(2, 0, 2, 0, 0, 0, 0)


def test_only_who_operated_the_instrument_needs_a_certification(api: Api) -> None:
    # out1 holds no certification: uncertified when running it (reported, or booked 'self'),
    # not when staff ran it for them (assisted) or ran their samples
    _bookings(api, ("out1", "assisted", "09:00", "10:00", "approved"),
              ("out1", "sample", "11:00", "12:00", "approved"),
              ("out1", "self", "13:00", "14:00", "approved"))
    _sessions(api, ("09:10", "09:40", None), ("11:10", "11:40", None), ("13:10", "13:40", None),
              ("15:00", "15:30", "out1"))
    assert _hours(_nmr(api)) == _expect(2, 2, 0, 1, 2, 1, 1)


@pytest.fixture
def final(api: Api) -> Api:
    """out1's self booking 09:00-10:00 and a session 09:10-09:40 without a reported user in
    March, which a sample on 2 April makes final for nmr (rolled up by a report)."""
    _bookings(api, ("out1", "self", "09:00", "10:00", "approved"))
    _sessions(api, ("09:10", "09:40", None))
    api.sql("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
            " VALUES ('nmr', '2026-04-02 00:00+08', 'idle', 'gw', 0)")
    return api


def _march(api: Api) -> dict[str, Any]:
    return _hours(_nmr(api, "2026-03-01", "2026-03-31"))


def _rolled(api: Api) -> list[tuple[Any, ...]]:
    return api.sql("SELECT instrument_id, month, grace FROM session_month ORDER BY 1, 2, 3")


BOOKED = _expect(0.5, 0.5, 0, 0.5, 1, 1, 1)
"""March with the session out1's."""

CHANGES = [
    ("UPDATE booking SET status = 'cancelled'", _expect(0.5, 0, 0.5, 0, 0, 0, 0)),
    ("UPDATE booking SET start_ts = start_ts + interval '1 hour',"
     " end_ts = end_ts + interval '1 hour'", _expect(0.5, 0, 0.5, 0, 0, 0, 0)),
    ("UPDATE booking SET user_id = 'in1'", _expect(0.5, 0, 0, 0.5, 1, 0, 0)),
    ("UPDATE booking SET kind = 'assisted'", _expect(0.5, 0.5, 0, 0, 0, 1, 1)),
    ("DELETE FROM booking", _expect(0.5, 0, 0.5, 0, 0, 0, 0)),
    ("UPDATE platform_user SET approved = false WHERE id = 'out1'",
     _expect(0.5, 0, 0, 0.5, 1, 0, 0)),
    ("UPDATE platform_user SET institution_id = 'uni' WHERE id = 'out1'",
     _expect(0.5, 0, 0, 0.5, 1, 0, 0)),
]
"""Booking and user changes, and March after them."""


@pytest.mark.parametrize(("change", "after"), CHANGES)
def test_a_booking_or_user_change_forgets_the_rolled_up_month(
    final: Api, change: str, after: dict[str, Any]
) -> None:
    assert _march(final) == BOOKED
    assert _rolled(final) == [("nmr", MARCH, timedelta(minutes=30))]
    final.sql(change)
    assert _rolled(final) == []
    assert _march(final) == after
    assert _rolled(final) == [("nmr", MARCH, timedelta(minutes=30))]


def test_approving_a_booking_forgets_the_month_and_the_next_report_counts_it(
    final: Api
) -> None:
    final.sql("UPDATE booking SET status = 'requested'")
    assert _march(final) == _expect(0.5, 0, 0.5, 0, 0, 0, 0)
    assert _rolled(final) != []
    final.sql("UPDATE booking SET status = 'approved'")
    assert _rolled(final) == []
    assert _march(final) == BOOKED


def test_a_booking_change_that_matters_not_keeps_the_month(final: Api) -> None:
    assert _march(final) == BOOKED
    final.sql("UPDATE booking SET note = 'NMR of sample 7', status = 'completed'")
    # days from any session without a reported user; and a request, which attributes nothing
    final.sql("INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
              " VALUES ('nmr', 'firm1', 'self', '2026-03-20 09:00+08', '2026-03-20 10:00+08',"
              " 'approved')")
    final.sql("INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
              " VALUES ('nmr', 'firm1', 'self', %s, %s, 'requested')",
              (_at("09:00"), _at("10:00")))
    assert _rolled(final) == [("nmr", MARCH, timedelta(minutes=30))]
    assert _march(final) == BOOKED


def test_each_grace_has_its_own_rollup(final: Api) -> None:
    # moved to 10:20-10:50, the session starts 20 min after out1's window: theirs with a
    # grace of 30 min, nobody's with one of 5 min
    final.sql("UPDATE usage_session SET start_ts = start_ts + interval '70 min',"
              " end_ts = end_ts + interval '70 min', last_ts = last_ts + interval '70 min'")

    async def march(grace: timedelta) -> dict[str, Any]:
        pool = make_pool(final.settings)
        await pool.open()
        try:
            lo, hi = period_bounds(MARCH, date(2026, 3, 31))
            rows = await metrics.per_instrument(
                pool.connection, lo=lo, hi=hi, timeout=timedelta(minutes=15), grace=grace,
                institutions=None, category=None, region=None, working_days=30,
                with_availability=False)
        finally:
            await pool.close()
        return {r["instrument_id"]: r for r in rows}["nmr"]

    def figures(grace: timedelta) -> tuple[float, float]:
        nmr = asyncio.run(march(grace))
        return nmr["external_s"], nmr["unattributed_s"]

    wide, narrow = timedelta(minutes=30), timedelta(minutes=5)
    assert figures(wide) == (1800, 0)
    assert figures(narrow) == (0, 1800)
    assert _rolled(final) == [("nmr", MARCH, narrow), ("nmr", MARCH, wide)]
    # read back from each grace's own row
    final.sql("UPDATE session_month SET unattributed_s = unattributed_s + 60")
    assert figures(wide) == (1800, 60)
    assert figures(narrow) == (0, 1860)
