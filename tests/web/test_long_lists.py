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
from tests.web.test_dashboard import STRINGS, NewPage, chart, login

MINUTE_MS = 60e3


def in_pages_of(page: Page, size: int, path: str) -> None:
    """Ask the API for at most ``size`` items a request under ``/path``."""
    def smaller(route: Route) -> None:
        url = urlsplit(route.request.url)
        query = dict(parse_qsl(url.query))
        query["limit"] = str(min(int(query.get("limit", size)), size))
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
