"""The bookings page in a real browser: where the outcome of a button shows on a phone, the
request form's instrument, and the question before a booking is withdrawn."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
from playwright.sync_api import Page, expect

from tests.web.conftest import PHONE
from tests.web.stack import Stack
from tests.web.test_dashboard import (
    STRINGS,
    NewPage,
    _bookings_page,
    _requested_booking,
    answering,
)


def _requests(stack: Stack, count: int) -> list[int]:
    """``count`` requests of the outside user on nmr-600 (neu's), a day apart from tomorrow."""
    day = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    return [_requested_booking(stack, day + timedelta(days=n), day + timedelta(days=n, hours=2))
            for n in range(1, count + 1)]


def _status(stack: Stack, booking: int) -> str:
    [(status,)] = stack.sql("SELECT status FROM booking WHERE id = %s", (booking,))
    return str(status)


def test_a_phone_shows_what_a_button_did_beside_the_booking(
    stack: Stack, new_page: NewPage
) -> None:
    """Far down a long list, the approval shows under the booking approved; a refusal of a
    booking its user withdrew meanwhile shows there too, all in Chinese on a Chinese page."""
    *_, withdrawn, approved = _requests(stack, 12)
    manager: Page = new_page(viewport=PHONE, locale="zh-CN")
    _bookings_page(manager, stack, "neu_manager")

    row = manager.locator(f'tr[data-id="{approved}"]')
    row.locator('button[data-action="approve"]').click()
    done = manager.locator(".notice-ok")
    expect(done).to_have_text(
        f"{STRINGS['zh']['book.booking']} #{approved}: {STRINGS['zh']['book.status.approved']}")
    expect(done).to_be_in_viewport()
    expect(row.locator('td[data-key="status"]')).to_have_text(
        STRINGS["zh"]["book.status.approved"])
    assert manager.evaluate("window.scrollY") > 844  # far down the list, not taken to its top

    cancelled = httpx.post(f"{stack.url}/bookings/{withdrawn}/cancel",
                           headers={"Authorization": f"Bearer {stack.tokens['outside_user']}"})
    assert cancelled.status_code == 200, cancelled.text
    manager.locator(f'tr[data-id="{withdrawn}"] button[data-action="approve"]').click()
    refusal = manager.locator(".notice-error")
    expect(refusal).to_be_in_viewport()
    expect(refusal.locator("strong")).to_have_text(STRINGS["zh"]["common.refused"])
    expect(refusal.locator(".detail")).to_have_text([STRINGS["zh"]["error.status.409"]])
    assert not re.search(r"[A-Za-z]{3}", refusal.inner_text()), refusal.inner_text()
    expect(refusal).to_have_attribute("title", re.compile(r"cancelled"))  # for support
    expect(done).to_have_count(0)  # what was said of the other booking is gone
    expect(manager.locator(f'tr[data-id="{withdrawn}"] td[data-key="status"]')).to_have_text(
        STRINGS["zh"]["book.status.cancelled"])
    assert _status(stack, withdrawn) == "cancelled"


def test_the_request_form_books_only_the_instrument_chosen(
    stack: Stack, new_page: NewPage
) -> None:
    """Nothing is chosen at first, and a request without a choice is refused at once; each
    instrument is offered by name, id and institution."""
    user = new_page()
    _bookings_page(user, stack, "outside_user")
    choice = user.locator("#book-instrument")
    expect(choice).to_have_value("")
    expect(choice.locator("option").first).to_have_text(STRINGS["en"]["book.choose_instrument"])
    expect(choice.locator('option[value="nmr-600"]')).to_have_text(
        "600 MHz 核磁共振波谱仪 (nmr-600) · 东北大学分析测试中心")
    user.click("form.booking-form button[type=submit]")
    expect(user.locator('[data-error="instrument"]')).to_have_text(
        STRINGS["en"]["book.no_instrument"])
    assert stack.sql("SELECT id FROM booking WHERE user_id = 'u-out'"
                     " AND status = 'requested'") == []
    user.select_option("#book-instrument", "sem-1")
    user.click("form.booking-form button[type=submit]")
    expect(user.locator(".notice-ok")).to_contain_text(STRINGS["en"]["book.requested_ok"])
    assert stack.sql("SELECT instrument_id FROM booking WHERE user_id = 'u-out'"
                     " AND status = 'requested'") == [("sem-1",)]


def test_the_question_before_withdrawing_says_what_each_button_does(
    stack: Stack, new_page: NewPage
) -> None:
    """The browser's dialog has OK and Cancel; Cancel must not read as "cancel the booking"."""
    [booking] = _requests(stack, 1)
    for lang, ok, keep in (("en", "OK withdraws", "Cancel keeps"),
                           ("zh", "按“确定”撤销", "按“取消”保留")):
        assert ok in STRINGS[lang]["book.confirm_cancel"]
        assert keep in STRINGS[lang]["book.confirm_cancel"]
    user = new_page(locale="zh-CN")
    _bookings_page(user, stack, "outside_user")
    cancel = user.locator(f'tr[data-id="{booking}"] button[data-action="cancel"]')
    with answering(user, "book.confirm_cancel", accept=False):
        cancel.click()
    assert _status(stack, booking) == "requested"  # Cancel kept it
    with answering(user, "book.confirm_cancel"):
        cancel.click()
    expect(user.locator(f'tr[data-id="{booking}"] td[data-key="status"]')).to_have_text(
        STRINGS["zh"]["book.status.cancelled"])


def test_a_rejection_gives_its_user_the_reason(stack: Stack, new_page: NewPage) -> None:
    """The manager's phone asks for the reason in the question before rejecting (Cancel keeps
    the request); the user reads it beside the status, and their status filter stays when they
    switch language."""
    kept, rejected = _requests(stack, 2)
    reason = "该时段仪器校准，请改约下周"
    manager = new_page(viewport=PHONE, locale="zh-CN")
    _bookings_page(manager, stack, "neu_manager")
    reject = manager.locator(f'tr[data-id="{rejected}"] button[data-action="reject"]')
    with answering(manager, "book.confirm_reject", accept=False):
        manager.locator(f'tr[data-id="{kept}"] button[data-action="reject"]').click()
    with answering(manager, "book.confirm_reject", text=f"  {reason} "):
        reject.click()
    status = manager.locator(f'tr[data-id="{rejected}"] td[data-key="status"]')
    expect(status).to_contain_text(STRINGS["zh"]["book.status.rejected"])
    assert stack.sql("SELECT id, status, note FROM booking WHERE id IN (%s, %s) ORDER BY id",
                     (kept, rejected)) == [(kept, "requested", ""), (rejected, "rejected", reason)]

    user = new_page(locale="zh-CN")
    _bookings_page(user, stack, "outside_user")
    user.select_option("#booking-status", "rejected")
    note = user.locator(f'tr[data-id="{rejected}"] td[data-key="status"] .booking-note')
    expect(note).to_have_text(f"{STRINGS['zh']['book.note']}: {reason}")
    expect(user.locator(f'tr[data-id="{kept}"]')).to_have_count(0)
    user.click('.lang button[data-lang="en"]')
    expect(user.locator("#booking-status")).to_have_value("rejected")
    expect(note).to_have_text(f"{STRINGS['en']['book.note']}: {reason}")
    expect(user.locator(f'tr[data-id="{kept}"]')).to_have_count(0)


def test_a_manager_withdrawing_a_booking_gives_its_user_the_reason(
    stack: Stack, new_page: NewPage
) -> None:
    """As a rejection does: asked in the question before (Cancel keeps the booking), stored
    as the booking's note, which its user reads."""
    kept, withdrawn = _requests(stack, 2)
    stack.sql("UPDATE booking SET status = 'approved' WHERE id IN (%s, %s)", (kept, withdrawn))
    reason = "仪器故障待修，本周预约取消"
    manager = new_page(locale="zh-CN")
    _bookings_page(manager, stack, "neu_manager")
    with answering(manager, "book.confirm_cancel_managed", accept=False):
        manager.locator(f'tr[data-id="{kept}"] button[data-action="cancel"]').click()
    with answering(manager, "book.confirm_cancel_managed", text=reason):
        manager.locator(f'tr[data-id="{withdrawn}"] button[data-action="cancel"]').click()
    expect(manager.locator(f'tr[data-id="{withdrawn}"] td[data-key="status"]')).to_contain_text(
        STRINGS["zh"]["book.status.cancelled"])
    assert stack.sql("SELECT id, status, note FROM booking WHERE id IN (%s, %s) ORDER BY id",
                     (kept, withdrawn)) == [(kept, "approved", ""),
                                            (withdrawn, "cancelled", reason)]
    for lang, ok, keep in (("en", "OK withdraws", "Cancel keeps"),
                           ("zh", "按“确定”撤销", "按“取消”保留")):
        assert ok in STRINGS[lang]["book.confirm_cancel_managed"]
        assert keep in STRINGS[lang]["book.confirm_cancel_managed"]
