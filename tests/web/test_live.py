"""Pages that follow the live status stream: an instrument's page as its tile does, and the board
after the stream reconnects, drawn as a fresh load draws it."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

from playwright.sync_api import Page, Request, Route, expect

from gateway import Reading, SimulatedProbe
from tests.web.stack import Stack
from tests.web.test_dashboard import STRINGS, NewPage, login, tiles

STREAM = "**/status/stream*"


def open_streams(page: Page) -> list[Request]:
    """The status streams the page holds open, kept up to date as it opens and ends them."""
    streams: list[Request] = []

    def ended(request: Request) -> None:
        if request in streams:
            streams.remove(request)

    page.on("request", lambda r: streams.append(r) if "/status/stream" in r.url else None)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    return streams


def ending_at_once(page: Page) -> list[str]:
    """Every stream the page opens from now on ends right after its first bytes, as a broken
    connection does: the page reconnects (a second later, its first backoff) and reloads.
    Returns the streams opened, growing."""
    opened: list[str] = []

    def end(route: Route) -> None:
        opened.append(route.request.url)
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"},
                      body=": watching\n\n")

    page.route(STREAM, end)
    return opened


def reconnect(page: Page, opened: list[str], times: int = 2) -> None:
    """Wait until ``page`` has opened ``times`` more streams: the board of the last but one
    was read after whatever the test changed before. (Waiting in the page lets Playwright
    answer its requests meanwhile.)"""
    want = len(opened) + times
    deadline = time.monotonic() + 15
    while len(opened) < want:
        assert time.monotonic() < deadline, f"{len(opened)} streams opened, not {want}"
        page.wait_for_timeout(100)


def test_the_instrument_page_follows_its_state_live(
    stack: Stack, new_page: NewPage, live_gateway: SimulatedProbe
) -> None:
    """A lab manager watching one instrument sees its state, user and power change within
    seconds, as its tile does, without a reload, through a stream of that instrument alone;
    the page's stream ends when it is left."""
    page = new_page()
    streams = open_streams(page)
    login(page, stack, "neu_manager")
    expect(page.locator('.tile[data-instrument="icp-1"]')).to_have_attribute(
        "data-state", "idle", timeout=30_000)
    page.click('.tile[data-instrument="icp-1"]')
    expect(page.locator(".charts")).to_have_attribute("data-loaded", "true")
    badge = page.locator(".status-line .badge")
    expect(badge).to_have_attribute("data-state", "idle")
    expect(page.locator(".page-head .live")).to_have_attribute("data-live", "on")
    page.evaluate("window.__marker = 'still here'")

    started = time.monotonic()
    live_gateway.set(Reading(power_w=900.0, user="u-in"))
    expect(badge).to_have_attribute("data-state", "running", timeout=5_000)
    print(f"the page showed running {time.monotonic() - started:.2f} s after the probe changed")
    expect(page.locator(".status-line")).to_contain_text("User: 校内用户 (u-in)")
    expect(page.locator(".status-line")).to_contain_text("900 W")
    live_gateway.set(Reading(power_w=0.0))
    expect(badge).to_have_attribute("data-state", "off", timeout=5_000)
    expect(page.locator(".status-line")).not_to_contain_text("u-in")
    assert page.evaluate("window.__marker") == "still here", "the page was reloaded"

    assert len(streams) == 1
    # its own changes only, not those of every instrument of the manager's board
    assert parse_qsl(urlsplit(streams[0].url).query) == [("instrument_id", "icp-1")]
    page.click(".page-head a.back")  # the board opens its own stream; the page's has ended
    expect(page.locator(".tiles")).to_have_attribute("data-loaded", "true")
    expect(page.locator(".live")).to_have_attribute("data-live", "on")
    deadline = time.monotonic() + 5
    while len(streams) > 1 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(streams) == 1, [r.url for r in streams]


def test_a_reconnected_board_drops_the_instruments_that_left_it(
    stack: Stack, new_page: NewPage
) -> None:
    """xrd-1 moves to another institution while dut's manager watches: once the stream
    reconnects the board is as a fresh load draws it, without xrd-1."""
    page = new_page()
    opened = ending_at_once(page)
    login(page, stack, "dut_manager")
    assert tiles(page) == {"xrd-1": "fault", "ms-1": "off"}

    stack.sql("UPDATE instrument SET institution_id = 'neu' WHERE id = 'xrd-1'")
    reconnect(page, opened)
    fresh = new_page()
    login(fresh, stack, "dut_manager")
    assert tiles(fresh) == {"ms-1": "off"}
    expect(page.locator('.tile[data-instrument="xrd-1"]')).to_have_count(0)
    assert tiles(page) == tiles(fresh)
    expect(page.locator(".count-total")).to_have_text(fresh.locator(".count-total").inner_text())
    expect(page.locator('.chip[data-state="fault"]')).to_have_attribute("data-count", "0")


def test_an_empty_board_says_so_once_whatever_the_reconnects(
    stack: Stack, new_page: NewPage
) -> None:
    """dut's instruments all moved elsewhere: one "no instruments" line however often the stream
    reconnects, and none once an instrument is back."""
    stack.sql("UPDATE instrument SET institution_id = 'neu' WHERE institution_id = 'dut'")
    page = new_page()
    opened = ending_at_once(page)
    login(page, stack, "dut_manager")
    notes = page.locator(".tiles > p:visible")
    expect(notes).to_have_text([STRINGS["en"]["board.no_instruments"]])
    reconnect(page, opened, 3)
    expect(notes).to_have_text([STRINGS["en"]["board.no_instruments"]])

    stack.sql("UPDATE instrument SET institution_id = 'dut' WHERE id = 'ms-1'")
    reconnect(page, opened)
    expect(page.locator(".tile")).to_have_count(1)
    expect(notes).to_have_count(0)


def test_a_board_retrying_its_load_holds_one_stream(stack: Stack, new_page: NewPage) -> None:
    """The board's first two reads fail (the server busy): each stream they came with is
    closed before the next is opened, or a page would soon hold the six connections a
    browser gives a server, and hang."""
    page = new_page()
    streams = open_streams(page)
    failed: list[str] = []

    def busy(route: Route) -> None:
        if len(failed) < 2:
            failed.append(route.request.url)
            route.fulfill(status=503, json={"error": "unavailable", "message": "busy"})
        else:
            route.fallback()

    page.route(lambda url: urlsplit(url).path.endswith("/status"), busy)
    login(page, stack, "admin")
    expect(page.locator(".live")).to_have_attribute("data-live", "on")
    assert len(failed) == 2
    assert len(streams) == 1, [r.url for r in streams]
