"""Lists longer than a page of the API in a real browser: what a chart draws and a table says.

The API gives at most 1,000 items a request, fewer than a province's instruments or a busy
instrument's state changes over a month. Rather than seed thousands, the browser's requests
under a path are given a smaller page (the server answers them as it would any client), so
the seeded instruments and intervals run over several pages.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from playwright.sync_api import Page, Response, Route, expect

from tests.web.conftest import PHONE
from tests.web.stack import INSTRUMENTS, Stack
from tests.web.test_dashboard import (
    INSTITUTION_NAMES,
    OWNER,
    STRINGS,
    NewPage,
    _bookings_page,
    chart,
    login,
)

MINUTE_MS = 60e3


def in_pages_of(page: Page, size: int, path: str) -> None:
    """Ask the API for at most ``size`` items a request for a page under ``/path``."""
    def smaller(route: Route) -> None:
        url = urlsplit(route.request.url)
        query = dict(parse_qsl(url.query))
        if "limit" in query:
            query["limit"] = str(min(int(query["limit"]), size))
        route.continue_(url=url._replace(query=urlencode(query)).geturl())

    page.route(lambda url: urlsplit(url).path.startswith(f"/{path}"), smaller)


def test_the_timeline_runs_to_the_end_of_the_range(stack: Stack, new_page: NewPage) -> None:
    """nmr-600's last day holds about 17 intervals (running an hour in three): given 4 a page,
    the timeline still shows them all, up to now, not the first hours of the day alone."""
    page = new_page()
    in_pages_of(page, 4, "instruments/nmr-600/timeline")
    login(page, stack, "evaluator")
    page.click('.tile[data-instrument="nmr-600"]')
    expect(page.locator(".charts")).to_have_attribute("data-loaded", "true")
    drawn = chart(page, "timeline")
    bars = [bar["x"] for dataset in drawn["datasets"] for bar in dataset["data"]]
    assert len(bars) > 12
    assert max(end for _, end in bars) > drawn["max"] - 10 * MINUTE_MS


def test_grades_count_every_instrument_and_tables_say_they_show_a_page(
    stack: Stack, new_page: NewPage
) -> None:
    """Given 2 instruments a page, the grade chart still counts all five (not the two best),
    drawn from the counts of the whole list the first page carries, with no further page
    asked (each would score the year again); and the tables of a page of a list say how many
    they show of how many, in the page's language, and that the exports hold every row."""
    page = new_page(viewport=PHONE, locale="zh-CN")
    in_pages_of(page, 2, "evaluation")
    graded: list[tuple[dict[str, str], Any]] = []  # each instrument page asked, and its body

    def keep(response: Response) -> None:
        url = urlsplit(response.url)
        if url.path.startswith("/evaluation/") and url.path.endswith("/instruments"):
            graded.append((dict(parse_qsl(url.query)), response.json()))

    page.on("response", keep)
    login(page, stack, "evaluator")
    page.click('.nav a[href="#/evaluation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    expect(page.locator('canvas[data-chart="grades"]')).to_be_visible()
    page.wait_for_timeout(500)  # time for any further page the chart would ask
    assert [(query.get("offset"), len(body["items"])) for query, body in graded] == [(None, 2)]
    counts = graded[0][1]["grades"]
    assert chart(page, "grades")["datasets"][0]["data"] == [
        counts[g] for g in ("优秀", "良好", "合格", "不合格")]
    assert sum(counts.values()) == len(INSTRUMENTS)
    expect(page.locator('table[data-table="instruments"] tbody tr')).to_have_count(2)
    expect(page.locator('[data-section="instruments"] [data-more]')).to_have_text(
        STRINGS["zh"]["table.more"].replace("{shown}", "2").replace(
            "{total}", str(len(INSTRUMENTS))))
    expect(page.locator('[data-section="silent"] [data-more]')).to_have_count(0)  # one: all


def test_an_emptied_year_asks_the_api_nothing(stack: Stack, new_page: NewPage) -> None:
    """The year is required: emptied, it is not sent as year 0 for the API to refuse."""
    page = new_page()
    login(page, stack, "evaluator")
    page.click('.nav a[href="#/evaluation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/evaluation/" in r.url else None)
    page.fill("#eval-year", "")
    page.click('form.filters button[type="submit"] >> nth=0')
    page.wait_for_timeout(1000)  # time for requests the click would send
    assert asked == []
    expect(page.locator('[data-section="instruments"]')).to_be_visible()  # the year shown stays


def test_tiles_entries_and_bookings_name_each_unit_however_many_the_province_registers(
    stack: Stack, new_page: NewPage
) -> None:
    """The board's tiles, the registry entry, the catalogue queue and the bookings name each
    instrument's unit as the API gives it, the id on hover, not from a list of names: with
    that list cut to one unit a request (dut, the first by id), as a province past the 1,000
    a page of the API holds has it, neu's and neu-ac's instruments are named too."""
    owner = {**OWNER, "icp-2": "neu-ac"}
    stack.sql("INSERT INTO instrument (id, name, institution_id)"
              " VALUES ('icp-2', '电感耦合等离子体质谱仪', 'neu-ac')")  # not listed: in the queue
    admin = new_page()
    in_pages_of(admin, 1, "institutions")
    login(admin, stack, "admin")
    for instrument, unit in owner.items():
        tile = admin.locator(f'.tile[data-instrument="{instrument}"] .tile-id')
        expect(tile).to_have_text(f"{instrument} · {INSTITUTION_NAMES[unit]}")
        expect(tile).to_have_attribute("title", unit)
    admin.click('.tile[data-instrument="nmr-600"]')
    admin.locator("details.registry summary").click()
    entry = admin.locator("details.registry dl")
    expect(entry.locator("dt").nth(1)).to_have_text(STRINGS["en"]["field.institution"])
    expect(entry.locator("dd").nth(1)).to_have_text(f"{INSTITUTION_NAMES['neu-ac']} (neu-ac)")
    admin.click('.nav a[href="#/catalogue"]')
    queued = admin.locator('table[data-table="catalogue"] td[data-key="institution_name"] span')
    expect(queued).to_have_text([INSTITUTION_NAMES["neu-ac"]])  # icp-2's
    expect(queued).to_have_attribute("title", "neu-ac")

    user = new_page()
    in_pages_of(user, 1, "institutions")
    _bookings_page(user, stack, "outside_user")
    expect(user.locator('#book-instrument option[value="nmr-600"]')).to_have_text(
        f"600 MHz 核磁共振波谱仪 (nmr-600) · {INSTITUTION_NAMES['neu-ac']}")
    booked = user.locator('table[data-table="bookings"] td[data-key="instrument_id"]'
                          " .booking-unit")
    expect(booked).to_have_text([INSTITUTION_NAMES["neu-ac"]])  # the seeded nmr-600 service
    expect(booked).to_have_attribute("title", "neu-ac")
