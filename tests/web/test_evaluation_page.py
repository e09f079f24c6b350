"""The evaluation page in a real browser: what each table shows on a phone, which day each
list is about, and what a lab manager is told."""

from __future__ import annotations

from datetime import datetime

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.web.conftest import PHONE
from tests.web.stack import SHANGHAI, Stack
from tests.web.test_dashboard import INSTITUTION_NAMES, OWNER, STRINGS, NewPage, login
from tests.web.test_long_lists import in_pages_of

LONG_NAMES = {
    "institution": "Dalian University of Technology Analysis and Testing Centre for Instruments",
    "instrument": "X射线衍射仪 D8 ADVANCE with high-temperature chamber and sample changer",
    # a word wider than a phone gives the names' column
    "word": "Thermogravimetric-differential scanning calorimeter",
}


def whole_in_sight(cell: Locator) -> None:
    """``cell`` is in sight whole without scrolling sideways: on screen, and not cut by the
    edge of the box its table scrolls in."""
    box, frame = cell.evaluate("""c => [c.getBoundingClientRect().toJSON(),
        c.closest('.table-wrap').getBoundingClientRect().toJSON()]""")
    assert frame["left"] <= box["left"] and box["right"] <= min(frame["right"], PHONE["width"]), (
        box, frame)


def evaluation(page: Page, stack: Stack, who: str = "evaluator") -> None:
    login(page, stack, who)
    page.click('.nav a[href="#/evaluation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")


def choose_year(page: Page, year: int) -> None:
    page.fill("#eval-year", str(year))
    page.click('form.filters button[type="submit"] >> nth=0')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_phone_shows_grade_and_score_beside_the_names(
    stack: Stack, new_page: NewPage, lang: str
) -> None:
    """390 px wide, long names and ids as a province numbers them: each evaluation table shows
    every row's grade and score without scrolling sideways, in either language ("Grade" is as
    short a header as 等级), a name's long word wrapped."""
    stack.sql("UPDATE institution SET name = %s WHERE id = 'dut'", (LONG_NAMES["institution"],))
    stack.sql("INSERT INTO instrument (id, name, institution_id, category_code, value_rmb)"
              " VALUES ('ins-00042', %s, 'dut', '010501', 900000),"
              " ('ins-00043', %s, 'dut', '010501', 900000)",
              (LONG_NAMES["instrument"], LONG_NAMES["word"]))
    page = new_page(viewport=PHONE, locale="zh-CN" if lang == "zh" else "en-US")
    evaluation(page, stack)
    for table in ("institutions", "instruments"):
        for key in ("grade", "score"):
            cells = page.locator(f'table[data-table="{table}"] td[data-key="{key}"]')
            expect(cells.first).to_be_visible()
            for cell in cells.all():
                whole_in_sight(cell)


def test_the_overdue_list_follows_the_year_and_the_silent_list_says_it_is_now(
    stack: Stack, new_page: NewPage
) -> None:
    """old-1, accepted last June and networked this New Year's Day: drawn up on last year's
    last day it is not networked yet, today it is, late. The silent list is today's whatever
    the year, and says so. A year without grades says so too, and the year chosen stays when
    the language is switched."""
    now = datetime.now(SHANGHAI)
    stack.sql("INSERT INTO instrument (id, name, institution_id, value_rmb, accepted_on,"
              " networked_on) VALUES ('old-1', '旧仪器', 'dut', 5000000, %s, %s)",
              (f"{now.year - 1}-06-01", f"{now.year}-01-01"))
    page = new_page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "overdue-registrations" in r.url else None)
    evaluation(page, stack)
    networked = page.locator('table[data-table="overdue"] tr:has(td:text-is("old-1"))'
                             ' td[data-key="networked_on"]')
    note = page.locator('[data-note="overdue"]')
    for year, day, shown in ((now.year, now.date().isoformat(), f"{now.year}-01-01"),
                             (now.year - 1, f"{now.year - 1}-12-31", "—")):
        choose_year(page, year)
        assert f"as_of={day}" in asked[-1], asked[-1]
        expect(note).to_have_text(STRINGS["en"]["eval.overdue_note"].replace("{date}", day))
        expect(networked).to_have_text(shown)
        with page.expect_download(), page.expect_request(
                lambda r: "overdue-registrations" in r.url and "format=csv" in r.url) as export:
            page.click('[data-export="overdue-csv"]')
        assert f"as_of={day}" in export.value.url  # the file is the list shown
        expect(page.locator('[data-note="silent"]')).to_have_text(
            STRINGS["en"]["eval.silent_note"].replace("{days}", "30"))
    choose_year(page, 2020)  # before any instrument was accepted: a note, not an empty chart
    grades = page.locator('[data-section="grades"]')
    expect(grades.locator('[data-empty="grades"]')).to_have_text(STRINGS["en"]["common.empty"])
    expect(grades.locator("canvas")).to_have_count(0)
    page.click('.lang button[data-lang="zh"]')
    expect(page.locator('[data-note="silent"]')).to_have_text(
        STRINGS["zh"]["eval.silent_note"].replace("{days}", "30"))
    expect(page.locator("#eval-year")).to_have_value("2020")
    expect(note).to_have_text(STRINGS["zh"]["eval.overdue_note"].replace("{date}", "2020-12-31"))
    expect(grades.locator('[data-empty="grades"]')).to_have_text(STRINGS["zh"]["common.empty"])


def test_every_list_names_each_unit_however_many_the_province_registers(
    stack: Stack, new_page: NewPage
) -> None:
    """Each list names its rows' units as the API gives them, the id on hover, not from the
    page's list of names: with that list cut to one unit a request (dut, the first by id), as
    a province past the 1,000 the page loads has it, neu's and neu-ac's instruments are named
    too, in the evaluation lists, the reports against the measured hours, the duplicate
    review and the period's service records."""
    year = datetime.now(SHANGHAI).year
    owner = {**OWNER, "late-1": "neu-ac"}
    stack.sql("INSERT INTO instrument (id, name, institution_id, value_rmb, accepted_on)"
              " VALUES ('late-1', '未联网仪器', 'neu-ac', 5000000, current_date - 100)")
    stack.sql("INSERT INTO reported_use (year, instrument_id, effective_hours, reported_by)"
              " VALUES (%s, 'nmr-600', 100, 'test')", (year,))
    page = new_page()
    in_pages_of(page, 1, "institutions")
    evaluation(page, stack)
    expect(page.locator(".reported")).to_have_attribute("data-loaded", "true")
    page.fill("#review-category", "0102")  # sem-1 (neu-ac) and tem-1 (neu)
    page.click('[data-section="review"] button[type="submit"]')
    expect(page.locator('[data-review="done"]')).to_have_count(1)

    def named(table: str, id_key: str) -> set[str]:
        """The units of ``table``'s instruments, each checked named (the id on hover)."""
        rows = page.locator(f'table[data-table="{table}"] tbody tr')
        expect(rows.first).to_be_visible()
        units: set[str] = set()
        for row in rows.all():
            unit = owner[row.locator(f'td[data-key="{id_key}"]').inner_text()]
            cell = row.locator('td[data-key="institution_name"] span')
            expect(cell).to_have_text(INSTITUTION_NAMES[unit])
            expect(cell).to_have_attribute("title", unit)
            units.add(unit)
        return units

    for table, id_key in (("instruments", "instrument_id"), ("low", "key"),
                          ("silent", "instrument_id"), ("overdue", "instrument_id"),
                          ("reported", "instrument_id"), ("review", "instrument_id")):
        assert named(table, id_key) - {"dut"}, table  # a unit the page's list does not name
    page.click('.nav a[href="#/utilisation"]')
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    served = page.locator('table[data-table="services"] td[data-key="institution_name"] span')
    expect(served).to_have_text([INSTITUTION_NAMES["neu-ac"]])  # nmr-600's service
    expect(served).to_have_attribute("title", "neu-ac")


def test_lab_managers_are_not_told_of_provisional_scores_they_do_not_see(
    stack: Stack, new_page: NewPage
) -> None:
    page = new_page(viewport=PHONE, locale="zh-CN")
    evaluation(page, stack, "dut_manager")
    choose_year(page, datetime.now(SHANGHAI).year)  # not over: nothing published
    expect(page.locator('[data-section="publication"] [data-published]')).to_have_attribute(
        "data-published", "false")
    expect(page.locator("#eval-covers")).to_have_text("")


def test_an_unknown_class_code_is_said_in_the_page_language(
    stack: Stack, new_page: NewPage
) -> None:
    """0199 looks like a code but names no class: said as an unknown name is, at once."""
    page = new_page(locale="zh-CN")
    evaluation(page, stack)
    review = page.locator('[data-section="review"]')
    for typed in ("0199", "15"):
        page.fill("#review-category", typed)
        review.locator('button[type="submit"]').click()
        expect(review.locator('[data-review="done"]')).to_have_count(1)
        expect(review.locator('[data-error="category"]')).to_have_text(
            STRINGS["zh"]["review.unknown_class"])
    page.fill("#review-category", "010201")  # a type's code: the API names it by its class
    review.locator('button[type="submit"]').click()
    expect(review.locator(".verdict")).to_be_visible()
    expect(review.locator('[data-review="done"]')).to_have_count(1)


def test_the_silent_list_says_which_instruments_never_reported(
    stack: Stack, new_page: NewPage
) -> None:
    """tem-1 never reported: its days silent say so, in either language, rather than a dash;
    ms-1, last heard 40 days ago, counts its days."""
    stack.sql("UPDATE instrument_status SET last_ts = now() - interval '40 days 1 hour'"
              " WHERE instrument_id = 'ms-1'")
    page = new_page()
    evaluation(page, stack)
    days = page.locator('table[data-table="silent"] td[data-key="silent_days"]')
    silent = page.locator('table[data-table="silent"] tbody tr td[data-key="instrument_id"]')
    expect(silent).to_have_text(["tem-1", "ms-1"])
    expect(days).to_have_text([STRINGS["en"]["eval.never_reported"], "40"])
    page.click('.lang button[data-lang="zh"]')
    expect(days).to_have_text([STRINGS["zh"]["eval.never_reported"], "40"])
