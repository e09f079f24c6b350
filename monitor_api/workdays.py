"""Working days on the official Chinese calendar (holidays and make-up working days, 调休)."""

from __future__ import annotations

from datetime import date, timedelta

import chinese_calendar

from monitor_api.errors import BadRequest


def is_workday(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError as exc:
        raise BadRequest(f"the official calendar for {day.year} is not known yet") from exc


def add_working_days(start: date, days: int) -> date:
    """The ``days``-th working day after ``start`` (``start`` itself is not counted)."""
    current, left = start, days
    while left > 0:
        current += timedelta(days=1)
        if is_workday(current):
            left -= 1
    return current


def working_days_between(after: date, until: date) -> int:
    """Working days in (after, until]; 0 when ``until`` is not later than ``after``."""
    count, current = 0, after
    while current < until:
        current += timedelta(days=1)
        if is_workday(current):
            count += 1
    return count
