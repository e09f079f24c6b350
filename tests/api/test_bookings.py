"""Bookings: eligibility, the overlap rule in the database, races, workflow, service records."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.api.conftest import NEXT_WEEK, Api, make_settings
from tests.api_server import serve

DAY = NEXT_WEEK + "T{:02d}:00:00+08:00"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _window(a: int, b: int) -> dict[str, str]:
    return {"start": DAY.format(a), "end": DAY.format(b)}


def _certify(api: Api, user: str, instrument: str, level: str = "self",
             until: str | None = None) -> None:
    with api.as_("admin") as c:
        r = c.post("/certifications", json={
            "user_id": user, "instrument_id": instrument, "level": level,
            "valid_from": "2026-01-01T00:00:00+08:00", "valid_until": until})
        assert r.status_code == 201, r.text


def _book(c: httpx.Client, instrument: str, kind: str, a: int, b: int) -> httpx.Response:
    return c.post("/bookings", json={"instrument_id": instrument, "kind": kind, **_window(a, b)})


def test_overlap_with_an_approved_booking_is_409(api: Api) -> None:
    _certify(api, "out1", "nmr")
    with api.as_("user") as user, api.as_("manager") as mgr, api.as_("firm") as firm:
        first = _book(user, "nmr", "self", 9, 12)
        assert first.status_code == 201, first.text
        assert first.json()["status"] == "requested"
        assert (first.json()["instrument_name"], first.json()["user_name"]) == (
            "核磁共振波谱仪", "外单位用户")
        assert mgr.post(f"/bookings/{first.json()['id']}/approve").status_code == 200
        clash = _book(firm, "nmr", "assisted", 11, 13)
        assert clash.status_code == 409
        assert "already booked" in clash.json()["message"]
        assert (clash.json()["error"], clash.json()["reason"]) == ("conflict", "slot_taken")
        # Touching windows do not overlap.
        assert _book(firm, "nmr", "assisted", 12, 13).status_code == 201


def test_users_see_the_instrument_by_its_listed_name(api: Api) -> None:
    """A rename not yet reviewed stays off users' bookings (catalogue review); staff see it."""
    api.sql("UPDATE instrument SET name = '600 MHz 核磁共振波谱仪' WHERE id = 'nmr'")
    with api.as_("user") as user, api.as_("manager") as mgr:
        made = _book(user, "nmr", "assisted", 9, 12).json()
        listed = user.get("/bookings").json()["items"]
        got = user.get(f"/bookings/{made['id']}").json()
        staff = mgr.get(f"/bookings/{made['id']}").json()
        cancelled = user.post(f"/bookings/{made['id']}/cancel").json()
    assert {made["instrument_name"], got["instrument_name"], cancelled["instrument_name"]} \
        | {b["instrument_name"] for b in listed} == {"核磁共振波谱仪"}
    assert staff["instrument_name"] == "600 MHz 核磁共振波谱仪"
    assert "listed_name" not in got


def test_bookings_name_the_instruments_unit(api: Api) -> None:
    """Each booking names its instrument's own unit (a sub-unit by its own name) beside its
    id, as made, listed, read and changed, for its user and its managers alike."""
    with api.as_("user") as user, api.as_("manager") as mgr:
        made = _book(user, "nmr", "assisted", 9, 12).json()
        seen = [made, *user.get("/bookings").json()["items"],
                *mgr.get("/bookings").json()["items"], mgr.get(f"/bookings/{made['id']}").json(),
                mgr.post(f"/bookings/{made['id']}/approve").json()]
    assert {(b["id"], b["institution_id"], b["institution_name"]) for b in seen} == {
        (made["id"], "uni-ac", "东北大学分析测试中心")}
    assert len(seen) == 5


def test_a_slot_a_user_already_holds_is_said_to_be_theirs(api: Api) -> None:
    """Theirs, approved: not "taken, choose another" but "already booked"; another user asking
    for it is told it is taken."""
    with api.as_("user") as user, api.as_("firm") as firm, api.as_("manager") as mgr:
        held = _book(user, "nmr", "assisted", 9, 12).json()["id"]
        assert mgr.post(f"/bookings/{held}/approve").status_code == 200
        mine, theirs = _book(user, "nmr", "sample", 10, 11), _book(firm, "nmr", "sample", 10, 11)
    assert (mine.status_code, mine.json()["reason"], mine.json()["details"]) == (
        409, "already_booked", {"booking_id": held})
    assert mine.json()["message"] == ("you have already booked this instrument in that window"
                                      f" (booking {held})")
    assert (theirs.status_code, theirs.json()["reason"]) == (409, "slot_taken")


def test_a_user_cannot_request_one_slot_twice(api: Api) -> None:
    """A second tab or a retried request must not queue a duplicate for the managers."""
    with api.as_("user") as user, api.as_("firm") as firm:
        first = _book(user, "nmr", "assisted", 9, 12).json()["id"]
        again = _book(user, "nmr", "sample", 11, 14)
        assert again.status_code == 409, again.text
        assert (again.json()["reason"], again.json()["details"]) == (
            "already_requested", {"booking_id": first})
        assert f"booking {first}" in again.json()["message"]
        # others may still ask for it, and so may the user elsewhere or after cancelling
        assert _book(firm, "nmr", "assisted", 9, 12).status_code == 201
        assert _book(user, "nmr", "assisted", 12, 13).status_code == 201
        assert user.post(f"/bookings/{first}/cancel").status_code == 200
        assert _book(user, "nmr", "assisted", 9, 12).status_code == 201
        listed = user.get("/bookings", params={"status": "requested"}).json()["items"]
    assert len(listed) == 2


def test_overlapping_requests_then_only_one_approval(api: Api) -> None:
    with api.as_("user") as user, api.as_("firm") as firm, api.as_("manager") as mgr:
        a = _book(user, "nmr", "assisted", 9, 12).json()["id"]
        b = _book(firm, "nmr", "sample", 10, 11).json()["id"]
        assert mgr.post(f"/bookings/{a}/approve").status_code == 200
        r = mgr.post(f"/bookings/{b}/approve")
        rejected = mgr.post(f"/bookings/{a}/reject")
    assert (r.status_code, r.json()["details"]) == (409, {"booking_id": a})
    assert r.json()["message"] == (f"booking {b} overlaps an approved booking of the same"
                                   f" instrument (booking {a})")
    assert rejected.json()["message"] == (f"booking {a} is approved: an approved booking cannot"
                                          " be rejected")


def _race(calls: list[Any]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


def test_two_clients_racing_for_a_slot_exactly_one_wins(api: Api) -> None:
    api.sql("UPDATE instrument SET auto_approve = true WHERE id = 'xrd'")
    with api.as_("user") as user, api.as_("firm") as firm:
        for hour in (8, 11, 14, 17):
            results = _race([
                lambda h=hour: _book(user, "xrd", "assisted", h, h + 2),
                lambda h=hour: _book(firm, "xrd", "assisted", h + 1, h + 3),
            ])
            codes = sorted(r.status_code for r in results)
            assert codes == [201, 409], [r.text for r in results]
    rows = api.sql("SELECT count(*) FROM booking WHERE instrument_id = 'xrd'"
                   " AND status = 'approved'")
    assert rows[0][0] == 4


def test_one_user_racing_with_itself_queues_one_request(api: Api) -> None:
    """Two tabs (or a retry) sending the same request at once: the database lets one in."""
    with api.as_("user") as user:
        for hour in (8, 11, 14):
            results = _race([lambda h=hour: _book(user, "nmr", "assisted", h, h + 2)] * 6)
            assert sorted(r.status_code for r in results) == [201] + [409] * 5
            won = next(r.json()["id"] for r in results if r.status_code == 201)
            assert {(r.json()["reason"], r.json()["details"]["booking_id"])
                    for r in results if r.status_code == 409} == {("already_requested", won)}
    rows = api.sql("SELECT count(*) FROM booking WHERE user_id = 'out1'"
                   " AND status = 'requested'")
    assert rows[0][0] == 3


def test_racing_approvals_exactly_one_wins(api: Api) -> None:
    with api.as_("user") as user, api.as_("firm") as firm, api.as_("manager") as mgr, \
            api.as_("admin") as admin:
        for hour in (8, 12, 16):
            a = _book(user, "nmr", "assisted", hour, hour + 2).json()["id"]
            b = _book(firm, "nmr", "assisted", hour + 1, hour + 3).json()["id"]
            results = _race([lambda a=a: mgr.post(f"/bookings/{a}/approve"),
                             lambda b=b: admin.post(f"/bookings/{b}/approve")])
            assert sorted(r.status_code for r in results) == [200, 409]


def test_self_operation_needs_certification_for_the_whole_window(api: Api) -> None:
    _certify(api, "out1", "nmr", until=DAY.format(10))
    with api.as_("user") as user:
        r = _book(user, "nmr", "self", 9, 12)
        assert r.status_code == 403
        assert "certification" in r.json()["message"]
        assert _book(user, "nmr", "self", 8, 10).status_code == 201
        assert _book(user, "nmr", "assisted", 10, 12).status_code == 201
    # An assisted-only certification does not allow self-operation.
    _certify(api, "firm1", "nmr", level="assisted")
    with api.as_("firm") as firm:
        assert _book(firm, "nmr", "self", 13, 14).status_code == 403


def test_revoked_certification_no_longer_counts(api: Api) -> None:
    _certify(api, "out1", "nmr")
    with api.as_("admin") as admin:
        cert = admin.get("/certifications", params={"user_id": "out1"}).json()["items"][0]
        assert admin.post(f"/certifications/{cert['id']}/revoke").status_code == 200
        assert admin.post(f"/certifications/{cert['id']}/revoke").status_code == 409
    with api.as_("user") as user:
        refused = _book(user, "nmr", "self", 9, 10)
    assert (refused.status_code, refused.json()["reason"]) == (403, "needs_certification")


@pytest.mark.parametrize(("end", "message"), [
    (f"{NEXT_WEEK}T09:00:00.000001+08:00", "a booking lasts at least a minute"),
    (f"{NEXT_WEEK}T08:59:00+08:00", "end must be after start"),
])
def test_a_booking_window_too_short_to_use_is_refused(api: Api, end: str, message: str) -> None:
    with api.as_("user") as user:
        r = user.post("/bookings", json={"instrument_id": "nmr", "kind": "assisted",
                                         "start": f"{NEXT_WEEK}T09:00:00+08:00", "end": end})
    assert r.status_code == 422, r.text
    assert message in r.text


@pytest.mark.parametrize(("end", "status"), [
    (timedelta(days=31), 201), (timedelta(days=31, seconds=1), 422)])
def test_a_booking_lasts_at_most_31_days(api: Api, end: timedelta, status: int) -> None:
    start = datetime.fromisoformat(f"{NEXT_WEEK}T09:00:00+08:00")
    with api.as_("user") as user:
        r = user.post("/bookings", json={"instrument_id": "nmr", "kind": "assisted",
                                         "start": start.isoformat(),
                                         "end": (start + end).isoformat()})
    assert r.status_code == status, r.text
    if status == 422:
        assert "a booking lasts at most 31 days" in r.json()["message"]


def test_a_decision_note_is_kept_trimmed_and_one_of_spaces_is_none(api: Api) -> None:
    with api.as_("user") as user, api.as_("manager") as mgr:
        first, second = (_book(user, "nmr", "assisted", h, h + 1).json()["id"] for h in (9, 11))
        approved = mgr.post(f"/bookings/{first}/approve", json={"note": "  请提前 10 分钟到  "})
        rejected = mgr.post(f"/bookings/{second}/reject", json={"note": " \u3000 "})
    assert approved.json()["note"] == "请提前 10 分钟到"
    assert (rejected.json()["status"], rejected.json()["note"]) == ("rejected", "")
    with api.as_("user") as user:  # a cancellation says why as well, the user's own too
        third = _book(user, "nmr", "assisted", 14, 15).json()["id"]
        cancelled = user.post(f"/bookings/{third}/cancel", json={"note": "样品未备好"})
    assert (cancelled.json()["status"], cancelled.json()["note"]) == ("cancelled", "样品未备好")


def test_a_certification_already_in_force_is_not_issued_twice(api: Api) -> None:
    _certify(api, "out1", "nmr", until="2027-01-01T00:00:00+08:00")
    again = {"user_id": "out1", "instrument_id": "nmr", "level": "self",
             "valid_from": "2026-06-01T00:00:00+08:00",
             "valid_until": "2027-01-01T00:00:00+08:00"}
    with api.as_("manager") as mgr:
        twice = mgr.post("/certifications", json=again)
        assert twice.status_code == 409, twice.text
        assert "already holds a self certification for nmr" in twice.json()["message"]
        # the year after, another level, or once the first is revoked: issued
        for body in ({**again, "valid_from": "2027-01-01T00:00:00+08:00",
                      "valid_until": "2028-01-01T00:00:00+08:00"},
                     {**again, "level": "assisted"}):
            assert mgr.post("/certifications", json=body).status_code == 201
        first = min(c["id"] for c in mgr.get("/certifications",
                                             params={"user_id": "out1"}).json()["items"])
        assert mgr.post(f"/certifications/{first}/revoke").status_code == 200
        assert mgr.post("/certifications", json=again).status_code == 201


def test_a_request_that_no_longer_qualifies_is_refused_to_the_approving_manager(
    api: Api
) -> None:
    """out1 asks for a self-operated slot while certified; the certification is revoked
    before a manager decides: the approval is a conflict, told in the manager's terms."""
    _certify(api, "out1", "nmr")
    with api.as_("user") as user, api.as_("admin") as admin:
        booking = _book(user, "nmr", "self", 9, 10).json()["id"]
        cert = admin.get("/certifications", params={"user_id": "out1"}).json()["items"][0]
        admin.post(f"/certifications/{cert['id']}/revoke")
        r = admin.post(f"/bookings/{booking}/approve")
    assert r.status_code == 409
    assert r.json()["message"] == ("the request can no longer be approved: user 'out1' holds no"
                                   " self-operation certification valid for the whole window")


def test_closed_instrument_refuses_outside_users_only(api: Api) -> None:
    with api.as_("user") as outside, api.as_("inside_user") as inside:
        r = _book(outside, "sem", "assisted", 9, 10)
        assert r.status_code == 403
        assert "not open to outside users" in r.json()["message"]
        assert r.json()["reason"] == "closed_to_outside"
        assert _book(inside, "sem", "assisted", 9, 10).status_code == 201
        assert _book(outside, "inc1", "assisted", 9, 10).status_code == 403
    # a sub-unit serves as its top-level institution does, whatever its own tier says
    api.sql("INSERT INTO institution (id, name, parent_id, tier) VALUES"
            " ('incub-lab', '孵化分室', 'incub', 'voucher')")
    api.sql("UPDATE instrument SET institution_id = 'incub-lab' WHERE id = 'inc1'")
    with api.as_("user") as outside:
        refused = _book(outside, "inc1", "assisted", 9, 10)
    assert (refused.status_code, refused.json()["reason"]) == (403, "incubation_pool")


def test_unapproved_user_cannot_book(api: Api) -> None:
    with api.as_("unapproved") as c:
        r = _book(c, "nmr", "assisted", 9, 10)
    assert r.status_code == 403
    assert "approved" in r.json()["message"]
    assert r.json()["reason"] == "registration_pending"


def test_workflow_service_record_and_rating(api: Api) -> None:
    with api.as_("user") as user, api.as_("manager") as mgr:
        bid = _book(user, "nmr", "sample", 9, 12).json()["id"]
        assert user.post(f"/bookings/{bid}/rating", json={"rating": 5}).status_code == 409
        assert mgr.post(f"/bookings/{bid}/complete").status_code == 409  # not approved yet
        assert mgr.post(f"/bookings/{bid}/approve", json={"note": "ok"}).json()["status"] \
            == "approved"
        rec = mgr.put(f"/bookings/{bid}/service-record",
                      json={"contract_no": "SY-1", "fee_rmb": "1800", "voucher_rmb": "900"})
        assert rec.status_code == 200, rec.text
        early = mgr.post(f"/bookings/{bid}/complete")
        assert (early.status_code, early.json()["message"]) == (  # local time, as booked
            409, f"booking {bid} begins at {NEXT_WEEK} 09:00 (UTC+8): it can be completed"
                 " once it has begun")
        api.sql("UPDATE booking SET start_ts = now() - interval '3 hours',"
                " end_ts = now() - interval '1 hour' WHERE id = %s", (bid,))
        assert mgr.post(f"/bookings/{bid}/complete").json()["status"] == "completed"
        rated = user.post(f"/bookings/{bid}/rating", json={"rating": 4, "comment": "好"})
        assert rated.status_code == 200
        body = user.get(f"/bookings/{bid}/service-record").json()
        assert (body["contract_no"], body["fee_rmb"], body["voucher_rmb"], body["rating"]) == \
            ("SY-1", "1800.00", "900.00", 4)
        late = user.post(f"/bookings/{bid}/cancel")
        assert (late.status_code, late.json()["message"]) == (
            409, f"booking {bid} is completed: a completed booking cannot be cancelled")
        again = mgr.post(f"/bookings/{bid}/complete")
        assert (again.status_code, again.json()["message"]) == (
            409, f"booking {bid} is already completed")
        bad = mgr.put(f"/bookings/{bid}/service-record",
                      json={"fee_rmb": "100", "voucher_rmb": "200"})
        assert bad.status_code == 422


def test_vouchers_only_at_voucher_institutions(api: Api) -> None:
    with api.as_("user") as user, api.as_("other_manager") as mgr:
        bid = _book(user, "xrd", "assisted", 9, 10).json()["id"]
        assert mgr.post(f"/bookings/{bid}/approve").status_code == 200
        r = mgr.put(f"/bookings/{bid}/service-record", json={"fee_rmb": "100",
                                                               "voucher_rmb": "50"})
        assert r.status_code == 409
        assert "voucher" in r.json()["message"]


def test_cancel_reject_and_visibility(api: Api) -> None:
    with api.as_("user") as user, api.as_("firm") as firm, api.as_("manager") as mgr, \
            api.as_("other_manager") as other:
        mine = _book(user, "nmr", "assisted", 9, 10).json()["id"]
        theirs = _book(firm, "nmr", "assisted", 10, 11).json()["id"]
        assert firm.post(f"/bookings/{mine}/cancel").status_code == 404
        assert user.post(f"/bookings/{mine}/cancel").json()["status"] == "cancelled"
        for write in ("reject", "approve", "cancel"):  # not theirs to see: as when read
            refused = other.post(f"/bookings/{theirs}/{write}")
            assert (refused.status_code, refused.json()["message"]) == (
                404, f"no booking {theirs}"), write
        assert other.put(f"/bookings/{theirs}/service-record",
                         json={"fee_rmb": 1}).status_code == 404
        with api.as_("evaluator") as evaluator:  # reads it, may not change it
            assert evaluator.post(f"/bookings/{theirs}/cancel").status_code == 403
        assert mgr.post(f"/bookings/{theirs}/reject").json()["status"] == "rejected"
        assert mgr.post(f"/bookings/{theirs}/approve").status_code == 409
        assert [b["id"] for b in user.get("/bookings").json()["items"]] == [mine]
        assert user.get(f"/bookings/{theirs}").status_code == 404
        assert {b["id"] for b in mgr.get("/bookings").json()["items"]} == {mine, theirs}
        assert other.get("/bookings").json()["total"] == 0


def test_database_refuses_overlap_without_the_api(api: Api) -> None:
    api.sql("INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
            " VALUES ('nmr', 'in1', 'self', '2026-12-01 09:00+08', '2026-12-01 10:00+08',"
            " 'approved')")
    import psycopg

    try:
        api.sql("INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
                " VALUES ('nmr', 'out1', 'self', '2026-12-01 09:30+08',"
                " '2026-12-01 10:30+08', 'completed')")
    except psycopg.errors.ExclusionViolation:
        return
    raise AssertionError("the exclusion constraint did not fire")


def _past_booking(api: Api, user: str, hours_ago: float, *, status: str = "approved",
                  length_h: float = 1, instrument: str = "nmr") -> int:
    """A booking that started ``hours_ago`` (written directly: the API books ahead)."""
    return int(api.sql(
        "INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
        " VALUES (%s, %s, 'assisted', now() - make_interval(secs => %s),"
        " now() - make_interval(secs => %s), %s) RETURNING id",
        (instrument, user, hours_ago * 3600, (hours_ago - length_h) * 3600, status))[0][0])


def test_bookings_are_made_ahead_and_begun_ones_are_the_managers_to_cancel(api: Api) -> None:
    with api.as_("user") as user, api.as_("manager") as mgr:
        r = user.post("/bookings", json={
            "instrument_id": "nmr", "kind": "assisted",
            "start": datetime.now(UTC).isoformat(), "end": DAY.format(10)})
        assert r.status_code == 422
        assert "already begun" in r.json()["message"]
        begun = _past_booking(api, "out1", 0.5, length_h=2)
        r = user.post(f"/bookings/{begun}/cancel")
        assert r.status_code == 409
        assert "managers" in r.json()["message"]
        stale_request = _past_booking(api, "out1", 5, status="requested")
        assert user.post(f"/bookings/{stale_request}/cancel").json()["status"] == "cancelled"
        assert mgr.post(f"/bookings/{begun}/cancel").json()["status"] == "cancelled"


def test_repeated_no_shows_suspend_requests(api: Api) -> None:
    grace_h = api.settings.no_show_grace_s / 3600
    assert api.settings.no_show_limit == 3
    window_h = api.settings.no_show_window_days * 24
    api.sql("UPDATE instrument SET min_session_s = 600 WHERE id = 'nmr'")
    oldest = _past_booking(api, "out1", 400)
    missed = [oldest, _past_booking(api, "out1", 300),
              _past_booking(api, "out1", 200, status="void")]
    # Not no-shows: used (by anyone) inside the window widened by the grace; not yet over
    # with its grace; cancelled; older than the window; someone else's; on an instrument not
    # heard from since (xrd's gateway fell silent before it began: it may hold the session).
    _heard_from(api, "nmr")
    api.sql("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
            " VALUES ('xrd', now() - interval '45 hours', 'idle', 'gw', 0)")
    _past_booking(api, "out1", 40, instrument="xrd")
    _past_booking(api, "out1", 100)
    api.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
            " VALUES ('nmr', now() - interval '99 hours' + interval '20 minutes',"
            " now() - interval '99 hours' + interval '50 minutes',"
            " now() - interval '99 hours' + interval '50 minutes', 'in1')")
    _past_booking(api, "out1", 1 + grace_h / 2)
    _past_booking(api, "out1", 50, status="cancelled")
    _past_booking(api, "out1", window_h + 10)
    _past_booking(api, "firm1", 20)
    with api.as_("user") as user, api.as_("manager") as mgr, api.as_("firm") as firm:
        r = _book(user, "nmr", "assisted", 9, 10)
        assert r.status_code == 403, r.text
        body = r.json()
        assert "suspended after 3 no-shows" in body["message"]
        assert body["details"]["no_shows"] == missed
        started = api.sql("SELECT start_ts FROM booking WHERE id = %s", (oldest,))[0][0]
        assert body["details"]["resumes_at"].endswith("Z")  # UTC, as every JSON time
        resumes = datetime.fromisoformat(body["details"]["resumes_at"])
        assert resumes == started + timedelta(days=api.settings.no_show_window_days)
        assert f" it resumes at {resumes.astimezone(SHANGHAI):%Y-%m-%d %H:%M}" in body["message"]
        assert "(UTC+8), or sooner" in body["message"]
        assert _book(firm, "nmr", "assisted", 9, 10).status_code == 201  # others still book
        # A session shorter than the instrument's minimum is noise: still a no-show.
        api.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts)"
                " VALUES ('nmr', now() - interval '200 hours',"
                " now() - interval '200 hours' + interval '5 minutes',"
                " now() - interval '200 hours' + interval '5 minutes')")
        assert _book(user, "nmr", "assisted", 10, 11).status_code == 403
        # The managers excuse one by cancelling it, a void one too: below the limit again.
        assert user.post(f"/bookings/{missed[2]}/cancel").status_code == 409
        assert mgr.post(f"/bookings/{missed[2]}/cancel").json()["status"] == "cancelled"
        assert _book(user, "nmr", "assisted", 10, 11).status_code == 201


def test_list_from_a_moment_on(api: Api) -> None:
    past = _past_booking(api, "out1", 48)
    with api.as_("user") as user:
        future = _book(user, "nmr", "assisted", 9, 10).json()["id"]

        def ids(**params: str) -> list[int]:
            return [b["id"] for b in user.get("/bookings", params=params).json()["items"]]

        assert ids() == [past, future]
        assert ids(ends_after=datetime.now(UTC).isoformat()) == [future]
        assert ids(ends_after=(datetime.now(UTC) - timedelta(days=3)).isoformat()) == [past, future]
        assert user.get("/bookings", params={"ends_after": "2026-01-01T00:00:00"}).status_code \
            == 422  # a moment needs its time zone


def _session(api: Api, instrument: str, from_h: float, to_h: float) -> None:
    """A usage session of ``instrument`` from ``from_h`` to ``to_h`` hours from now."""
    api.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts)"
            " VALUES (%s, now() + make_interval(secs => %s), now() + make_interval(secs => %s),"
            " now() + make_interval(secs => %s))",
            (instrument, from_h * 3600, to_h * 3600, to_h * 3600))


def _heard_from(api: Api, *instruments: str) -> None:
    """A sample of each instrument just now: the platform knows what it has been doing."""
    for instrument in instruments:
        api.sql("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
                " VALUES (%s, now(), 'idle', 'gw', 0)", (instrument,))


def _status(api: Api, booking_id: int) -> str:
    return str(api.sql("SELECT status FROM booking WHERE id = %s", (booking_id,))[0][0])


def test_a_booking_nobody_turns_up_to_is_void_and_its_window_free(api: Api) -> None:
    assert api.settings.booking_void_after_s == 3600
    lapsed = _past_booking(api, "firm1", 1.5, length_h=4)
    _heard_from(api, "nmr", "xrd")
    start = datetime.now(UTC) + timedelta(minutes=10)
    window = {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()}
    with api.as_("user") as user, api.as_("manager") as mgr:
        assert _status(api, lapsed) == "approved"  # the background release is off here
        taken = user.post("/bookings", json={"instrument_id": "nmr", "kind": "assisted",
                                             **window})
        assert taken.status_code == 201, taken.text  # the lapsed booking was released
        assert mgr.post(f"/bookings/{taken.json()['id']}/approve").json()["status"] \
            == "approved"
        released = mgr.get(f"/bookings/{lapsed}").json()
        assert (released["status"], released["decided_by"]) == ("void", "system:void")
        assert user.post("/bookings", json={"instrument_id": "nmr", "kind": "assisted",
                                            **window}).status_code == 409
        # A request made while the slot was held is approved once the holder has lapsed.
        held = _past_booking(api, "firm1", 1.5, length_h=4, instrument="xrd")
        waiting = _past_booking(api, "out1", -0.5, length_h=1, status="requested",
                                instrument="xrd")
        assert mgr.post(f"/bookings/{waiting}/approve").status_code == 404  # not theirs
    with api.as_("other_manager") as other:
        assert other.post(f"/bookings/{waiting}/approve").json()["status"] == "approved"
    assert _status(api, held) == "void"


def test_the_api_voids_lapsed_bookings_in_the_background(api: Api) -> None:
    after_h = api.settings.booking_void_after_s / 3600
    lapsed = _past_booking(api, "firm1", 1.5, length_h=4)
    # Not void: used late but within the void period; used from before the start (within the
    # no-show grace); not yet past the void period; over already (a no-show, kept as booked).
    late = _past_booking(api, "firm1", 1.5, length_h=4, instrument="xrd")
    _session(api, "xrd", -0.6, -0.55)
    early = _past_booking(api, "in1", 1.5, length_h=4, instrument="sem")
    _session(api, "sem", -1.8, -1.7)
    recent = _past_booking(api, "firm1", after_h - 0.1, length_h=4, instrument="inc1")
    over = _past_booking(api, "firm1", 8, length_h=2, instrument="inc1")
    # Void although used: too briefly (noise).
    api.sql("INSERT INTO instrument (id, name, institution_id, min_session_s)"
            " VALUES ('ftir', '红外光谱仪', 'uni-ac', 600), ('tga', '热重分析仪', 'uni-ac', 0)")
    noise = _past_booking(api, "in1", 1.5, length_h=4, instrument="ftir")
    _session(api, "ftir", -1.4, -1.4 + 0.1 / 60)
    # Not void: nothing heard from the instrument since its void period ended (the gateway
    # may be holding the samples of a session in its outbox).
    unheard = _past_booking(api, "in1", 1.5, length_h=4, instrument="tga")
    api.sql("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
            " VALUES ('tga', now() - interval '40 minutes', 'idle', 'gw', 0)")
    _heard_from(api, "nmr", "xrd", "sem", "inc1", "ftir")
    with serve(make_settings(api.database_url, booking_sweep_interval_s=0.2)):
        deadline = time.monotonic() + 10
        while _status(api, lapsed) != "void":  # one statement releases them all
            assert time.monotonic() < deadline, "the lapsed booking was not voided"
            time.sleep(0.1)
    assert {b: _status(api, b) for b in (late, early, recent, over, noise, unheard)} == {
        late: "approved", early: "approved", recent: "approved", over: "approved",
        noise: "void", unheard: "approved"}
