"""What a person typed survives the 中文 / EN switch, which draws the page anew: the token on the
login page, a booking request, an assessment, a report's file and a duplicate-purchase review."""

from __future__ import annotations

from datetime import datetime, timedelta

from playwright.sync_api import FilePayload, Page, expect

from tests.web.conftest import PHONE
from tests.web.stack import SHANGHAI, Stack
from tests.web.test_dashboard import STRINGS, NewPage, _bookings_page
from tests.web.test_evaluation_page import evaluation


def switch(page: Page, lang: str, heading: str) -> None:
    """Switch to ``lang``; the page's heading (an i18n key) is then in it, drawn anew."""
    page.click(f'.lang button[data-lang="{lang}"]')
    expect(page.locator("main h1").first).to_have_text(STRINGS[lang][heading])


def values(page: Page, ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = page.evaluate(
        "ids => Object.fromEntries(ids.map(id => [id, document.getElementById(id).value]))",
        ids)
    return found


def test_the_token_typed_stays(stack: Stack, new_page: NewPage) -> None:
    page = new_page(viewport=PHONE)
    page.goto(f"{stack.url}/")
    page.fill("#token", stack.tokens["admin"])
    switch(page, "zh", "login.title")
    expect(page.locator("#token")).to_have_value(stack.tokens["admin"])
    page.click("form.login button[type=submit]")  # the token kept is the one sent
    expect(page.locator(".tiles")).to_have_attribute("data-loaded", "true")


def test_a_booking_request_being_typed_stays(stack: Stack, new_page: NewPage) -> None:
    """Every field of the form, the instrument too, whose list the page loads anew: it is
    chosen again once the list has come; the status filter of the list below stays as well."""
    day = (datetime.now(SHANGHAI) + timedelta(days=4)).date().isoformat()
    page = new_page(viewport=PHONE, locale="zh-CN")
    _bookings_page(page, stack, "outside_user")
    expect(page.locator('#book-instrument option[value="xrd-1"]')).to_have_count(1)
    typed = {"book-instrument": "xrd-1", "book-kind": "sample", "book-purpose": "teaching",
             "book-start": f"{day}T14:30", "book-end": f"{day}T16:00",
             "booking-status": "requested"}
    for key in ("book-instrument", "book-kind", "book-purpose", "booking-status"):
        page.select_option(f"#{key}", typed[key])
    page.fill("#book-start", typed["book-start"])
    page.fill("#book-end", typed["book-end"])
    for lang in ("en", "zh"):
        switch(page, lang, "book.title")
        expect(page.locator("#book-instrument")).to_have_value("xrd-1")
        assert values(page, list(typed)) == typed, lang
    page.click(".booking-form button[type=submit]")  # what is sent is what was typed
    expect(page.locator(".notice-ok")).to_be_visible()
    [(instrument, kind, purpose)] = stack.sql(
        "SELECT instrument_id, kind, purpose FROM booking WHERE user_id = 'u-out'"
        " AND status = 'requested'")
    assert (instrument, kind, purpose) == ("xrd-1", "sample", "teaching")


def test_an_assessment_a_file_and_a_review_being_typed_stay(
    stack: Stack, new_page: NewPage
) -> None:
    """The forms of the evaluation page's cards, drawn once the year's results came."""
    page = new_page()
    evaluation(page, stack, "admin")
    page.select_option("#assess-institution", "dut")
    page.fill("#assess-mark", "87.5")
    page.fill("#assess-note", "现场核查")
    page.fill("#review-category", "质谱仪器")
    expect(page.locator('#review-region option[value="大连"]')).to_have_count(1)
    page.select_option("#review-region", "大连")
    chosen = page.locator(".reported-form .file-name")
    expect(chosen).to_have_text("No file chosen")  # the page's words, not the browser's
    page.set_input_files("#reported-file", files=[FilePayload(
        name="hours.csv", mimeType="text/csv", buffer=b"instrument_id,effective_hours\n")])
    typed = values(page, ["assess-institution", "assess-mark", "assess-note", "review-category",
                          "review-region", "reported-file"])
    assert typed["assess-institution"] == "dut" and typed["review-region"] == "大连"
    assert typed["reported-file"].endswith("hours.csv")
    switch(page, "zh", "eval.title")
    expect(page.locator(".report")).to_have_attribute("data-loaded", "true")
    expect(page.locator("#review-region")).to_have_value("大连")
    assert values(page, list(typed)) == typed
    expect(page.locator(".reported-form .file-button")).to_have_text("选择文件")
    expect(chosen).to_have_text("hours.csv")
    page.fill("#eval-year", str(datetime.now(SHANGHAI).year - 1))  # another year's form: empty
    page.click('form.filters button[type="submit"] >> nth=0')
    expect(page.locator('[data-section="publication"] [data-published]')).to_have_attribute(
        "data-year", str(datetime.now(SHANGHAI).year - 1))
    expect(page.locator("#assess-mark")).to_have_value("")
    expect(chosen).to_have_text("未选择文件")
