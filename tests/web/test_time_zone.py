"""The dashboard keeps China Standard Time whatever the browser's zone: the platform's days
(metrics.md) and its exports are in Asia/Shanghai, so a laptop set to UTC or abroad must show
and take the times a lab in Shenyang reads on its wall clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.web.stack import SHANGHAI, Stack
from tests.web.test_dashboard import STRINGS, NewPage, login

FAR_ZONES = pytest.mark.parametrize(
    ("zone", "locale"),
    [("America/Los_Angeles", "en-US"), ("UTC", "zh-CN")],  # 15-16 and 8 hours behind
    ids=["los_angeles-en", "utc-zh"],
)


def shown(t: datetime, lang: str) -> str:
    """How the dashboard writes ``t``: on Shanghai's clock, 2026/11/30 14:21 in Chinese and
    2026-11-30 14:21 in English."""
    return t.astimezone(SHANGHAI).strftime("%Y/%m/%d %H:%M" if lang == "zh" else "%Y-%m-%d %H:%M")


@FAR_ZONES
def test_shown_times_are_china_standard_time(
    stack: Stack, new_page: NewPage, zone: str, locale: str
) -> None:
    lang = locale[:2]
    page = new_page(timezone_id=zone, locale=locale)
    login(page, stack, "evaluator")
    since = f"{STRINGS[lang]['board.since']} {shown(stack.seeded_at - timedelta(hours=1), lang)}"
    expect(page.locator('.tile[data-instrument="nmr-600"] .tile-meta')).to_contain_text(since)

    page.click('.tile[data-instrument="nmr-600"]')
    expect(page.locator(".charts")).to_have_attribute("data-loaded", "true")
    expect(page.locator(".status-line")).to_contain_text(since)
    expect(page.locator('form.range [data-zone="+08:00"]')).to_have_text(
        STRINGS[lang]["common.zone"])
    # the last 24 h, its end now on Shanghai's clock
    end = datetime.fromisoformat(page.input_value("#range-end")).replace(tzinfo=SHANGHAI)
    assert abs(end - datetime.now(UTC)) < timedelta(minutes=2)
    # the power chart's ticks fall on whole hours of Shanghai's clock and are labelled with them
    ticks: list[tuple[float, str]] = page.evaluate(
        """() => Chart.getChart(document.querySelector('canvas[data-chart="power"]'))
            .scales.x.ticks.map(t => [t.value, t.label])""")
    assert len(ticks) >= 2
    step_h = round((ticks[1][0] - ticks[0][0]) / 3600e3)
    for n, (value, label) in enumerate(ticks):
        at = datetime.fromtimestamp(value / 1000, SHANGHAI)
        assert at.minute == 0 and at.hour % step_h == 0, at
        day = f"{at.month}/{at.day}" if lang == "zh" else at.strftime("%m-%d")
        hour = at.strftime("%H:%M")
        if at.hour == 0:
            assert label == day, (at, label)
        else:  # the first tick names its day too, which the range begins on
            assert label == (f"{day} {hour}" if n == 0 else hour), (at, label)

    before = datetime.now(SHANGHAI).date()
    page.click('.nav a[href="#/utilisation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    assert date.fromisoformat(page.input_value("#period-end")) in (
        before, datetime.now(SHANGHAI).date())  # today in Shanghai, even about midnight


@FAR_ZONES
def test_days_and_years_are_counted_in_shanghai(
    stack: Stack, new_page: NewPage, zone: str, locale: str
) -> None:
    """At 06:00 on New Year's Day in Shanghai both far zones are still in the year before, so
    whatever the hour the test runs at, a page counting in the browser's zone is caught."""
    lang = locale[:2]
    year = datetime.now(SHANGHAI).year
    page = new_page(timezone_id=zone, locale=locale)
    page.clock.set_fixed_time(datetime(year, 1, 1, 6, tzinfo=SHANGHAI))
    login(page, stack, "admin")

    page.click('.nav a[href="#/utilisation"]')
    report = page.locator(".report")
    expect(report).to_have_attribute("data-loaded", "true")
    assert page.input_value("#period-end") == f"{year}-01-01"
    assert page.input_value("#period-start") == f"{year - 1}-12-03"  # 30 days, both counted
    page.get_by_role("button", name=STRINGS[lang]["util.this_year"]).click()
    expect(page.locator("#period-start")).to_have_value(f"{year}-01-01")
    expect(page.locator("#period-end")).to_have_value(f"{year}-01-01")
    expect(report).to_have_attribute("data-loaded", "true")

    page.click('.nav a[href="#/evaluation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    expect(page.locator("#eval-year")).to_have_value(str(year))
    expect(page.locator("#eval-covers")).to_have_text(STRINGS[lang]["eval.provisional"])
    expect(page.locator('[data-publishable="later"]')).to_have_text(  # not over in Shanghai
        STRINGS[lang]["pub.after_year"].replace("{date}", f"{year + 1}-01-01"))


@FAR_ZONES
def test_a_booking_is_entered_in_china_standard_time(
    stack: Stack, new_page: NewPage, zone: str, locale: str
) -> None:
    lang = locale[:2]
    tomorrow = (datetime.now(SHANGHAI) + timedelta(days=1)).date()
    day = tomorrow + timedelta(days=2)
    page = new_page(timezone_id=zone, locale=locale)
    login(page, stack, "outside_user")
    page.click('.nav a[href="#/bookings"]')
    expect(page.locator('[data-page="bookings"] .report')).to_have_attribute("data-loaded", "true")
    expect(page.locator('form.booking-form [data-zone="+08:00"]')).to_have_text(
        STRINGS[lang]["common.zone"])
    # the suggested slot: tomorrow 09:00-11:00 in Shanghai
    expect(page.locator("#book-start")).to_have_value(f"{tomorrow}T09:00")
    expect(page.locator("#book-end")).to_have_value(f"{tomorrow}T11:00")

    page.select_option("#book-instrument", "nmr-600")
    page.fill("#book-start", f"{day}T09:00")
    page.fill("#book-end", f"{day}T11:00")
    page.click("form.booking-form button[type=submit]")
    expect(page.locator(".notice-ok")).to_contain_text(STRINGS[lang]["book.requested_ok"])
    [(booking, start, end)] = stack.sql(
        "SELECT id, start_ts, end_ts FROM booking WHERE user_id = 'u-out'"
        " AND status = 'requested'")
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert (start, end) == (midnight + timedelta(hours=1), midnight + timedelta(hours=3))
    row = page.locator(f'tr[data-id="{booking}"]')  # and listed as entered
    expect(row.locator('td[data-key="start"]')).to_have_text(shown(start, lang))
    expect(row.locator('td[data-key="end"]')).to_have_text(shown(end, lang))
