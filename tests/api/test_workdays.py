"""Registration deadlines on the official calendar: Spring Festival 2026 and make-up days."""

from __future__ import annotations

from datetime import date

import pytest

from monitor_api.errors import BadRequest
from monitor_api.workdays import add_working_days, is_workday, working_days_between
from tests.api.conftest import Api


def test_calendar_facts_used_below() -> None:
    # Spring Festival 2026: 15-23 Feb off; Saturdays 14 Feb and 28 Feb are working days.
    assert not is_workday(date(2026, 2, 16))
    assert not is_workday(date(2026, 2, 23))
    assert is_workday(date(2026, 2, 14))
    assert is_workday(date(2026, 2, 28))
    assert is_workday(date(2026, 1, 4))  # Sunday make-up day after New Year


def test_deadline_across_spring_festival() -> None:
    # Counted by hand from Wed 21 Jan 2026: 3 + 5 + 5 + 5 (to 13 Feb) = 18, Sat 14 Feb = 19,
    # 15-23 Feb holiday, 24-27 Feb = 23, Sat 28 Feb = 24, 2-6 Mar = 29, Mon 9 Mar = 30.
    assert add_working_days(date(2026, 1, 20), 30) == date(2026, 3, 9)
    # A Monday-to-Friday count would give 3 Mar: the calendar matters.
    assert working_days_between(date(2026, 1, 20), date(2026, 3, 9)) == 30


def test_deadline_falls_on_make_up_saturday() -> None:
    # From Mon 5 Jan 2026: 6-9 Jan = 4, then four full weeks = 24, 9-13 Feb = 29, Sat 14 Feb = 30.
    assert add_working_days(date(2026, 1, 5), 30) == date(2026, 2, 14)


def test_unknown_year_is_a_clear_error() -> None:
    with pytest.raises(BadRequest, match="calendar"):
        add_working_days(date(2099, 1, 1), 5)


def test_overdue_registrations_endpoint(api: Api) -> None:
    api.sql(
        "INSERT INTO instrument (id, name, institution_id, value_rmb, accepted_on, networked_on)"
        " VALUES ('ontime', 'a', 'uni', 300000, '2026-01-20', '2026-03-09'),"
        " ('late1', 'b', 'uni', 300000, '2026-01-20', '2026-03-10'),"
        " ('holiday', 'c', 'uni', 400000, '2026-01-05', '2026-02-16'),"
        " ('cheap', 'd', 'uni', 299999.99, '2026-01-20', NULL),"
        " ('pending', 'e', 'other', 500000, '2026-01-20', NULL)"
    )
    with api.as_("admin") as c:
        r = c.get("/compliance/overdue", params={"as_of": "2026-03-10"})
    assert r.status_code == 200, r.text
    items = {i["instrument_id"]: i for i in r.json()["items"]}
    # 'holiday' joined on a holiday Monday after its Saturday deadline: still 30 working days.
    assert set(items) == {"late1", "pending"}
    assert items["late1"]["deadline"] == "2026-03-09"
    assert items["late1"]["working_days_late"] == 1
    assert items["pending"]["networked_on"] is None
    # A lab manager sees their own institution only.
    with api.as_("manager") as c:
        mine = c.get("/compliance/overdue", params={"as_of": "2026-03-10"}).json()
    assert [i["instrument_id"] for i in mine["items"]] == ["late1"]
