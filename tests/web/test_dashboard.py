"""The dashboard in a real browser (Debian's Chromium, headless) against a running stack.

Screenshots of every page, at desktop (1366x900) and phone (390x844) sizes, are written to
``$SCREENSHOT_DIR`` or ``screenshots/web/`` under the repository root.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Dialog, FilePayload, Locator, Page, ViewportSize, expect

from gateway import Reading, SimulatedProbe
from monitor_api.auth import Role
from monitor_api.categories import CATEGORY_NAMES
from monitor_api.web import STATIC_DIR
from tests.web.conftest import DESKTOP, PHONE
from tests.web.stack import (
    INSTITUTIONS,
    INSTRUMENTS,
    LIVE_STATES,
    POWER_STEP,
    SHANGHAI,
    USERS,
    Stack,
    power_at,
)

STRINGS: dict[str, dict[str, str]] = json.loads((STATIC_DIR / "i18n.json").read_text("utf-8"))
ROOTS = {"neu": "neu", "neu-ac": "neu", "dut": "dut"}
OWNER = {i[0]: i[2] for i in INSTRUMENTS}
USER_ROOT = {u[0]: ROOTS[u[2]] for u in USERS}
NewPage = Callable[..., Page]


@contextmanager
def answering(page: Page, question: str, *, accept: bool = True,
              text: str | None = None) -> Iterator[None]:
    """Answer the confirmation the block's click asks, checking that it asks ``question``
    (an i18n key, in either language); ``text``: what is typed into a question asking for
    one."""
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        if accept:
            dialog.accept(text)
        else:
            dialog.dismiss()

    page.once("dialog", answer)
    yield
    expect(page.locator("body")).to_be_visible()  # the click and its dialog are done
    assert asked and asked[0] in (STRINGS["zh"][question], STRINGS["en"][question]), asked


def login(page: Page, stack: Stack, who: str) -> None:
    page.goto(f"{stack.url}/")
    page.fill("#token", stack.tokens[who])
    page.click("form.login button[type=submit]")
    expect(page.locator(".tiles")).to_have_attribute("data-loaded", "true")


def shot(page: Page, folder: Path, name: str, viewport: ViewportSize) -> None:
    size = "phone" if viewport is PHONE else "desktop"
    page.screenshot(path=folder / f"{name}-{size}.png", full_page=True)


def fits_width(page: Page) -> bool:
    """Nothing sticks out sideways. Against the layout viewport (clientWidth): a phone widens
    its window (innerWidth) to what sticks out, zoomed out."""
    return bool(page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1"))


def tables_needing_a_scroll(page: Page) -> list[str]:
    """Tables with columns out of sight until scrolled to."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('.table-wrap')]
            .filter(w => w.scrollWidth > w.clientWidth + 1)
            .map(w => w.querySelector('table').dataset.table)""")
    return found


def chart(page: Page, name: str) -> dict[str, Any]:
    """What Chart.js holds for the canvas ``name``: labels, datasets and the x range."""
    data: dict[str, Any] = page.evaluate(
        """name => {
            const c = Chart.getChart(document.querySelector(`canvas[data-chart="${name}"]`));
            return {labels: c.data.labels,
                    datasets: c.data.datasets.map(d => ({label: d.label, data: d.data})),
                    min: c.scales.x.min, max: c.scales.x.max};
        }""",
        name,
    )
    return data


def time_xs(page: Page, name: str) -> list[float]:
    """Where on the page the chart ``name`` draws the start, middle and end of its x range."""
    xs: list[float] = page.evaluate(
        """name => {
            const canvas = document.querySelector(`canvas[data-chart="${name}"]`);
            const x = Chart.getChart(canvas).scales.x;
            return [x.min, (x.min + x.max) / 2, x.max]
                .map(v => canvas.getBoundingClientRect().left + x.getPixelForValue(v));
        }""", name)
    return xs


def ticks(page: Page, name: str) -> list[str]:
    """The x axis labels the chart ``name`` draws."""
    labels: list[str] = page.evaluate(
        """name => Chart.getChart(document.querySelector(`canvas[data-chart="${name}"]`))
            .scales.x.ticks.map(t => t.label)""", name)
    return labels


def tooltip_title(page: Page, name: str, index: int) -> str:
    """The title of the tooltip the chart ``name`` shows over its bar ``index``."""
    title: str = page.evaluate(
        """([name, index]) => {
            const c = Chart.getChart(document.querySelector(`canvas[data-chart="${name}"]`));
            c.tooltip.setActiveElements([{datasetIndex: 0, index}], {x: 0, y: 0});
            c.update();
            const title = c.tooltip.title.join(' ');
            c.tooltip.setActiveElements([], {x: 0, y: 0});  // out of the screenshots
            c.update();
            return title;
        }""", [name, index])
    return title


def in_sight(cell: Locator, viewport: ViewportSize) -> None:
    """``cell`` is on screen without scrolling sideways."""
    box = cell.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box


def scroll_cue(page: Page, name: str) -> bool:
    """Whether the table ``name``'s scrolling box draws the shadows that say it goes on
    sideways (backgrounds that stay at its edges under covers that scroll with the table)."""
    style: dict[str, str] = page.evaluate(
        """name => {
            const s = getComputedStyle(document.querySelector(`table[data-table="${name}"]`)
                .closest('.table-wrap'));
            return {image: s.backgroundImage, attachment: s.backgroundAttachment};
        }""", name)
    return ("gradient" in style["image"] and "local" in style["attachment"]
            and "scroll" in style["attachment"])


INTERNAL_NAMES = {"main", "timeline", "power", "grades", "institution", "category", "instrument"}
"""Identifiers the code uses for charts and regions: never what a label should say."""
SHOWN_TEXT = """() => {
    const seen = [['title', document.title]];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        if (n.textContent.trim() && n.parentElement?.checkVisibility()) {
            seen.push(['text', n.textContent]);
        }
    }
    for (const e of document.querySelectorAll('[aria-label], [title], [placeholder], [alt]')) {
        for (const a of ['aria-label', 'title', 'placeholder', 'alt']) {
            if (e.hasAttribute(a)) seen.push([a, e.getAttribute(a)]);
        }
    }
    for (const c of Object.values(window.Chart?.instances ?? {})) {
        for (const l of c.data.labels ?? []) seen.push(['chart', String(l)]);
        for (const d of c.data.datasets) seen.push(['chart', d.label ?? '']);
        for (const axis of Object.values(c.options.scales ?? {})) {
            if (axis.title?.display) seen.push(['chart', axis.title.text]);
        }
    }
    return seen;
}"""
CATEGORY_WORDS = {"zh": {n.zh for n in CATEGORY_NAMES.values()},
                  "en": {n.en for n in CATEGORY_NAMES.values()}}
PAGES = {  # route -> the element that says the page has its data
    "board": ".tiles", "utilisation": ".report", "evaluation": ".report",
    "catalogue": ".report", "instrument/nmr-600": ".charts",
}


def untranslated(page: Page, lang: str) -> list[tuple[str, str]]:
    """Shown text, accessible names and chart labels that are in the other language (any label
    of i18n.json's other half that differs from this language's, or a category's name in it)
    or an internal identifier."""
    other = "en" if lang == "zh" else "zh"
    foreign = {v for k, v in STRINGS[other].items() if v != STRINGS[lang][k]}
    foreign |= CATEGORY_WORDS[other]
    foreign -= set(STRINGS[lang].values()) | CATEGORY_WORDS[lang]
    found = []
    for where, value in page.evaluate(SHOWN_TEXT):
        parts = {p.strip() for p in re.split(r"[:：·←]", value)} | {value.strip()}
        if parts & foreign or (where != "text" and value.strip() in INTERNAL_NAMES):
            found.append((where, value))
    return found


def every_page_in(page: Page, stack: Stack, lang: str) -> None:
    """Visit each page in ``lang``; none may show a label in the other language."""
    for route, ready in PAGES.items():
        page.goto(f"{stack.url}/ui/#/{route}")
        expect(page.locator(ready)).to_have_attribute("data-loaded", "true")
        assert untranslated(page, lang) == [], f"#/{route} in {lang}"


def tiles(page: Page) -> dict[str, str]:
    found: dict[str, str] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.tile')]
            .map(t => [t.dataset.instrument, t.dataset.state]))""")
    return found


INSTITUTION_NAMES = {i[0]: i[1] for i in INSTITUTIONS}


def expected_hours(stack: Stack) -> dict[str, tuple[float, float]]:
    """(effective, external) hours per top-level institution, from the seeded sessions."""
    hours: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for s in stack.sessions:
        root = ROOTS[OWNER[s.instrument]]
        h = (s.end - s.start).total_seconds() / 3600
        hours[root][0] += h
        if USER_ROOT[s.user] != root:
            hours[root][1] += h
    return {k: (v[0], v[1]) for k, v in hours.items()}


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_pages_show_the_seeded_data(
    stack: Stack, new_page: NewPage, screenshot_dir: Path, viewport: ViewportSize
) -> None:
    page = new_page(viewport=viewport)
    page.goto(f"{stack.url}/")
    expect(page.locator("#token")).to_be_visible()
    shot(page, screenshot_dir, "login", viewport)
    login(page, stack, "evaluator")

    # Board: every seeded instrument, in the state seeded (tem-1 never reported: offline).
    want = {i[0]: LIVE_STATES.get(i[0], ("offline",))[0] for i in INSTRUMENTS}
    assert tiles(page) == want
    expect(page.locator(".live")).to_have_attribute("data-live", "on")
    expect(page.locator('.chip[data-state="running"]')).to_have_attribute("data-count", "1")
    for instrument, _, institution, *_ in INSTRUMENTS:  # named, the id on hover
        tile = page.locator(f'.tile[data-instrument="{instrument}"]')
        expect(tile.locator(".tile-id")).to_have_attribute("title", institution)
        expect(tile.locator(".tile-meta")).not_to_have_text(re.compile(r"^\s*·"))
    assert fits_width(page)
    shot(page, screenshot_dir, "board", viewport)

    # Detail: the power chart holds exactly the seeded samples of the range shown, and the
    # timeline's running bars are the seeded running hours clipped to that range.
    page.click('.tile[data-instrument="nmr-600"]')
    expect(page.locator(".charts")).to_have_attribute("data-loaded", "true")
    expect(page.locator("h1[data-instrument]")).to_have_text("600 MHz 核磁共振波谱仪")
    gateway = page.locator(".gateway-line")
    expect(gateway).to_have_attribute("data-online", "true")
    expect(gateway).to_contain_text("gw-seed")
    expect(gateway).to_contain_text("messages its outbox dropped (full or too old): 3")
    power = chart(page, "power")
    lo = datetime.fromtimestamp(power["min"] / 1000, UTC)
    hi = datetime.fromtimestamp(power["max"] / 1000, UTC)
    start = stack.seeded_at - timedelta(hours=24)
    samples = [(start + n * POWER_STEP, power_at(n)) for n in range(288)]
    inside = [p for ts, (_, p) in samples if lo <= ts < hi]
    assert [pt["y"] for pt in power["datasets"][0]["data"]] == inside
    timeline = chart(page, "timeline")
    running = next(d for d in timeline["datasets"] if d["label"] == "Running")["data"]
    blocks = [(start + timedelta(hours=3 * k), start + timedelta(hours=3 * k + 1))
              for k in range(8)]
    want_bars = [(max(a, lo), min(b, hi)) for a, b in blocks if min(b, hi) > max(a, lo)]
    got_bars = [tuple(datetime.fromtimestamp(v / 1000, UTC) for v in bar["x"]) for bar in running]
    assert len(got_bars) == len(want_bars)
    for (ga, gb), (wa, wb) in zip(got_bars, want_bars, strict=True):
        assert abs(ga - wa) < timedelta(seconds=1) and abs(gb - wb) < timedelta(seconds=1)
    # one time, one x: the timeline keeps the room of the power chart's y axis
    assert timeline["min"] == power["min"] and timeline["max"] == power["max"]
    assert time_xs(page, "timeline") == pytest.approx(time_xs(page, "power"), abs=1)
    assert fits_width(page)
    shot(page, screenshot_dir, "detail", viewport)

    # Utilisation: the institution chart shows the hours of the seeded sessions.
    page.click('.nav a[href="#/utilisation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    by_institution = chart(page, "institution")
    hours = expected_hours(stack)
    keys = sorted(hours)  # the chart is in key order and labelled with the names
    assert by_institution["labels"] == [INSTITUTION_NAMES[k] for k in keys]
    effective, external, openness = (d["data"] for d in by_institution["datasets"])
    for n, key in enumerate(keys):
        assert effective[n] == pytest.approx(hours[key][0])
        assert external[n] == pytest.approx(hours[key][1])
        assert openness[n] == pytest.approx(hours[key][1] / hours[key][0])
    by_category = chart(page, "category")  # second-level classes, named in English
    assert by_category["labels"] == [CATEGORY_NAMES[c].en
                                     for c in sorted({i[3][:4] for i in INSTRUMENTS})]
    assert sum(by_category["datasets"][0]["data"]) == pytest.approx(
        sum(h[0] for h in hours.values()))
    services = page.locator('table[data-table="services"] tbody tr')
    expect(services).to_have_count(1)  # the seeded service to an outside user, codes as words
    for key, text in (("user_type", "code.external"), ("service_way", "code.commissioned_test")):
        expect(services.locator(f'td[data-key="{key}"]')).to_have_text(STRINGS["en"][text])
    expect(services.locator('td[data-key="service_hours"]')).to_have_text("2")
    assert fits_width(page)
    if viewport is DESKTOP:
        assert tables_needing_a_scroll(page) == []
        # names in full where there is room, and always in the tooltip
        assert ticks(page, "category") == by_category["labels"]
        assert tooltip_title(page, "category", 0) == CATEGORY_NAMES["0101"].en
    else:  # names wrap, so the hours follow them in sight; what is further says so
        for group in ("institution", "category", "instrument"):
            in_sight(page.locator(f'table[data-table="{group}"] td[data-key="effective_hours"]')
                     .first, viewport)
        scrolling = tables_needing_a_scroll(page)
        assert scrolling and all(scroll_cue(page, name) for name in scrolling)
    shot(page, screenshot_dir, "utilisation", viewport)

    # Evaluation: every list rendered, the grade chart counts every instrument.
    page.click('.nav a[href="#/evaluation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    expect(page.locator("#eval-covers")).to_have_text(STRINGS["en"]["eval.provisional"])
    for name in ("institutions", "instruments", "low", "silent", "overdue"):
        expect(page.locator(f'[data-section="{name}"]')).to_be_visible()
    assert sum(chart(page, "grades")["datasets"][0]["data"]) == len(INSTRUMENTS)
    expect(page.locator('table[data-table="silent"] td[data-key="instrument_id"]')).to_have_text(
        ["tem-1"])
    silent_owner = page.locator('table[data-table="silent"] td[data-key="institution_name"] span')
    expect(silent_owner).to_have_text(INSTITUTION_NAMES["neu"])  # named, the id on hover
    expect(silent_owner).to_have_attribute("title", "neu")
    expect(page.locator('table[data-table="silent"] td[data-key="awaiting_disposal"]')
           ).to_have_text([STRINGS["en"]["field.no"]])
    grades = page.locator('table[data-table="instruments"] td[data-key="grade"]')
    expect(grades).to_have_count(len(INSTRUMENTS))
    modes = page.locator('table[data-table="instruments"] td[data-key="sharing_mode"]')
    expect(modes).to_have_count(len(INSTRUMENTS))  # as the files have it
    assert set(modes.all_inner_texts()) <= {
        STRINGS["en"][f"eval.sm.{mode}"] for mode in ("external", "internal", "not_shared")}
    in_sight(grades.first, viewport)  # next to the name, in sight even on a phone
    in_sight(page.locator('table[data-table="instruments"] td[data-key="score"]').first, viewport)
    assert fits_width(page)
    if viewport is DESKTOP:
        assert tables_needing_a_scroll(page) == []
    shot(page, screenshot_dir, "evaluation", viewport)


def test_a_period_ending_before_it_starts_is_said_at_once(
    stack: Stack, new_page: NewPage
) -> None:
    page = new_page()
    login(page, stack, "evaluator")
    page.click('.nav a[href="#/utilisation"]')
    report = page.locator(".report")
    expect(report).to_have_attribute("data-loaded", "true")
    presets = page.locator('.filters button[type="button"]')  # the one shown is marked
    expect(presets).to_have_count(2)
    for n, pressed in enumerate(("true", "false")):
        expect(presets.nth(n)).to_have_attribute("aria-pressed", pressed)
    page.fill("#period-start", "2026-03-10")
    for n in range(2):  # a period of one's own
        expect(presets.nth(n)).to_have_attribute("aria-pressed", "false")
    page.fill("#period-end", "2026-03-09")
    page.click(".filters button[type=submit]")
    expect(page.locator('[data-error="period"]')).to_have_text(STRINGS["en"]["util.bad_period"])
    expect(report).to_have_attribute("data-loaded", "true")  # the last report stays
    page.fill("#period-end", "2199-12-31")  # a period yet to begin
    page.fill("#period-start", "2199-01-01")
    page.click(".filters button[type=submit]")
    expect(page.locator('[data-error="period"]')).to_have_text(
        STRINGS["en"]["util.future_period"])
    page.fill("#period-start", "2026-03-10")
    page.fill("#period-end", "2026-03-10")  # one day is a period
    page.click(".filters button[type=submit]")
    expect(page.locator('[data-error="period"]')).to_have_count(0)
    expect(report).to_have_attribute("data-loaded", "true")
    silent = page.locator('[data-empty="period"]')  # before the seeded data: said so
    expect(silent).to_have_text(STRINGS["en"]["util.no_data"])
    page.click('.lang button[data-lang="zh"]')  # the period chosen stays, in Chinese
    expect(silent).to_have_text(STRINGS["zh"]["util.no_data"])
    for field in ("#period-start", "#period-end"):
        expect(page.locator(field)).to_have_value("2026-03-10")
    for n in range(2):
        expect(presets.nth(n)).to_have_attribute("aria-pressed", "false")
    presets.nth(0).click()
    expect(report).to_have_attribute("data-loaded", "true")
    expect(silent).to_have_count(0)


def test_a_range_without_data_says_so_instead_of_empty_charts(
    stack: Stack, new_page: NewPage
) -> None:
    page = new_page()
    login(page, stack, "evaluator")
    page.click('.tile[data-instrument="nmr-600"]')
    charts = page.locator(".charts")
    expect(charts).to_have_attribute("data-loaded", "true")
    presets = page.locator("form.range button[data-span]")  # the range shown is marked
    expect(presets).to_have_count(3)
    expect(page.locator('form.range button[aria-pressed="true"]')).to_have_text(
        STRINGS["en"]["detail.last24h"])
    for start, end, problem in (("", "2020-01-02T00:00", "common.missing_range"),
                                ("2199-01-01T00:00", "2199-01-02T00:00", "common.future_range")):
        page.fill("#range-start", start)
        page.fill("#range-end", end)
        page.click("form.range button[type=submit]")
        expect(page.locator('[data-error="range"]')).to_have_text(STRINGS["en"][problem])
    page.fill("#range-start", "2020-01-01T00:00")
    page.fill("#range-end", "2020-01-02T00:00")
    expect(page.locator('form.range button[aria-pressed="true"]')).to_have_count(0)
    page.click("form.range button[type=submit]")
    expect(page.locator('[data-empty="range"]')).to_have_text(STRINGS["en"]["detail.no_data"])
    expect(charts).to_be_hidden()
    presets.nth(1).click()  # a range with data again: the last 7 days
    expect(charts).to_be_visible()
    expect(page.locator('[data-empty="range"]')).to_have_count(0)
    expect(page.locator('form.range button[aria-pressed="true"]')).to_have_text(
        STRINGS["en"]["detail.last7d"])
    shown = {field: page.input_value(field) for field in ("#range-start", "#range-end")}
    page.click('.lang button[data-lang="zh"]')  # the range chosen stays, in Chinese
    expect(charts).to_have_attribute("data-loaded", "true")
    expect(page.locator('form.range button[aria-pressed="true"]')).to_have_text(
        STRINGS["zh"]["detail.last7d"])
    for field, value in shown.items():
        expect(page.locator(field)).to_have_value(value)


def test_a_period_the_api_refuses_says_its_limit_in_the_page_language(
    stack: Stack, new_page: NewPage
) -> None:
    """The API's reason code worded by the page, with the limit the API gives; and charts of
    the range before are not left under the inputs of the refused one."""
    page = new_page(locale="zh-CN")
    login(page, stack, "evaluator")
    page.click('.tile[data-instrument="nmr-600"]')
    charts = page.locator(".charts")
    expect(charts).to_have_attribute("data-loaded", "true")
    expect(charts).to_be_visible()
    page.fill("#range-start", "2024-01-01T00:00")
    page.fill("#range-end", "2025-06-01T00:00")
    page.click("form.range button[type=submit]")
    said = STRINGS["zh"]["reason.period_too_long"]
    expect(page.locator(".notice .detail").first).to_have_text(said.replace("{max_days}", "400"))
    expect(charts).to_be_hidden()
    expect(page.locator('[data-section="sessions"]')).to_be_hidden()
    page.click('.nav a[href="#/utilisation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    page.fill("#period-start", "2019-01-01")
    page.fill("#period-end", "2026-01-05")
    page.click(".filters button[type=submit]")
    expect(page.locator(".notice .detail").first).to_have_text(said.replace("{max_days}", "1830"))


def test_an_institution_without_instruments_is_told_so_not_shown_empty_charts(
    stack: Stack, new_page: NewPage
) -> None:
    stack.sql("INSERT INTO institution (id, name) VALUES ('empty-lab', '新建实验室')")
    token = stack.token(Role.LAB_MANAGER, institution_id="empty-lab")
    page = new_page()
    page.goto(f"{stack.url}/")
    page.fill("#token", token)
    page.click("form.login button[type=submit]")
    expect(page.locator('[data-empty="board"]')).to_have_text(
        STRINGS["en"]["board.no_instruments"])
    page.click('.nav a[href="#/utilisation"]')
    expect(page.locator('[data-empty="scope"]')).to_have_text(
        STRINGS["en"]["util.no_instruments"])
    expect(page.locator(".report canvas")).to_have_count(0)


def test_ranges_drawn_in_hour_steps_start_on_the_hour(stack: Stack, new_page: NewPage) -> None:
    """So that the server can take whole hours from its hourly sums (docs/api.md)."""
    page = new_page()
    login(page, stack, "evaluator")
    page.click('.tile[data-instrument="nmr-600"]')
    expect(page.locator(".charts")).to_have_attribute("data-loaded", "true")
    asked = {}
    for preset in (1, 2):  # the last 7 days (30-minute steps), the last 30 days (2 hours)
        with page.expect_request(lambda r: "/power?" in r.url) as request:
            page.locator("form.range button[data-span]").nth(preset).click()
        query = parse_qs(urlsplit(request.value.url).query)
        asked[query["step_s"][0]] = datetime.fromisoformat(query["start"][0])
    assert sorted(asked) == ["1800", "7200"]
    assert asked["7200"].minute == asked["7200"].second == asked["7200"].microsecond == 0
    assert asked["1800"] > datetime.now(UTC) - timedelta(days=7, minutes=1)  # as chosen


def test_admin_enters_an_assessment_and_evaluators_read_it(
    stack: Stack, new_page: NewPage
) -> None:
    page = new_page()
    login(page, stack, "admin")
    page.click('.nav a[href="#/evaluation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    rules = page.locator('[data-section="assessments"] [data-points="rules"]')
    expect(rules).to_contain_text("Operation 40 · Sharing 20 · Management 40 · Assessed 0")
    # assessed points 0: a mark is recorded and counts for nothing, and the page says so
    expect(rules).to_contain_text(STRINGS["en"]["eval.assess_unweighted"])
    page.select_option("#assess-institution", "dut")
    page.fill("#assess-mark", "85.5")
    page.fill("#assess-note", "支撑重大科研任务 2 项")
    page.click('.assess-form button[type="submit"]')
    saved = page.locator(".message .notice-ok")
    expect(saved).to_contain_text("Saved: 大连理工大学 85.5")
    row = page.locator('table[data-table="assessments"] tbody tr')
    expect(row).to_have_count(1)
    expect(row.locator('td[data-key="note"]')).to_have_text("支撑重大科研任务 2 项")
    [(by,)] = stack.sql("SELECT assessed_by FROM assessment")  # role and token: "admin:3"
    expect(row.locator('td[data-key="assessed_by"]')).to_have_text(
        f"{STRINGS['en']['role.admin']} #{by.removeprefix('admin:')}")
    page.fill("#eval-year", str(int(page.input_value("#eval-year")) - 1))
    page.click('form.filters button[type="submit"] >> nth=0')
    expect(page.locator('table[data-table="assessments"]')).to_have_count(0)  # none that year
    expect(saved).to_have_count(0)  # what was said of the other year's form goes with it
    shot_page = new_page()
    login(shot_page, stack, "evaluator")  # reads it, has no form
    shot_page.click('.nav a[href="#/evaluation"]')
    expect(shot_page.locator('table[data-table="assessments"] td[data-key="mark"]')).to_have_text(
        "85.5")
    expect(shot_page.locator(".assess-form")).to_have_count(0)


def test_duplicate_review_lists_the_class_with_its_verdict(
    stack: Stack, new_page: NewPage, screenshot_dir: Path
) -> None:
    """Class 0102 holds sem-1 and tem-1, both open and unused: spare hours to share."""
    page = new_page()
    login(page, stack, "evaluator")
    page.click('.nav a[href="#/evaluation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    # the input offers the classification's classes by name
    expect(page.locator('#review-category-list option[value="0102"]')).to_have_attribute(
        "label", "0102 Mass spectrometers")
    page.fill("#review-category", "0102")
    page.click('[data-section="review"] button[type="submit"]')
    verdict = page.locator('[data-section="review"] .verdict')
    expect(verdict).to_have_attribute("data-verdict", "spare_capacity")
    expect(verdict).to_contain_text(STRINGS["en"]["review.verdict.spare_capacity"])
    ids = page.locator('table[data-table="review"] td[data-key="instrument_id"]')
    expect(ids).to_have_count(2)
    assert sorted(ids.all_inner_texts()) == ["sem-1", "tem-1"]
    expect(page.locator('table[data-table="review"] td[data-key="capacity"]')).to_have_text(
        [STRINGS["en"]["review.cap.spare"]] * 2)
    page.locator('[data-section="review"]').screenshot(path=screenshot_dir / "review-desktop.png")
    # the regions institutions are in are offered; none of the class in 大连, says the verdict
    expect(page.locator("#review-region option")).to_have_text(
        [STRINGS["en"]["review.whole_province"], "大连", "沈阳"])
    page.select_option("#review-region", "大连")
    page.click('[data-section="review"] button[type="submit"]')
    expect(verdict).to_have_attribute("data-verdict", "none_registered")
    expect(verdict).to_contain_text(
        STRINGS["en"]["review.verdict.none_in_region"].replace("{region}", "大连"))
    # a class by name, as the label says (the API takes codes); an unknown one is said at once
    # and the last review goes
    page.fill("#review-category", "no such class")
    page.click('[data-section="review"] button[type="submit"]')
    expect(page.locator('[data-section="review"] [data-error="category"]')).to_have_text(
        STRINGS["en"]["review.unknown_class"])
    expect(verdict).to_have_count(0)
    page.select_option("#review-region", "")
    page.fill("#review-category", "mass spectrometers")
    page.click('[data-section="review"] button[type="submit"]')
    expect(verdict).to_have_attribute("data-verdict", "spare_capacity")
    expect(ids).to_have_count(2)


def test_admin_publishes_and_lab_managers_read_the_published_results(
    stack: Stack, new_page: NewPage, screenshot_dir: Path
) -> None:
    last_year = datetime.now(SHANGHAI).year - 1  # the dashboard's years are Shanghai's
    admin = new_page()
    refused: list[str] = []  # an unpublished year is normal, not a failed request
    admin.on("response", lambda r: refused.append(r.url) if r.status >= 400 else None)
    login(admin, stack, "admin")
    admin.click('.nav a[href="#/evaluation"]')
    expect(admin.locator(".report")).to_have_attribute("data-loaded", "true")
    card = admin.locator('[data-section="publication"]')
    expect(card.locator("[data-published]")).to_have_attribute("data-published", "false")
    # this year is not over: no form, but when it can be published
    expect(card.locator('button[type="submit"]')).to_have_count(0)
    expect(card.locator('[data-publishable="later"]')).to_have_text(
        STRINGS["en"]["pub.after_year"].replace("{date}", f"{last_year + 2}-01-01"))
    admin.fill("#eval-year", str(last_year + 2))  # not begun: nothing to judge
    admin.click('form.filters button[type="submit"] >> nth=0')
    expect(admin.locator('[data-empty="year"]')).to_have_text(STRINGS["en"]["eval.not_begun"])
    expect(admin.locator("#eval-covers")).to_have_text("")  # not provisional: not begun

    admin.fill("#eval-year", str(last_year))
    admin.click('form.filters button[type="submit"] >> nth=0')
    expect(card.locator("[data-published]")).to_have_attribute("data-year", str(last_year))
    expect(admin.locator("#eval-covers")).to_have_text("")  # a year over: final
    assert refused == []
    admin.fill("#publication-note", "评审委员会审定")
    card.locator('button[type="submit"]').click()
    expect(card.locator("[data-published]")).to_have_attribute("data-published", "true")
    expect(card.locator("[data-published]")).to_contain_text("评审委员会审定")
    try:
        page = new_page(viewport=PHONE)
        login(page, stack, "dut_manager")
        page.click('.nav a[href="#/evaluation"]')  # last year's by default
        expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
        expect(page.locator('[data-section="publication"] [data-published]')).to_contain_text(
            "评审委员会审定")
        ranking = page.locator('table[data-table="institutions"] td[data-key="name"] span')
        expect(ranking).to_have_count(2)  # every unit's rank, named (the id on hover)
        assert sorted(r.get_attribute("title") or "" for r in ranking.all()) == ["dut", "neu"]
        own = page.locator('table[data-table="instruments"] td[data-key="instrument_id"]')
        expect(own).to_have_count(2)  # their own instruments only
        assert sorted(own.all_inner_texts()) == ["ms-1", "xrd-1"]
        expect(page.locator('table[data-table="instruments"] td[data-key="institution_name"] span')
               ).to_have_text([INSTITUTION_NAMES["dut"]] * 2)  # named as published
        expect(page.locator(".publish-form")).to_have_count(0)
        # their own instruments' grades as published, charted as an evaluator's page charts them
        expect(page.locator('canvas[data-chart="grades"]')).to_be_visible()
        grades = chart(page, "grades")
        assert grades["labels"] == [STRINGS["en"][f"grade.{g}"] for g in ("优秀", "良好", "合格",
                                                                          "不合格")]
        shown = page.locator(
            'table[data-table="instruments"] td[data-key="grade"]').all_inner_texts()
        assert grades["datasets"][0]["data"] == [shown.count(g) for g in grades["labels"]]
        assert fits_width(page)
        shot(page, screenshot_dir, "evaluation-lab-manager", PHONE)
    finally:
        with answering(admin, "pub.confirm_withdraw"):
            card.locator("button.withdraw").click()
        expect(card.locator("[data-published]")).to_have_attribute("data-published", "false")


def test_admin_reviews_the_catalogue_entry_on_the_detail_page(
    stack: Stack, new_page: NewPage
) -> None:
    """Unlisted, ms-1 leaves registered users' board; listed again, it is back."""
    admin = new_page()
    login(admin, stack, "admin")
    admin.goto(f"{stack.url}/ui/#/instrument/ms-1")
    line = admin.locator(".catalogue-line")
    expect(line).to_have_attribute("data-listed", "true")
    expect(line.locator('[data-action="list"]')).to_have_count(0)  # nothing to review
    user = new_page()
    try:
        with answering(admin, "catalogue.confirm_unlist", accept=False):
            line.locator('[data-action="unlist"]').click()
        expect(line).to_have_attribute("data-listed", "true")  # not confirmed: still listed
        with answering(admin, "catalogue.confirm_unlist"):
            line.locator('[data-action="unlist"]').click()
        expect(line).to_have_attribute("data-listed", "false")
        expect(line).to_contain_text(STRINGS["en"]["catalogue.unlisted"])
        login(user, stack, "outside_user")
        assert "ms-1" not in tiles(user)
        user.goto(f"{stack.url}/ui/#/instrument/ms-1")
        expect(user.locator('[data-error="error"]')).to_contain_text("no instrument 'ms-1'")
        user.goto(f"{stack.url}/ui/#/instrument/nmr-600")  # listed: no review line for users
        expect(user.locator("h1[data-instrument]")).to_have_text("600 MHz 核磁共振波谱仪")
        expect(user.locator(".catalogue-line")).to_have_count(0)
    finally:
        line.locator('[data-action="list"]').click()
        expect(line).to_have_attribute("data-listed", "true")
    user.goto(f"{stack.url}/ui/#/board")
    expect(user.locator(".tiles")).to_have_attribute("data-loaded", "true")
    assert "ms-1" in tiles(user)


def test_the_registry_entry_lists_each_field_with_its_value(
    stack: Stack, new_page: NewPage
) -> None:
    page = new_page()
    login(page, stack, "admin")
    page.goto(f"{stack.url}/ui/#/instrument/nmr-600")
    page.locator("details.registry summary").click()
    entry = page.locator("details.registry dl")
    labels = entry.locator("dt")
    expect(labels).to_have_count(12)
    expect(entry.locator("dd")).to_have_count(12)
    expect(labels.first).to_have_text(STRINGS["en"]["field.id"])
    expect(entry.locator("dd").first).to_have_text("nmr-600")
    assert "[object" not in entry.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    user = new_page()
    login(user, stack, "outside_user")  # the catalogue's fields, without rows of dashes
    user.goto(f"{stack.url}/ui/#/instrument/nmr-600")
    user.locator("details.registry summary").click()
    listed = user.locator("details.registry dl")
    expect(listed.locator("dt")).to_have_count(8)
    assert STRINGS["en"]["field.value"] not in listed.inner_text()


def _seed_session_log(stack: Stack) -> list[datetime]:
    """nmr-600's sessions in the last 24 h, in the seeded power trace's running hours, with a
    2-minute noise filter: u-in's (certified), one nobody reported in u-out's approved booking
    to run it themselves, one nobody's, 30 s of u-in's below the filter, and u-out's still
    running (as its live state says). Their starts, in order."""
    block = stack.seeded_at - timedelta(hours=24)  # the trace runs an hour in three from here
    hour = timedelta(hours=1)
    sessions = [(block + 3 * hour, hour, "u-in"), (block + 6 * hour, hour, None),
                (block + 9 * hour, hour, None), (block + 12 * hour, timedelta(seconds=30), "u-in"),
                (stack.seeded_at - hour, None, "u-out")]
    stack.sql("UPDATE instrument SET min_session_s = 120 WHERE id = 'nmr-600'")
    stack.sql("INSERT INTO certification (user_id, instrument_id, level, valid_from)"
              " VALUES ('u-in', 'nmr-600', 'self', %s)", (block - 30 * 24 * hour,))
    booked = sessions[1][0]
    stack.sql("INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
              " VALUES ('nmr-600', 'u-out', 'self', %s, %s, 'approved')",
              (booked - timedelta(minutes=10), booked + hour))
    for start, length, user in sessions:
        end = None if length is None else start + length
        stack.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
                  " VALUES ('nmr-600', %s, %s, %s, %s)", (start, end, end or stack.seeded_at, user))
    return [start for start, _, _ in sessions]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_staff_read_the_session_log_of_the_range_and_users_their_own_part(
    stack: Stack, new_page: NewPage, screenshot_dir: Path, viewport: ViewportSize
) -> None:
    """Each session of the range: whom it counts for (a booked user marked as the board marks
    one), whether they are outside or uncertified, and whether it is counted (a session that
    is not is muted); a registered user's detail lists their own sessions only."""
    starts = _seed_session_log(stack)
    en = STRINGS["en"]
    page = new_page(viewport=viewport)
    login(page, stack, "neu_manager")
    page.goto(f"{stack.url}/ui/#/instrument/nmr-600")
    expect(page.locator(".charts")).to_have_attribute("data-loaded", "true")
    card = page.locator('[data-section="sessions"]')
    expect(card.locator("h2")).to_have_text(en["sessions.title"])
    rows = card.locator("tbody tr")
    expect(rows).to_have_count(5)

    def column(key: str) -> Locator:
        return rows.locator(f'td[data-key="{key}"]')

    yes, no = en["field.yes"], en["field.no"]
    expect(column("start")).to_have_text(
        [s.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") for s in starts])
    expect(column("end").last).to_have_text(en["state.running"])
    expect(column("running_s")).to_have_text(["1", "1", "1", "0.01", "1"])
    expect(column("user_name")).to_have_text([
        "校内用户 (u-in)", f"外单位用户 (u-out) ({en['board.booked']})", "—", "校内用户 (u-in)",
        "外单位用户 (u-out)"])
    expect(column("booking_kind")).to_have_text(["—", en["book.kind.self"], "—", "—", "—"])
    expect(column("outside")).to_have_text([no, yes, no, no, yes])
    expect(column("uncertified")).to_have_text([no, yes, no, no, yes])
    expect(column("counted")).to_have_text([yes, yes, yes, no, yes])
    colour = "e => getComputedStyle(e).color"
    ink = page.locator("body").evaluate(colour)
    muted = card.locator('[data-note="sessions"]').evaluate(colour)  # a .muted note
    assert ink != muted
    assert [rows.nth(n).evaluate(colour) for n in range(5)] == [ink, ink, ink, muted, ink]
    with page.expect_download() as info:  # the window's every session, in English
        card.locator('[data-export="sessions-csv"]').click()
    assert info.value.suggested_filename.startswith("sessions-nmr-600-")
    header, *lines = Path(info.value.path()).read_text("utf-8-sig").splitlines()
    assert header.startswith("Start,End,Running (s),Counted") and len(lines) == 5
    assert fits_width(page)
    assert tables_needing_a_scroll(page) == []  # a phone shows each session as a card
    in_sight(column("counted").first, viewport)
    shot(page, screenshot_dir, "detail-sessions", viewport)

    user = new_page(viewport=viewport)
    login(user, stack, "outside_user")
    user.goto(f"{stack.url}/ui/#/instrument/nmr-600")
    expect(user.locator(".charts")).to_have_attribute("data-loaded", "true")
    own = user.locator('[data-section="sessions"]')
    expect(own.locator("h2")).to_have_text(en["sessions.mine"])
    expect(own.locator('td[data-key="start"]')).to_have_text(
        [s.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") for s in (starts[1], starts[4])])
    expect(own.locator('td[data-key="user_name"]')).to_have_text(
        [f"外单位用户 (u-out) ({en['board.booked']})", "外单位用户 (u-out)"])


def test_catalogue_queue_shows_what_to_review_and_admins_list_it(
    stack: Stack, new_page: NewPage, screenshot_dir: Path
) -> None:
    """dut's manager registers gc-1 and changes xrd-1's fees: both wait in the queue, the
    manager sees them without a button; the admin lists gc-1 and registered users get it."""
    auth = {"Authorization": f"Bearer {stack.tokens['dut_manager']}"}
    with httpx.Client(base_url=stack.url, headers=auth) as manager:
        assert manager.post("/instruments", json={
            "id": "gc-1", "name": "气相色谱仪", "institution_id": "dut"}).status_code == 201
        assert manager.patch("/instruments/xrd-1",
                             json={"fee_schedule": "500元/样"}).status_code == 200
    try:
        own = new_page()
        login(own, stack, "dut_manager")
        own.click('.nav a[href="#/catalogue"]')
        expect(own.locator(".report")).to_have_attribute("data-loaded", "true")
        expect(own.locator('table[data-table="catalogue"] td[data-key="id"]')).to_have_text(
            ["gc-1", "xrd-1"])
        expect(own.locator('[data-action="list"]')).to_have_count(0)

        admin = new_page()
        login(admin, stack, "admin")  # the board marks what users do not see
        expect(admin.locator('.tile[data-instrument="gc-1"] .tile-unlisted')).to_have_text(
            STRINGS["en"]["board.unlisted"])
        expect(admin.locator('.tile[data-instrument="xrd-1"] .tile-unlisted')).to_have_count(0)
        admin.click('.nav a[href="#/catalogue"]')
        rows = admin.locator('table[data-table="catalogue"] tbody tr')
        expect(rows).to_have_count(2)
        expect(rows.nth(0).locator('td[data-key="listing"]')).to_have_text(
            STRINGS["en"]["catalogue.unlisted_short"])
        expect(rows.nth(1).locator('td[data-key="listing"]')).to_have_text("Fees: — → 500元/样")
        shot(admin, screenshot_dir, "catalogue", DESKTOP)
        rows.nth(0).locator('[data-action="list"]').click()
        expect(admin.locator(".message .notice-ok")).to_contain_text("气相色谱仪 (gc-1)")
        expect(admin.locator('table[data-table="catalogue"] td[data-key="id"]')).to_have_text(
            ["xrd-1"])
        user = new_page()
        login(user, stack, "outside_user")
        assert "gc-1" in tiles(user)
    finally:
        stack.sql("DELETE FROM instrument WHERE id = 'gc-1'")
        stack.sql("UPDATE instrument i SET fee_schedule = '', listing = catalogue_entry(i)"
                  " WHERE id = 'xrd-1'")


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_page_fits_whoever_looks(
    stack: Stack, new_page: NewPage, viewport: ViewportSize, lang: str
) -> None:
    """Each role's pages in either language, with long names: long words (a file's columns,
    ids) wrap and pickers of long names narrow rather than widen the page past a phone's
    screen; on a desktop, names wrap in tables so that every column is in sight."""
    stack.sql("UPDATE instrument SET name = %(name)s,"
              " listing = jsonb_set(listing, '{name}', to_jsonb(%(name)s::text))"
              " WHERE id = 'xrd-1'",
              {"name": "X射线衍射仪 D8 ADVANCE with high-temperature chamber and sample changer"})
    stack.sql("UPDATE institution SET name = 'Dalian University of Technology Analysis and"
              " Testing Centre for Instruments' WHERE id = 'dut'")
    for who in ("admin", "dut_manager", "outside_user"):
        page = new_page(viewport=viewport, locale="zh-CN" if lang == "zh" else "en-US")
        login(page, stack, who)
        routes: list[str] = page.locator(".nav a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))")
        for route in [*routes, "#/instrument/xrd-1"]:  # dut's, listed
            page.goto(f"{stack.url}/ui/{route}")
            expect(page.locator('[data-loaded="true"]').first).to_be_attached()
            expect(page.locator('[data-loaded="false"]')).to_have_count(0)
            assert fits_width(page), f"{route} as {who} in {lang}"
            if viewport is DESKTOP:
                assert tables_needing_a_scroll(page) == [], f"{route} as {who} in {lang}"


def test_lab_manager_uploads_a_report_and_sees_it_against_the_measured_hours(
    stack: Stack, new_page: NewPage, screenshot_dir: Path
) -> None:
    """dut reports last year: xrd-1 100 h with nothing measured, ms-1 10 h (within 20 h)."""
    page = new_page()
    login(page, stack, "dut_manager")
    page.click('.nav a[href="#/evaluation"]')
    card = page.locator('[data-section="reported"]')
    expect(card.locator(".reported")).to_have_attribute("data-loaded", "true")

    def upload(text: str) -> None:
        report: FilePayload = {"name": "report.csv", "mimeType": "text/csv",
                               "buffer": text.encode()}
        page.set_input_files("#reported-file", files=[report])
        card.locator('.reported-form button[type="submit"]').click()

    try:
        upload("instrument_id,effective_hours\nxrd-1,100\nnmr-600,5\n")  # nmr-600 is neu's
        refusal = card.locator(".notice-error")  # the API's lines under the page's heading,
        # its near-same "1 bad row(s); nothing was stored" left out
        expect(refusal.locator(".detail")).to_have_text([STRINGS["en"]["notice.bad_lines"]])
        expect(refusal).to_have_attribute("title", re.compile("nothing was stored"))
        expect(refusal.locator("li")).to_have_text(
            ["Line 3: instrument 'nmr-600' belongs to another institution"])
        upload("instrument_id,effective_hours\nxrd-1,100\nms-1,10\n")
        expect(card.locator(".notice-ok")).to_contain_text("2")
        expect(card.locator('table[data-table="reported"] td[data-key="instrument_id"]')
               ).to_have_text(["xrd-1", "ms-1"])
        expect(card.locator('table[data-table="reported"] td[data-key="finding"]')).to_have_text(
            [STRINGS["en"]["reported.f.over_reported"], STRINGS["en"]["reported.f.consistent"]])
        expect(card.locator("[data-flagged]")).to_have_attribute("data-flagged", "1")
        card.screenshot(path=screenshot_dir / "reported-desktop.png")
    finally:
        stack.sql("DELETE FROM reported_use")


def test_exports_download_in_the_dashboard_language(stack: Stack, new_page: NewPage) -> None:
    page = new_page()
    login(page, stack, "evaluator")
    page.click('.nav a[href="#/utilisation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    with page.expect_download() as info:
        page.click('[data-export="institution-csv"]')
    download = info.value
    period = r"\d{4}-\d\d-\d\d-\d{4}-\d\d-\d\d"  # each table its own file, named by its grouping
    assert re.fullmatch(f"utilisation-institution-{period}.csv", download.suggested_filename)
    with page.expect_download() as by_category:
        page.click('[data-export="category-xlsx"]')
    assert re.fullmatch(f"utilisation-category-{period}.xlsx",
                        by_category.value.suggested_filename)
    text = Path(download.path()).read_text("utf-8-sig")
    header, *rows = text.splitlines()
    assert header.startswith("Group,Name,Instruments")
    assert sorted(r.split(",")[0] for r in rows) == ["dut", "neu"]

    page.click('.lang button[data-lang="zh"]')
    page.click('.nav a[href="#/evaluation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    with page.expect_download() as info:
        page.click('[data-export="institutions-xlsx"]')
    assert info.value.suggested_filename.endswith(".xlsx")
    assert Path(info.value.path()).read_bytes()[:2] == b"PK"


def test_tile_follows_the_instrument_live_without_reload(
    stack: Stack, new_page: NewPage, live_gateway: SimulatedProbe
) -> None:
    page = new_page()
    page.clock.install()  # time flows, and the test can skip ahead
    login(page, stack, "admin")
    tile = page.locator('.tile[data-instrument="icp-1"]')
    expect(tile).to_have_attribute("data-state", "idle", timeout=30_000)
    page.evaluate("window.__marker = 'still here'")
    navigations = page.evaluate("performance.getEntriesByType('navigation').length")

    started = time.monotonic()
    live_gateway.set(Reading(power_w=900.0, user="u-in"))
    expect(tile).to_have_attribute("data-state", "running", timeout=5_000)
    latency = time.monotonic() - started
    expect(tile.locator(".tile-user")).to_have_text("User: 校内用户 (u-in)")
    expect(page.locator('.chip[data-state="running"]')).to_have_attribute("data-count", "2")
    assert page.evaluate("window.__marker") == "still here", "the page was reloaded"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == navigations
    print(f"tile turned running {latency:.2f} s after the probe changed")

    # a new power reading alone sends no event: the board takes it within a minute
    live_gateway.set(Reading(power_w=950.0, user="u-in"))
    deadline = time.monotonic() + 10
    while not stack.sql("SELECT 1 FROM instrument_status WHERE instrument_id = 'icp-1'"
                        " AND power_w = 950") and time.monotonic() < deadline:
        time.sleep(0.1)
    expect(tile.locator(".tile-meta")).to_contain_text("900 W")
    page.clock.fast_forward(61_000)
    expect(tile.locator(".tile-meta")).to_contain_text("950 W")

    live_gateway.set(Reading(power_w=0.0))
    expect(tile).to_have_attribute("data-state", "off", timeout=5_000)

    # a power meter names nobody: who is at it is the user of the booking it runs in
    [(booking,)] = stack.sql(
        "INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status) VALUES"
        " ('icp-1', 'u-in', 'assisted', now() - interval '10 min', now() + interval '1 hour',"
        "  'approved') RETURNING id")
    try:
        live_gateway.set(Reading(power_w=900.0))
        expect(tile).to_have_attribute("data-state", "running", timeout=5_000)
        expect(tile.locator(".tile-user")).to_have_text("User: 校内用户 (u-in) (by booking)")
        live_gateway.set(Reading(power_w=0.0))
        expect(tile).to_have_attribute("data-state", "off", timeout=5_000)
    finally:
        stack.sql("DELETE FROM booking WHERE id = %s", (booking,))


def test_language_switch_changes_every_label_and_is_remembered(
    stack: Stack, new_page: NewPage, screenshot_dir: Path
) -> None:
    page = new_page(locale="en-US")
    page.goto(f"{stack.url}/")
    expect(page.locator("form.login h1")).to_have_text(STRINGS["en"]["login.title"])
    page.click('.lang button[data-lang="zh"]')
    expect(page.locator("form.login h1")).to_have_text(STRINGS["zh"]["login.title"])
    assert untranslated(page, "zh") == []
    login(page, stack, "evaluator")
    expect(page.locator(".nav a.active")).to_have_text(STRINGS["zh"]["nav.board"])
    expect(page.locator('.tile[data-instrument="nmr-600"] .tile-state')).to_have_text("运行中")
    labels: list[tuple[str, str]] = page.evaluate(
        "[...document.querySelectorAll('[data-i18n]')].map(e => [e.dataset.i18n, e.textContent])")
    assert labels and all(text == STRINGS["zh"][key] for key, text in labels)
    shot(page, screenshot_dir, "board-zh", DESKTOP)
    # the check sees the page: asked for English, it finds the Chinese labels
    assert ("text", STRINGS["zh"]["nav.board"]) in untranslated(page, "en")
    assert ("aria-label", STRINGS["zh"]["nav.main"]) in untranslated(page, "en")

    page.reload()  # the choice survives a reload (and the token this tab)
    expect(page.locator(".tiles")).to_have_attribute("data-loaded", "true")
    expect(page.locator(".nav a.active")).to_have_text(STRINGS["zh"]["nav.board"])
    every_page_in(page, stack, "zh")
    page.goto(f"{stack.url}/ui/#/board")
    expect(page.locator(".tiles")).to_have_attribute("data-loaded", "true")
    page.click('.lang button[data-lang="en"]')
    expect(page.locator(".nav a.active")).to_have_text("Status board")
    expect(page.locator('.tile[data-instrument="nmr-600"] .tile-state')).to_have_text("Running")
    every_page_in(page, stack, "en")
    page.click('.nav a[href="#/board"]')
    page.click("button.logout")
    expect(page.locator("form.login h1")).to_have_text(STRINGS["en"]["login.title"])
    assert untranslated(page, "en") == []


def test_lab_manager_sees_only_their_institution(
    stack: Stack, new_page: NewPage, screenshot_dir: Path
) -> None:
    page = new_page(viewport=PHONE)
    login(page, stack, "dut_manager")
    assert tiles(page) == {"xrd-1": "fault", "ms-1": "off"}
    expect(page.locator(".nav a")).to_have_count(5)  # evaluation: the published results
    expect(page.locator(".scope")).to_have_text(INSTITUTION_NAMES["dut"])
    expect(page.locator("strong[data-scope]")).to_have_text(INSTITUTION_NAMES["dut"])
    shot(page, screenshot_dir, "board-lab-manager", PHONE)

    page.click('.nav a[href="#/utilisation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    expect(page.locator('table[data-table="institution"] td[data-key="key"]')).to_have_text(["dut"])
    expect(page.locator('table[data-table="instrument"] td[data-key="key"]')).to_have_text(
        ["ms-1", "xrd-1"])
    assert chart(page, "institution")["labels"] == [INSTITUTION_NAMES["dut"]]

    # Another institution's instrument is refused as such, a page the role lacks as a page.
    page.goto(f"{stack.url}/ui/#/instrument/nmr-600")
    expect(page.locator(".notice strong")).to_have_text(STRINGS["en"]["error.forbidden_item"])
    expect(page.locator(".notice .detail")).to_contain_text("another institution")
    user = new_page()
    login(user, stack, "outside_user")
    user.goto(f"{stack.url}/ui/#/utilisation")
    expect(user.locator(".notice strong")).to_have_text(STRINGS["en"]["error.forbidden"])

    # A manager of the university sees its analysis centre's instruments too.
    other = new_page()
    login(other, stack, "neu_manager")
    assert set(tiles(other)) == {"nmr-600", "sem-1", "tem-1"}


def test_a_refusal_the_dashboard_has_no_words_for_is_all_chinese_on_a_chinese_page(
    stack: Stack, new_page: NewPage
) -> None:
    """Another institution's instrument answers 403 without a reason code: a Chinese page says
    what a 403 means, not the API's English (kept as the notice's title)."""
    page = new_page(viewport=PHONE, locale="zh-CN")
    login(page, stack, "dut_manager")
    page.goto(f"{stack.url}/ui/#/instrument/nmr-600")
    notice = page.locator(".notice")
    expect(notice.locator("strong")).to_have_text(STRINGS["zh"]["error.forbidden_item"])
    expect(notice.locator(".detail")).to_have_text([STRINGS["zh"]["error.status.403"]])
    assert not re.search(r"[A-Za-z]{3}", notice.inner_text()), notice.inner_text()
    expect(notice).to_have_attribute("title", re.compile("another institution"))


def test_unknown_and_revoked_tokens_go_back_to_login(stack: Stack, new_page: NewPage) -> None:
    page = new_page()
    page.goto(f"{stack.url}/")
    page.fill("#token", "  ")
    page.click("form.login button[type=submit]")  # nothing pasted: said, not ignored
    expect(page.locator('[data-error="login.empty"]')).to_have_text(STRINGS["en"]["login.empty"])
    page.fill("#token", "isk_not-a-token")
    page.click("form.login button[type=submit]")
    expect(page.locator('[data-error="login.invalid"]')).to_be_visible()

    login(page, stack, "evaluator")
    stack.sql("UPDATE api_token SET revoked_at = now()")
    page.click('.nav a[href="#/utilisation"]')
    expect(page.locator("form.login")).to_be_visible()
    expect(page.locator(".login-message")).to_contain_text(STRINGS["en"]["login.expired"])
    assert page.evaluate("sessionStorage.getItem('instrushare.token')") is None


def _bookings_page(page: Page, stack: Stack, who: str) -> None:
    login(page, stack, who)
    page.click('.nav a[href="#/bookings"]')
    report = page.locator('[data-page="bookings"] .report')
    expect(report).to_have_attribute("data-loaded", "true")
    expect(report).not_to_contain_text("null")


def test_bookings_requested_approved_refused_and_cancelled(
    stack: Stack, new_page: NewPage, screenshot_dir: Path
) -> None:
    day = (datetime.now(SHANGHAI) + timedelta(days=3)).date().isoformat()  # entered in UTC+8
    user = new_page()
    _bookings_page(user, stack, "outside_user")
    user.select_option("#book-instrument", "nmr-600")
    user.select_option("#book-purpose", "teaching")
    user.fill("#book-start", f"{day}T14:00")
    user.fill("#book-end", f"{day}T13:00")
    user.click("form.booking-form button[type=submit]")  # said at once, in the page's words
    expect(user.locator('[data-error="range"]')).to_have_text(STRINGS["en"]["common.bad_range"])
    later = (datetime.fromisoformat(day) + timedelta(days=31)).date().isoformat()
    user.fill("#book-end", f"{later}T14:01")
    user.click("form.booking-form button[type=submit]")
    expect(user.locator('[data-error="range"]')).to_have_text(STRINGS["en"]["book.too_long"])
    user.fill("#book-end", f"{day}T16:00")
    user.click("form.booking-form button[type=submit]")
    expect(user.locator(".notice-ok")).to_contain_text(STRINGS["en"]["book.requested_ok"])
    [(booking, kind, purpose, status)] = stack.sql(
        "SELECT id, kind, purpose, status FROM booking WHERE user_id = 'u-out'"
        " AND start_ts = %s", (datetime.fromisoformat(f"{day}T14:00+08:00"),))
    assert (kind, purpose, status) == ("assisted", "teaching", "requested")
    mine = user.locator(f'tr[data-id="{booking}"]')
    expect(mine.locator('td[data-key="status"]')).to_have_text(
        STRINGS["en"]["book.status.requested"])
    expect(mine.locator("button[data-action]")).to_have_count(1)  # cancel only

    manager = new_page()
    _bookings_page(manager, stack, "neu_manager")
    row = manager.locator(f'tr[data-id="{booking}"]')
    row.locator('button[data-action="approve"]').click()
    expect(row.locator('td[data-key="status"]')).to_have_text(
        STRINGS["en"]["book.status.approved"])
    expect(manager.locator(".notice-ok")).to_have_text(
        f"{STRINGS['en']['book.booking']} #{booking}: {STRINGS['en']['book.status.approved']}")
    # not begun: it can be cancelled, not completed
    expect(row.locator("button[data-action]")).to_have_count(1)
    expect(row.locator('button[data-action="cancel"]')).to_have_count(1)
    assert stack.sql("SELECT status FROM booking WHERE id = %s", (booking,)) == [("approved",)]
    shot(manager, screenshot_dir, "bookings", DESKTOP)

    # The same slot for someone else: the API's refusal and its reason are shown.
    other = new_page(viewport=PHONE)
    _bookings_page(other, stack, "inside_user")
    other.select_option("#book-instrument", "nmr-600")
    other.fill("#book-start", f"{day}T15:00")
    other.fill("#book-end", f"{day}T17:00")
    other.click("form.booking-form button[type=submit]")
    refusal = other.locator('[data-reason="slot_taken"]')  # worded by the dashboard, with the
    # booking in the way; the API's sentence, saying the same, is left out (kept as the title)
    expect(refusal.locator(".detail")).to_have_text(
        [STRINGS["en"]["reason.slot_taken"], f"{STRINGS['en']['book.booking']} #{booking}"])
    expect(refusal).to_have_attribute("title", re.compile(r"already booked in that window"))
    shot(other, screenshot_dir, "bookings-user", PHONE)

    # The booking's user may still cancel it before it begins; evaluators only read.
    user.reload()
    expect(mine.locator('td[data-key="status"]')).to_have_text(
        STRINGS["en"]["book.status.approved"])
    with answering(user, "book.confirm_cancel"):
        mine.locator('button[data-action="cancel"]').click()
    expect(mine.locator('td[data-key="status"]')).to_have_text(
        STRINGS["en"]["book.status.cancelled"])
    reader = new_page()
    _bookings_page(reader, stack, "evaluator")
    expect(reader.locator(f'tr[data-id="{booking}"]')).to_have_count(1)
    expect(reader.locator("button[data-action]")).to_have_count(0)


def _requested_booking(stack: Stack, start: datetime, end: datetime) -> int:
    """nmr-600 requested by the outside user through the API: the booking's id."""
    headers = {"Authorization": f"Bearer {stack.tokens['outside_user']}"}
    made = httpx.post(f"{stack.url}/bookings", headers=headers, json={
        "instrument_id": "nmr-600", "kind": "assisted",
        "start": start.isoformat(), "end": end.isoformat()})
    assert made.status_code == 201, made.text
    booking: int = made.json()["id"]
    return booking


def test_bookings_on_a_phone_and_refusals_in_the_page_language(
    stack: Stack, new_page: NewPage, screenshot_dir: Path
) -> None:
    """A manager's phone shows who asked and for when beside the buttons acting on a request;
    a refusal on a Chinese page is all Chinese, the API's English kept as its title."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=3)
    booking = _requested_booking(stack, day, day + timedelta(days=1))
    manager = new_page(viewport=PHONE)
    _bookings_page(manager, stack, "neu_manager")
    row = manager.locator(f'tr[data-id="{booking}"]')
    expect(row.locator('td[data-key="user_id"]')).to_contain_text("外单位用户")
    for cell in ('td[data-key="user_id"]', 'td[data-key="start"]', 'td[data-key="end"]',
                 'button[data-action="approve"]', 'button[data-action="reject"]'):
        in_sight(row.locator(cell), PHONE)
    assert "bookings" not in tables_needing_a_scroll(manager)
    shot(manager, screenshot_dir, "bookings-manager", PHONE)
    row.locator('button[data-action="approve"]').click()
    expect(row.locator('td[data-key="status"]')).to_have_text(
        STRINGS["en"]["book.status.approved"])

    user = new_page(locale="zh-CN")
    _bookings_page(user, stack, "inside_user")
    user.select_option("#book-instrument", "nmr-600")
    user.fill("#book-start", f"{day.date()}T10:00")  # within the day booked, whichever zone
    user.fill("#book-end", f"{day.date()}T12:00")
    user.click("form.booking-form button[type=submit]")
    refusal = user.locator('[data-reason="slot_taken"]')
    expect(refusal.locator(".detail")).to_have_text(
        [STRINGS["zh"]["reason.slot_taken"], f"{STRINGS['zh']['book.booking']} #{booking}"])
    assert not re.search(r"[A-Za-z]{3}", refusal.inner_text()), refusal.inner_text()
    expect(refusal).to_have_attribute("title", re.compile(r"already booked in that window"))


TILE_CONTRAST = """() => {
    const rgba = (c) => c.match(/[\\d.]+/g).map(Number);
    const lum = (rgb) => {
        const [r, g, b] = rgb.map((v) => v / 255)
            .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const tile = document.querySelector('.tile[data-instrument="nmr-600"]');
    tile.style.transition = 'none';  // the colour of the state set, not one on the way
    const found = [];
    for (const state of ['running', 'idle', 'off', 'fault', 'maintenance', 'offline']) {
        tile.dataset.state = state;
        const bg = rgba(getComputedStyle(tile).backgroundColor);
        for (const e of tile.querySelectorAll('span')) {
            const [r, g, b, a = 1] = rgba(getComputedStyle(e).color);
            let alpha = a;  // text drawn with opacity blends into the tile
            for (let n = e; n !== tile; n = n.parentElement) {
                alpha *= Number(getComputedStyle(n).opacity);
            }
            const fg = [r, g, b].map((v, i) => alpha * v + (1 - alpha) * bg[i]);
            const [hi, lo] = [lum(fg), lum(bg.slice(0, 3))].sort((x, y) => y - x);
            found.push([state, e.className, (hi + 0.05) / (lo + 0.05)]);
        }
    }
    return found;
}"""


def test_tile_text_reads_at_aa_contrast_on_every_state(stack: Stack, new_page: NewPage) -> None:
    """WCAG AA: 4.5:1 for every text of a tile (state, name, institution, power, user) on
    the colour of each state."""
    page = new_page()
    login(page, stack, "evaluator")
    found: list[tuple[str, str, float]] = page.evaluate(TILE_CONTRAST)
    assert {c for _, c, _ in found} >= {"tile-state", "tile-name", "tile-id", "tile-meta",
                                        "tile-user"}
    assert [f for f in found if f[2] < 4.5] == []


DATES_ON_LINES = """() => [...document.querySelectorAll('.tile-meta')].flatMap((meta) => {
    const walker = document.createTreeWalker(meta, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const found = /\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d/.exec(n.textContent);
        if (!found) continue;
        const range = document.createRange();
        range.setStart(n, found.index);
        range.setEnd(n, found.index + found[0].length);
        const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
        return [[found[0], lines.size]];
    }
    return [];
})"""


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_tile_never_breaks_a_date(
    stack: Stack, new_page: NewPage, viewport: ViewportSize
) -> None:
    """Tiles wrap long ids anywhere, but "since 2026-11-30 19:40" keeps its time on one line."""
    page = new_page(viewport=viewport)
    login(page, stack, "evaluator")
    lines: list[tuple[str, int]] = page.evaluate(DATES_ON_LINES)
    assert len(lines) == len(INSTRUMENTS) - 1  # every tile but tem-1's, never heard from
    assert [d for d in lines if d[1] != 1] == []


def test_the_category_filter_takes_a_code_or_a_name(stack: Stack, new_page: NewPage) -> None:
    """On a phone, under a label in sight: a code prefix, or a class's name or part of one in
    either language (the seed's sem-1 and tem-1 are of 0102, 质谱仪器, and ms-1 of 0101,
    Electron optical instruments); the filters stay when the language is switched."""
    page = new_page(viewport=PHONE)
    login(page, stack, "evaluator")
    category = page.get_by_label(STRINGS["en"]["board.filter_category"])
    expect(category).to_have_attribute("id", "category-filter")
    label = page.locator("label:has(#category-filter)")
    expect(label).to_be_in_viewport()
    assert label.inner_text().strip() == STRINGS["en"]["board.filter_category"]
    assert category.get_attribute("inputmode") in (None, "text")  # letters, not a number pad
    shown = page.locator(".tile:visible")
    for typed, instruments in (("01", sorted(i[0] for i in INSTRUMENTS)), ("0104", ["nmr-600"]),
                               ("质谱仪器", ["sem-1", "tem-1"]), ("Electron", ["ms-1"]),
                               ("mass spectrometers", ["sem-1", "tem-1"]),
                               ("Electron optical instruments", ["ms-1"]),
                               ("0102 Mass spectrometers", ["sem-1", "tem-1"])):
        category.fill(typed)
        expect(shown).to_have_count(len(instruments))
        assert sorted(t.get_attribute("data-instrument") or "" for t in shown.all()) == instruments
        expect(category).to_have_value(typed)  # nothing cut
        # the counts above count the class shown, not the whole board
        expect(page.locator(".count-total")).to_have_text(
            f"{len(instruments)} {STRINGS['en']['board.instruments']}")
    category.fill("no such class")
    expect(page.locator("#none-shown")).to_be_visible()
    category.fill("质谱")
    page.select_option("#state-filter", "idle")
    expect(shown).to_have_count(1)
    page.click('.lang button[data-lang="zh"]')
    expect(page.locator(".tiles")).to_have_attribute("data-loaded", "true")
    expect(page.get_by_label(STRINGS["zh"]["board.filter_category"])).to_have_value("质谱")
    expect(page.locator("#state-filter")).to_have_value("idle")
    expect(shown).to_have_count(1)
    expect(shown).to_have_attribute("data-instrument", "sem-1")


def test_a_short_range_gets_minute_ticks(stack: Stack, new_page: NewPage) -> None:
    """Half an hour on the power or timeline chart: a tick every 5 minutes, not a single one."""
    page = new_page()
    page.goto(f"{stack.url}/ui/")
    expect(page.locator("#token")).to_be_visible()
    minutes: list[float] = page.evaluate(
        """async () => {
            const { timeTicks } = await import(new URL('js/charts.js', document.baseURI));
            const lo = Date.UTC(2026, 10, 30, 1, 0);
            return timeTicks(lo, lo + 30 * 60e3).map((t) => (t.value - lo) / 60e3);
        }""")
    assert minutes == [0, 5, 10, 15, 20, 25, 30]


def test_a_long_range_gets_ticks_on_dates(stack: Stack, new_page: NewPage) -> None:
    """Three months or a year: every tick at midnight in Shanghai (a date on the axis), whole
    days apart, at most seven, not a step of hours landing at 03:00, 06:00, ..."""
    page = new_page()
    page.goto(f"{stack.url}/ui/")
    expect(page.locator("#token")).to_be_visible()
    for days in (92, 365):
        ticks: list[float] = page.evaluate(
            """async (days) => {
                const { timeTicks } = await import(new URL('js/charts.js', document.baseURI));
                const lo = Date.UTC(2026, 1, 3, 5, 30);  // 13:30 in Shanghai
                return timeTicks(lo, lo + days * 86400e3).map((t) => t.value);
            }""", days)
        shanghai_days = [(t / 1000 + 8 * 3600) / 86400 for t in ticks]
        assert 3 <= len(ticks) <= 7, (days, ticks)
        assert all(d == int(d) for d in shanghai_days), (days, shanghai_days)
        gaps = {b - a for a, b in pairwise(shanghai_days)}
        assert len(gaps) == 1, (days, gaps)


def test_the_api_reference_works_without_internet(stack: Stack, new_page: NewPage) -> None:
    """Swagger UI comes from the server itself: ``new_page`` fails on any request elsewhere,
    as an intranet without internet would, also once an operation is opened and tried."""
    page = new_page()
    page.goto(f"{stack.url}/docs")
    operation = page.locator("#operations-status-status_board_status_get")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    expect(operation.locator(".live-responses-table tbody .response-col_status")
           ).to_have_text("401")  # no token given
