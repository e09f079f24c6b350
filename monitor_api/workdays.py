"""Working days on the official Chinese calendar (holidays and make-up working days, 调休).

The ``chinesecalendar`` package knows a fixed range of years (2004-2026 in 1.11.0). Outside
it Monday to Friday count as working days and the result is marked *estimated*, so one
instrument with an unusual date never makes a whole list fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import chinese_calendar


@dataclass(frozen=True, slots=True)
class Deadline:
    """The last day allowed, and whether any day of it was counted Monday to Friday."""

    day: date
    estimated: bool


@dataclass(frozen=True, slots=True)
class DayCount:
    """A number of working days, and whether any of them was counted Monday to Friday."""

    days: int
    estimated: bool


def is_known(day: date) -> bool:
    """True when the official calendar covers ``day``'s year."""
    try:
        chinese_calendar.is_workday(day)
    except NotImplementedError:
        return False
    return True


def is_workday(day: date) -> bool:
    """Official calendar where known, otherwise Monday to Friday."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return day.weekday() < 5


def add_working_days(start: date, days: int) -> Deadline:
    """The ``days``-th working day after ``start`` (``start`` itself is not counted)."""
    current, left, estimated = start, days, False
    while left > 0:
        if current == date.max:
            return Deadline(current, True)
        current += timedelta(days=1)
        estimated = estimated or not is_known(current)
        if is_workday(current):
            left -= 1
    return Deadline(current, estimated)


def working_days_between(after: date, until: date) -> DayCount:
    """Working days in (after, until]; 0 when ``until`` is not later than ``after``.

    Years the calendar does not know are counted arithmetically (Monday to Friday), so a
    span of centuries costs no more than the known years in it."""
    count, estimated = 0, False
    current = after
    while current < until:
        first = current + timedelta(days=1)
        year_end = date(first.year, 12, 31)
        last = min(until, year_end)
        if is_known(first):
            day = first
            while day <= last:
                count += is_workday(day)
                day += timedelta(days=1)
        else:
            estimated = True
            count += _weekdays(first, last)
        current = last
    return DayCount(count, estimated)


def _weekdays(first: date, last: date) -> int:
    """Monday-to-Friday days in [first, last]."""
    total = (last - first).days + 1
    weeks, rest = divmod(total, 7)
    start = first.weekday()
    return weeks * 5 + sum(1 for k in range(rest) if (start + k) % 7 < 5)
