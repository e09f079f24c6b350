"""Reported against measured, for 2025 with the evaluation's data: nmr measured 600 h (60 h
external), sem, xrd and inc1 nothing. Tolerance: the larger of 10 % and 20 h."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.api.conftest import Api
from tests.api.test_evaluation import SETUP, UNIT_NAMES, units_in_file

PATH = "/evaluation/2025/reported-use"


@pytest.fixture
def year(api: Api) -> Api:
    for statement in SETUP:
        api.sql(statement)
    return api


def _send(c: httpx.Client, text: str) -> httpx.Response:
    return c.post(PATH, content=text.encode(), headers={"Content-Type": "text/csv"})


def _by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["instrument_id"]: i for i in body["items"]}


def test_reports_are_compared_with_what_was_measured(year: Api) -> None:
    with year.as_("manager") as manager:
        stored = _send(manager, "instrument_id,effective_hours,external_hours\n"
                                "nmr,650,60\nsem,300,0\n")
        assert stored.status_code == 200, stored.text
        assert stored.json() == {"imported": 2}
    with year.as_("other_manager") as other:
        assert _send(other, "instrument_id,effective_hours\nxrd,10\n").status_code == 200
    year.sql("UPDATE instrument SET monitored_since = '2025-06-01' WHERE id = 'xrd'")

    with year.as_("evaluator") as evaluator:
        body = evaluator.get(PATH).json()
        english = evaluator.get(PATH, params={"format": "csv", "lang": "en"})
    found = _by_id(body)
    # nmr: 650 - 600 = 50 <= 60 (10 %); sem: 300 with nothing measured; xrd: heard from in June
    assert (found["nmr"]["finding"], found["nmr"]["effective_difference"]) == ("consistent", 50)
    assert found["nmr"]["external_finding"] == "consistent"
    assert (found["sem"]["finding"], found["sem"]["measured_effective_hours"]) == \
        ("over_reported", 0)
    assert found["xrd"]["finding"] == "partly_monitored"
    assert [i["instrument_id"] for i in body["items"]] == ["sem", "nmr", "xrd"]
    assert body["flagged"] == 1 and found["sem"]["reported_by"].startswith("lab_manager:")
    lines = english.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith(
        "Instrument,Name,Institution,Institution name,Reported effective hours")
    # the unit by its registered name beside its id, in JSON and in the file
    named = {i: UNIT_NAMES[i] for i in ("nmr", "sem", "xrd")}
    assert {i: (f["institution_id"], f["institution_name"]) for i, f in found.items()} == named
    assert units_in_file(english, 0) == named
    assert lines[1].startswith("sem,") and ",over-reported," in lines[1]

    with year.as_("manager") as manager:  # a later report replaces the earlier
        assert _send(manager, "instrument_id,effective_hours,external_hours\n"
                              "nmr,400,120\n").status_code == 200
        own = _by_id(manager.get(PATH).json())
    assert set(own) == {"nmr", "sem"}  # a lab manager reads their own institution's
    assert (own["nmr"]["finding"], own["nmr"]["effective_difference"]) == ("under_reported", -200)
    assert (own["nmr"]["external_finding"], own["nmr"]["external_difference"]) == \
        ("over_reported", 60)


def test_a_bad_report_names_every_bad_line_and_stores_nothing(year: Api) -> None:
    with year.as_("manager") as manager:
        refused = _send(manager, "instrument_id,effective_hours,external_hours\n"
                                 "nmr,100,10\n"
                                 "xrd,100,0\n"          # another institution's
                                 "nope,5,0\n"           # unknown
                                 "sem,10,20\n"          # more external than effective
                                 "nmr,120,0\n"          # twice
                                 "sem,9000,0\n")        # more hours than a year has
    assert refused.status_code == 422
    lines = [(d["line"], d["reason"]) for d in refused.json()["details"]]
    assert [line for line, _ in lines] == [3, 4, 5, 6, 7]
    assert "another institution" in lines[0][1] and "unknown instrument" in lines[1][1]
    assert lines[2][1] == "external_hours cannot exceed effective_hours" and "line 2" in lines[3][1]
    assert year.sql("SELECT count(*) FROM reported_use")[0][0] == 0
    with year.as_("manager") as manager:
        assert _send(manager, "effective_hours\n5\n").status_code == 422  # no instrument_id
        assert _send(manager, "instrument_id,effective_hours\n").status_code == 422  # no rows
    with year.as_("evaluator") as evaluator:  # evaluators write nothing
        assert _send(evaluator, "instrument_id,effective_hours\nnmr,1\n").status_code == 403


def test_a_year_not_begun_takes_no_report_and_one_under_way_no_more_hours_than_it_had(
    year: Api
) -> None:
    now = datetime.now(UTC)
    this_year = now.astimezone(ZoneInfo("Asia/Shanghai")).year
    start = datetime(this_year, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    elapsed = int((now - start).total_seconds() // 3600)

    def send(y: int, hours: int) -> httpx.Response:
        with year.as_("manager") as manager:
            return manager.post(f"/evaluation/{y}/reported-use",
                                content=f"instrument_id,effective_hours\nnmr,{hours}\n".encode(),
                                headers={"Content-Type": "text/csv"})

    ahead = send(this_year + 1, 1)
    assert ahead.status_code == 409 and "has not begun" in ahead.json()["message"]
    too_many = send(this_year, elapsed + 2)
    assert too_many.status_code == 422
    assert f"hours {this_year} has had so far" in too_many.json()["details"][0]["reason"]
    assert send(this_year, max(elapsed - 2, 0)).status_code == 200


def test_an_instrument_named_again_after_a_bad_line_is_a_duplicate(year: Api) -> None:
    with year.as_("manager") as manager:
        refused = _send(manager, "instrument_id,effective_hours,external_hours\n"
                                 "nmr,10,20\n"      # more external than effective
                                 "nmr,10,1\n")      # nmr again
    assert refused.status_code == 422
    assert refused.json()["details"] == [
        {"line": 2, "reason": "external_hours cannot exceed effective_hours"},
        {"line": 3, "reason": "instrument_id 'nmr' already appears on line 2"}]


@pytest.mark.parametrize("path", [PATH, "/instruments/import"])
def test_an_upload_must_be_sent_as_utf8_csv(year: Api, path: str) -> None:
    """A form or JSON body posted here by mistake, or a file in another charset, is refused
    as such (415), not read as a file of bad lines; nothing is stored."""
    text = ("instrument_id,effective_hours\nnmr,10\n" if path == PATH
            else "id,name,institution_id\nnmr-2,NMR,uni\n")
    with year.as_("admin") as admin:
        for sent in ("application/x-www-form-urlencoded", "application/json", None,
                     "text/csv; charset=latin-1"):
            headers = {"Content-Type": sent} if sent else {}
            refused = admin.post(path, content=text.encode(), headers=headers)
            assert (refused.status_code, refused.json()["error"]) == (
                415, "unsupported_media_type"), sent
            assert ("text/csv" if "charset" not in (sent or "") else "UTF-8") in \
                refused.json()["message"]
        assert year.sql("SELECT count(*) FROM reported_use")[0][0] == 0
        accepted = admin.post(path, content=text.encode(),
                              headers={"Content-Type": 'text/csv; charset="UTF-8"'})
    assert accepted.status_code == 200, accepted.text


@pytest.mark.parametrize("path", [PATH, "/instruments/import"])
def test_a_file_saved_in_gbk_is_refused_saying_how_to_save_it(year: Api, path: str) -> None:
    """A spreadsheet's plain CSV is GBK on Chinese systems: the refusal names the first line
    that is not UTF-8 and the type to save as."""
    text = ("instrument_id,effective_hours\nnmr,10\n" if path == PATH
            else "id,name,institution_id\nnmr-2,核磁共振波谱仪,uni\n")
    with year.as_("admin") as admin:
        refused = admin.post(path, content=text.encode("gbk") + "# 备注\n".encode("gbk"),
                             headers={"Content-Type": "text/csv"})
    assert refused.status_code == 422
    assert refused.json()["message"].startswith(
        f"the file is not UTF-8 text (line {2 if path != PATH else 3}): save it as CSV UTF-8")
