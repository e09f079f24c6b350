"""An instrument's session log: each session with whom its time counts for, by the rules the
reports sum (docs/metrics.md), and the sums of the log are the report's figures; a registered
user reads their own sessions only.

Registry of tests/api/conftest.py: 'nmr' belongs to 'uni-ac' (under 'uni'); 'in1' is of
'uni' (inside), 'out1' of 'other' and 'firm1' of no institution (outside), 'new1' of 'other'
but not approved. Times are 10 March 2026 (+08).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

import pytest

from tests.api.conftest import Api

DAY = {"start": "2026-03-10T00:00:00+08:00", "end": "2026-03-11T00:00:00+08:00"}


def _at(moment: str) -> str:
    return moment if " " in moment else f"2026-03-10 {moment}+08"


@pytest.fixture
def day(api: Api) -> Api:
    """in1 certified, firm1's certification revoked before it began; out1 booked 09:00-10:00
    to run it themselves; a 2-minute noise filter; sessions of every kind on the 10th, one
    before it and one still open."""
    api.sql("UPDATE instrument SET min_session_s = 120 WHERE id = 'nmr'")
    api.sql("INSERT INTO certification (user_id, instrument_id, level, valid_from, revoked_at)"
            " VALUES ('in1', 'nmr', 'assisted', '2026-01-01+08', NULL),"
            " ('firm1', 'nmr', 'self', '2026-03-01+08', '2026-02-01+08')")
    api.sql("INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
            " VALUES ('nmr', 'out1', 'self', %s, %s, 'approved')", (_at("09:00"), _at("10:00")))
    for start, end, user in [
        ("2026-03-09 10:00+08", "2026-03-09 11:00+08", "in1"),  # the day before: not listed
        ("08:00", "08:30", "in1"),            # inside, certified
        ("09:10", "09:40", None),             # out1's by booking: outside, uncertified
        ("13:00", "13:20", "firm1"),          # outside, its certification never held
        ("15:00", "15:30", None),             # nobody's
        ("16:00", "16:01", "in1"),            # below the noise filter
        ("23:30", "2026-03-11 00:30+08", "new1"),  # crosses midnight; new1 not approved
    ]:
        api.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
                " VALUES ('nmr', %s, %s, %s, %s)", (_at(start), _at(end), _at(end), user))
    return api


def _log(api: Api, **params: Any) -> Any:
    with api.as_("manager") as c:
        r = c.get("/instruments/nmr/sessions", params={**DAY, **params})
    assert r.status_code == 200, r.text
    return r.json()


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def test_each_session_says_whom_its_time_counts_for(day: Api) -> None:
    found = _log(day)
    assert found["total"] == 6
    rows = [(_moment(s["start"]), _moment(s["end"]), s["running_s"], s["counted"],
             s["user_id"], s["user_from"], s["booking_kind"], s["outside"], s["uncertified"])
            for s in found["items"]]
    at = datetime.fromisoformat
    assert rows == [
        (at("2026-03-10T08:00+08:00"), at("2026-03-10T08:30+08:00"), 1800, True,
         "in1", "reported", None, False, False),
        (at("2026-03-10T09:10+08:00"), at("2026-03-10T09:40+08:00"), 1800, True,
         "out1", "booking", "self", True, True),
        (at("2026-03-10T13:00+08:00"), at("2026-03-10T13:20+08:00"), 1200, True,
         "firm1", "reported", None, True, True),
        (at("2026-03-10T15:00+08:00"), at("2026-03-10T15:30+08:00"), 1800, True,
         None, None, None, False, False),
        (at("2026-03-10T16:00+08:00"), at("2026-03-10T16:01+08:00"), 60, False,
         "in1", "reported", None, False, False),
        (at("2026-03-10T23:30+08:00"), at("2026-03-11T00:30+08:00"), 3600, True,
         "new1", "reported", None, False, True),
    ]
    assert [s["user_name"] for s in found["items"]] == [
        "校内用户", "外单位用户", "企业用户", None, "校内用户", "待审用户"]


def test_the_logs_sums_are_the_reports_figures(day: Api) -> None:
    with day.as_("evaluator") as c:
        r = c.get("/reports/utilisation",
                  params={"start": "2026-03-10", "end": "2026-03-10", "availability": "false"})
    assert r.status_code == 200, r.text
    nmr = {item["key"]: item for item in r.json()["items"]}["nmr"]
    lo, hi = (datetime.fromisoformat(DAY[k]) for k in ("start", "end"))

    def hours(keep: Any) -> float:
        """Counted sessions' time in the day, of those ``keep`` keeps (no margins here)."""
        return sum((min(datetime.fromisoformat(s["end"]), hi)
                    - max(datetime.fromisoformat(s["start"]), lo)).total_seconds()
                   for s in _log(day)["items"] if s["counted"] and keep(s)) / 3600

    assert nmr["effective_hours"] == pytest.approx(hours(lambda s: True), abs=1e-4)
    assert nmr["external_hours"] == pytest.approx(hours(lambda s: s["outside"]), abs=1e-4)
    assert nmr["uncertified_hours"] == pytest.approx(
        hours(lambda s: s["uncertified"]), abs=1e-4)
    assert nmr["unattributed_hours"] == pytest.approx(
        hours(lambda s: s["user_id"] is None), abs=1e-4)
    counted = [s for s in _log(day)["items"] if s["counted"]]
    assert nmr["sessions"] == len(counted)
    assert nmr["uncertified_sessions"] == sum(s["uncertified"] for s in counted)
    assert nmr["outside_users"] == len({s["user_id"] for s in counted if s["outside"]})


def test_an_open_session_runs_to_its_latest_sample(day: Api) -> None:
    day.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
            " VALUES ('nmr', %s, NULL, %s, 'in1')", (_at("20:00"), _at("20:45")))
    open_ = [s for s in _log(day)["items"] if s["end"] is None]
    assert [(s["start"], s["running_s"], s["last_ts"]) for s in open_] == [
        ("2026-03-10T12:00:00Z", 2700, "2026-03-10T12:45:00Z")]


def test_pages(day: Api) -> None:
    page = _log(day, limit=2, offset=2)
    assert (page["total"], page["limit"], page["offset"]) == (6, 2, 2)
    assert [s["user_id"] for s in page["items"]] == ["firm1", None]
    past = _log(day, limit=2, offset=10)
    assert (past["total"], past["items"]) == (6, [])


def test_a_file_holds_every_session_in_words(day: Api) -> None:
    with day.as_("evaluator") as c:
        r = c.get("/instruments/nmr/sessions",
                  params={**DAY, "format": "csv", "lang": "en", "limit": 1})
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == (
        'attachment; filename="sessions-nmr-2026-03-10-2026-03-11.csv"')
    with day.as_("evaluator") as c:  # the Shanghai day from 00:00 is 16:00 UTC the day before
        late = c.get("/instruments/nmr/sessions", params={
            "start": "2026-03-09T16:00:00Z", "end": "2026-03-10T16:00:00Z", "format": "csv"})
    assert late.headers["content-disposition"] == (
        'attachment; filename="sessions-nmr-2026-03-10-2026-03-11.csv"')
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == 6
    assert rows[1] == {"Start": "2026-03-10T09:10:00+08:00", "End": "2026-03-10T09:40:00+08:00",
                       "Running (s)": "1800.0", "Counted": "yes", "User": "out1",
                       "User name": "外单位用户", "User from": "booking",
                       "Booking kind": "self-operated", "Outside user": "yes",
                       "Uncertified": "yes"}


def test_a_registered_user_reads_their_own_sessions_only(day: Api) -> None:
    """out1's time is theirs by booking, in1's as reported; firm1 has no session that day."""
    def starts(who: str, **params: Any) -> tuple[int, list[str]]:
        with day.as_(who) as c:
            r = c.get("/instruments/nmr/sessions", params={**DAY, **params})
        assert r.status_code == 200, r.text
        return r.json()["total"], [s["start"] for s in r.json()["items"]]

    assert starts("user") == (1, ["2026-03-10T01:10:00Z"])
    assert starts("inside_user") == (2, ["2026-03-10T00:00:00Z", "2026-03-10T08:00:00Z"])
    assert starts("inside_user", limit=1, offset=1) == (2, ["2026-03-10T08:00:00Z"])
    with day.as_("user") as c:
        r = c.get("/instruments/nmr/sessions", params={**DAY, "format": "csv", "lang": "en"})
        assert [row["User"] for row in csv.DictReader(
            io.StringIO(r.content.decode("utf-8-sig")))] == ["out1"]
        day.sql("UPDATE instrument SET listing = NULL WHERE id = 'nmr'")
        assert c.get("/instruments/nmr/sessions", params=DAY).status_code == 404


@pytest.mark.parametrize(("params", "message"), [
    ({"start": DAY["end"], "end": DAY["start"]}, "end must be after start"),
    ({"start": "2025-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"}, "at most 400 days"),
    ({"start": "2026-03-10"}, "end"),
])
def test_bad_periods_are_refused(api: Api, params: dict[str, str], message: str) -> None:
    with api.as_("admin") as c:
        r = c.get("/instruments/nmr/sessions", params=params)
    assert (r.status_code, message in r.text) == (422, True), r.text


def test_an_unknown_instrument_is_not_found(api: Api) -> None:
    with api.as_("admin") as c:
        assert c.get("/instruments/nope/sessions", params=DAY).status_code == 404
