"""Working days on the official Chinese calendar (holidays and make-up working days, 调休).

The ``chinesecalendar`` package knows a fixed range of years (2004-2026 in 1.11.0). Outside
it Monday to Friday count as working days and the result is marked *estimated*, so one
instrument with an unusual date never makes a whole list fail.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

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
    return _working_days_to(day.year) is not None


def is_workday(day: date) -> bool:
    """Official calendar where known, otherwise Monday to Friday."""
    return _working_days_in(day, day) == 1 if is_known(day) else day.weekday() < 5


def add_working_days(start: date, days: int) -> Deadline:
    """The ``days``-th working day after ``start`` (``start`` itself is not counted), found a
    year at a time where the calendar knows the year."""
    current, left, estimated = start, days, False
    while left > 0:
        if current == date.max:
            return Deadline(current, True)
        first = current + timedelta(days=1)
        counts = _working_days_to(first.year)
        if counts is None:  # Monday to Friday, a day at a time
            current, estimated = first, True
            left -= first.weekday() < 5
            continue
        before = _working_days_before(first, counts)
        if counts[-1] - before >= left:  # the day falls in this year
            day = date(first.year, 1, 1) + timedelta(days=bisect_left(counts, before + left))
            return Deadline(day, estimated)
        left -= counts[-1] - before
        current = date(first.year, 12, 31)
    return Deadline(current, estimated)


def working_days_between(after: date, until: date) -> DayCount:
    """Working days in (after, until]; 0 when ``until`` is not later than ``after``.

    Counted a year at a time, from the year's table where the calendar knows it, else
    arithmetically (Monday to Friday), so a span of centuries costs no more than its years."""
    count, estimated = 0, False
    current = after
    while current < until:
        first = current + timedelta(days=1)
        last = min(until, date(first.year, 12, 31))
        if is_known(first):
            count += _working_days_in(first, last)
        else:
            estimated = True
            count += _weekdays(first, last)
        current = last
    return DayCount(count, estimated)


@cache
def _working_days_to(year: int) -> tuple[int, ...] | None:
    """Working days of ``year`` up to and including each of its days (index 0: 1 January),
    read from the official calendar once per year: it takes tens of microseconds a day, and
    a registry's deadlines and spans ask it for thousands of days. None for a year it does
    not know."""
    first = date(year, 1, 1)
    try:
        chinese_calendar.is_workday(first)
    except NotImplementedError:
        return None
    counts, total = [], 0
    for offset in range((date(year, 12, 31) - first).days + 1):
        total += bool(chinese_calendar.is_workday(first + timedelta(days=offset)))
        counts.append(total)
    return tuple(counts)


def _working_days_in(first: date, last: date) -> int:
    """Working days in [first, last], two days of one year the calendar knows."""
    counts = _working_days_to(first.year)
    assert counts is not None and first.year == last.year
    return counts[last.timetuple().tm_yday - 1] - _working_days_before(first, counts)


def _working_days_before(day: date, counts: tuple[int, ...]) -> int:
    """Working days of ``day``'s year before it, ``counts`` being that year's table."""
    index = day.timetuple().tm_yday - 1
    return counts[index - 1] if index else 0


def _weekdays(first: date, last: date) -> int:
    """Monday-to-Friday days in [first, last]."""
    total = (last - first).days + 1
    weeks, rest = divmod(total, 7)
    start = first.weekday()
    return weeks * 5 + sum(1 for k in range(rest) if (start + k) % 7 < 5)
