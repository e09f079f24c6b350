"""Registration deadlines on the official calendar: Spring Festival 2026 and make-up days."""

from __future__ import annotations

import random
from datetime import date, timedelta

import chinese_calendar

from monitor_api.workdays import (
    DayCount,
    Deadline,
    add_working_days,
    is_workday,
    working_days_between,
)
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
    assert add_working_days(date(2026, 1, 20), 30) == Deadline(date(2026, 3, 9), False)
    # A Monday-to-Friday count would give 3 Mar: the calendar matters.
    assert working_days_between(date(2026, 1, 20), date(2026, 3, 9)) == DayCount(30, False)


def test_deadline_falls_on_make_up_saturday() -> None:
    # From Mon 5 Jan 2026: 6-9 Jan = 4, then four full weeks = 24, 9-13 Feb = 29, Sat 14 Feb = 30.
    assert add_working_days(date(2026, 1, 5), 30) == Deadline(date(2026, 2, 14), False)


def test_unknown_years_count_monday_to_friday_and_say_so() -> None:
    # 2099-01-01 is a Thursday: Fri 2, Mon 5 - Thu 8 Jan are the next five weekdays.
    assert add_working_days(date(2099, 1, 1), 5) == Deadline(date(2099, 1, 8), True)
    # Thu 24 Dec 2026 (known) into 2027 (unknown): 25, 28-31 Dec = 5 known, then Mon-Fri.
    assert add_working_days(date(2026, 12, 24), 30) == Deadline(date(2027, 2, 4), True)
    assert working_days_between(date(2026, 12, 24), date(2027, 2, 4)) == DayCount(30, True)
    # 1999 (unknown) into 2004 (known): one week of 2003 counted Mon-Fri, 2004 official.
    assert working_days_between(date(2003, 12, 24), date(2003, 12, 31)) == DayCount(5, True)
    assert working_days_between(date(2003, 12, 31), date(2004, 1, 2)) == DayCount(1, False)
    # whole centuries are counted at once, not day by day
    assert working_days_between(date(1, 1, 1), date(1, 1, 7)).days == 4  # Mon 1 Jan: Tue-Fri
    assert working_days_between(date(1, 1, 1), date(9999, 12, 31)).estimated
    assert add_working_days(date(9999, 12, 30), 5) == Deadline(date(9999, 12, 31), True)


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
    assert items["late1"]["deadline_estimated"] is False
    # Registry amounts are exact decimals, as in the instrument records, in both lists.
    assert items["late1"]["value_rmb"] == "300000.00"
    with api.as_("evaluator") as c:
        listed = c.get("/evaluation/overdue-registrations", params={"as_of": "2026-03-10"})
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == r.json()["items"]


def test_unknown_calendar_years_are_estimated_per_instrument(api: Api) -> None:
    # 'late26' was accepted in late 2026: its deadline falls in 2027, which the calendar
    # package does not know; 'old' was accepted before 2004. Neither breaks the lists.
    api.sql(
        "INSERT INTO instrument (id, name, institution_id, value_rmb, accepted_on, networked_on)"
        " VALUES ('late26', 'a', 'uni', 300000, '2026-12-24', NULL),"
        " ('old', 'b', 'uni', 900000, '2001-03-01', '2001-06-01'),"
        " ('fine', 'c', 'other', 900000, '2026-01-20', '2026-03-10')"
    )
    with api.as_("admin") as c:
        r = c.get("/compliance/overdue", params={"as_of": "2027-03-01"})
        assert r.status_code == 200, r.text
        items = {i["instrument_id"]: i for i in r.json()["items"]}
        # 2001-03-01 (Thu) to 2001-06-01 (Fri): 66 weekdays, 36 over the limit
        assert items["old"]["deadline_estimated"] is True
        assert items["old"]["working_days_late"] == 36
        assert items["old"]["deadline"] == "2001-04-12"
        # deadline Thu 4 Feb 2027; 1 Mar 2027 is 17 weekdays later
        assert items["late26"]["deadline"] == "2027-02-04"
        assert items["late26"]["deadline_estimated"] is True
        assert items["late26"]["working_days_late"] == 17
        assert items["fine"]["deadline_estimated"] is False
        csv = c.get("/evaluation/overdue-registrations",
                    params={"as_of": "2027-03-01", "format": "csv", "lang": "en"})
        assert csv.status_code == 200, csv.text
        lines = csv.content.decode("utf-8-sig").splitlines()
        assert "Deadline estimated" in lines[0].split(",")
        for path in ("/evaluation/2026/instruments", "/evaluation/2026/institutions",
                     "/evaluation/2027/instruments", "/evaluation/overdue-registrations"):
            assert c.get(path).status_code == 200, path


def _official_or_weekday(day: date) -> bool:
    """The calendar asked day by day, as the yearly tables must agree with."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return day.weekday() < 5


def test_yearly_tables_agree_with_the_calendar_day_by_day() -> None:
    """Deadlines and spans across known and unknown years, year ends and leap days give what
    counting each day on the official calendar gives."""
    rng = random.Random(7)
    for _ in range(120):
        after = date(2002, 6, 1) + timedelta(days=rng.randrange(26 * 365))
        until = after + timedelta(days=rng.randrange(500))
        days = [after + timedelta(days=n) for n in range(1, (until - after).days + 1)]
        assert working_days_between(after, until).days == sum(map(_official_or_weekday, days))
        owed = rng.randrange(1, 90)
        deadline, left = after, owed
        while left:
            deadline += timedelta(days=1)
            left -= _official_or_weekday(deadline)
        assert add_working_days(after, owed).day == deadline, (after, owed)
