"""How a report's period is cut into rolled-up months and the days around them."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from monitor_api.queries.session_month import MonthSplit
from monitor_api.report import SHANGHAI, period_bounds


def _at(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI)


NOW = _at(date(2026, 11, 29), 12)


@pytest.mark.parametrize(("start", "end", "months", "parts"), [
    # whole months: no parts
    (date(2025, 1, 1), date(2025, 12, 31), (date(2025, 1, 1), date(2025, 12, 1)), []),
    # days before and after
    (date(2025, 3, 15), date(2025, 9, 10), (date(2025, 4, 1), date(2025, 8, 1)),
     [(date(2025, 3, 15), _at(date(2025, 3, 15)), _at(date(2025, 4, 1))),
      (date(2025, 9, 1), _at(date(2025, 9, 1)), _at(date(2025, 9, 11)))]),
    # this year to its end: the months up to October, then the rest, partly in the future
    (date(2026, 1, 1), date(2026, 12, 31), (date(2026, 1, 1), date(2026, 10, 1)),
     [(date(2026, 11, 1), _at(date(2026, 11, 1)), _at(date(2027, 1, 1)))]),
    # no whole month inside
    (date(2026, 3, 2), date(2026, 3, 31), None, []),
    (date(2026, 2, 20), date(2026, 3, 10), None, []),
])
def test_a_period_is_cut_at_the_months_that_can_be_final(
    start: date, end: date, months: tuple[date, date] | None,
    parts: list[tuple[date, datetime, datetime]],
) -> None:
    split = MonthSplit.of(*period_bounds(start, end), now=NOW)
    if months is None:
        assert split.months == [] and split.parts == []
        return
    assert (split.months[0], split.months[-1]) == months
    assert len(split.months) == (months[1].year - months[0].year) * 12 \
        + months[1].month - months[0].month + 1
    assert split.parts == parts
    assert split.params()["first_month"] == min(start, months[0])


def test_a_month_is_not_final_until_a_day_after_it_ended() -> None:
    october = period_bounds(date(2026, 10, 1), date(2026, 10, 31))
    assert MonthSplit.of(*october, now=_at(date(2026, 11, 1), 23)).months == []
    assert MonthSplit.of(*october, now=_at(date(2026, 11, 2))).months == [date(2026, 10, 1)]
