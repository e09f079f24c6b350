"""What a page shows when a request fails: why, where the data would be, and nothing lost of
what it showed. Failures are injected in the browser's network (Playwright's routing), the
one seam between the page and the real server."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import Route, expect

from tests.web.conftest import PHONE
from tests.web.stack import Stack
from tests.web.test_dashboard import STRINGS, NewPage, login


def busy(route: Route) -> None:
    route.fulfill(status=503, json={"error": "unavailable", "message": "busy"})


def test_a_failed_export_leaves_the_report_shown(stack: Stack, new_page: NewPage) -> None:
    """The download fails: said under its card's head, in the page's language, while every
    table and chart stays; a later download that works takes the message away."""
    page = new_page(viewport=PHONE, locale="zh-CN")
    login(page, stack, "evaluator")
    page.click('.nav a[href="#/utilisation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    rows = page.locator('table[data-table="institution"] tbody tr')
    expect(rows).to_have_count(2)
    page.route(lambda url: "format=csv" in (urlsplit(url).query or ""), busy)
    page.click('[data-export="institution-csv"]')
    card = page.locator('[data-section="institution"]')
    said = card.locator('[data-export-failed="institution"] [role="alert"]')
    expect(said).to_contain_text(f"{STRINGS['zh']['error.generic']} (503)")
    expect(rows).to_have_count(2)  # the report stays, its chart too
    expect(page.locator('canvas[data-chart="institution"]')).to_be_visible()
    expect(page.locator('[data-section]')).to_have_count(4)
    page.unroute_all()
    with page.expect_download():
        page.click('[data-export="institution-csv"]')
    expect(said).to_have_count(0)


def test_a_board_that_cannot_load_says_why_while_it_retries(
    stack: Stack, new_page: NewPage
) -> None:
    """The server refuses the board's reads: the board says so rather than "loading" for ever,
    and draws the tiles once a read succeeds."""
    page = new_page(locale="zh-CN")
    page.route(lambda url: urlsplit(url).path.endswith("/status"), busy)
    page.goto(f"{stack.url}/")
    page.fill("#token", stack.tokens["admin"])
    page.click("form.login button[type=submit]")
    grid = page.locator(".tiles")
    expect(grid.locator('[data-error="error"]')).to_contain_text(
        f"{STRINGS['zh']['error.generic']} (503)")
    expect(grid.get_by_text(STRINGS["zh"]["common.loading"])).to_have_count(0)
    page.unroute_all()
    expect(grid).to_have_attribute("data-loaded", "true")
    expect(page.locator(".tile")).to_have_count(5)
    expect(grid.locator('[data-error]')).to_have_count(0)
