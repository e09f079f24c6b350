"""Annual evaluation for 2025 with scores computed by hand from the documented defaults.

nmr: 90 sessions x 6 h by an inside user + 10 x 6 h by an outside user = 600 h, 60 h external.
  operation 40 x 600/1200 = 20; sharing 20 x min(1, 0.10/0.10) = 20; management: registry
  complete 10 + fee schedule 10 + registered on time 10 + availability 0 (no samples) = 30.
  score 70 -> 合格.
xrd: no use; category, value and acceptance filled (3 of 6 -> 5), no fees, not networked
  within 30 working days (-> 0), availability 0: score 5 -> 不合格.
sem, inc1: category and value only (2 of 6 -> 3.33) + not subject to the deadline (10) = 13.33.
Institutions: uni (nmr, sem) = (70 + 13.33) / 2 = 41.67; incub 13.33; other 5.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import openpyxl
import pytest

from monitor_api import EvaluationRules
from monitor_api.exports import XLSX_TYPE
from monitor_api.routers import evaluation as evaluation_router
from tests.api.conftest import Api, make_settings
from tests.api_server import serve

SETUP = [
    "UPDATE instrument SET model = 'AVANCE', maker = 'Bruker', accepted_on = '2024-12-02',"
    " networked_on = '2024-12-10', location = 'B101', fee_schedule = '500元/小时'"
    " WHERE id = 'nmr'",
    "UPDATE instrument SET accepted_on = '2025-01-06' WHERE id = 'xrd'",
    "INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
    " SELECT 'nmr', d + interval '9 hours', d + interval '15 hours', d + interval '15 hours',"
    "        CASE WHEN n <= 90 THEN 'in1' ELSE 'out1' END"
    " FROM generate_series(1, 100) n, LATERAL (SELECT ('2025-01-01 00:00+08'::timestamptz"
    "      + (n * 3) * interval '1 day') AS d) x",
    "INSERT INTO gateway (id, bd_seq, online, changed_at) VALUES ('gw1', 1, true, now())",
    "INSERT INTO instrument_status (instrument_id, gateway_id, state, since, last_ts)"
    " VALUES ('nmr', 'gw1', 'idle', now(), now())",
]


@pytest.fixture
def year(api: Api) -> Api:
    for statement in SETUP:
        api.sql(statement)
    return api


def test_instrument_scores_and_grades(year: Api) -> None:
    with year.as_("evaluator") as c:
        items = {i["instrument_id"]: i for i in
                 c.get("/evaluation/2025/instruments").json()["items"]}
    nmr = items["nmr"]
    assert nmr["effective_hours"] == pytest.approx(600)
    assert (nmr["operation"], nmr["sharing"], nmr["management"]) == (20, 20, 30)
    assert (nmr["score"], nmr["grade"]) == (70, "合格")
    assert (items["xrd"]["score"], items["xrd"]["grade"]) == (5, "不合格")
    assert items["sem"]["score"] == pytest.approx(13.33)


def test_institution_ranking_and_export(year: Api) -> None:
    with year.as_("admin") as c:
        ranked = c.get("/evaluation/2025/institutions").json()["items"]
        xlsx = c.get("/evaluation/2025/institutions", params={"format": "xlsx"})
        english = c.get("/evaluation/2025/institutions", params={"format": "csv", "lang": "en"})
    assert [(r["rank"], r["institution_id"], r["score"], r["stars"]) for r in ranked] == [
        (1, "uni", 41.67, 0), (2, "incub", 13.33, None), (3, "other", 5, 0)]
    # uni: nmr open, sem not; the incubation pool may not serve, whatever its flag says
    assert [r["open_share"] for r in ranked] == [0.5, 0, 1]
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][-2:] == ("等级 Grade", "星级 Stars")
    assert rows[1][1] == "uni" and rows[1][-2:] == ("不合格 fail", 0)
    header, first, *_ = english.content.decode("utf-8-sig").splitlines()
    assert first.split(",")[header.split(",").index("Grade")] == "fail"  # a word, not a code


UNIT_NAMES = {"nmr": ("uni-ac", "东北大学分析测试中心"), "sem": ("uni-ac", "东北大学分析测试中心"),
              "xrd": ("other", "大连理工大学"), "inc1": ("incub", "孵化实验室")}
"""Each instrument's unit, by id and name, as the seed registers them."""


def units_in_file(response: httpx.Response, first: int) -> dict[str, tuple[str, str]]:
    """Each row's instrument and its unit's id and name, from the file's column ``first``
    and the three after it (instrument, name, unit, unit name)."""
    if response.headers["content-type"] == XLSX_TYPE:
        sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
        assert sheet is not None
        rows = [[str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    else:
        rows = [line.split(",") for line in response.content.decode("utf-8-sig").splitlines()]
    return {row[first]: (row[first + 2], row[first + 3]) for row in rows[1:]}


def test_instrument_files_name_each_unit_beside_its_id(year: Api) -> None:
    """An evaluator reads names, not ids: the instruments' files, live and published (also a
    publication made before they carried names) and the duplicate-purchase review, give the
    unit's name beside its id, headed in the language asked for."""
    with year.as_("admin") as admin:
        assert admin.put("/evaluation/2025/publication", json={}).status_code == 200
    paths = ("/evaluation/2025/instruments", "/evaluation/2025/published/instruments")
    with year.as_("evaluator") as c:
        items = c.get(paths[0]).json()["items"]
        files = [c.get(path, params={"format": fmt, "lang": lang}) for path in paths
                 for fmt, lang in (("csv", "both"), ("xlsx", "zh"), ("csv", "en"))]
        review = c.get("/evaluation/2025/duplicate-review",
                       params={"category": "01", "format": "csv", "lang": "en"})
        ranking = c.get("/evaluation/2025/institutions", params={"format": "csv"})
        year.sql("UPDATE evaluation_publication SET instruments = (SELECT"
                 " jsonb_agg(i - 'institution_name') FROM jsonb_array_elements(instruments) i)")
        earlier = c.get(paths[1]).json()["items"]
    assert {i["instrument_id"]: (i["institution_id"], i["institution_name"])
            for i in items} == UNIT_NAMES
    assert {i["instrument_id"]: (i["institution_id"], i["institution_name"])
            for i in earlier} == UNIT_NAMES
    for response in files:
        assert units_in_file(response, 0) == UNIT_NAMES
    headers = [f.content.decode("utf-8-sig").splitlines()[0] for f in (files[0], files[2])]
    assert headers[0].startswith("仪器编号 Instrument,名称 Name,单位 Institution,"
                                 "单位名称 Institution name,")
    assert headers[1].startswith("Instrument,Name,Institution,Institution name,")
    assert units_in_file(review, 0) == {i: UNIT_NAMES[i] for i in ("nmr", "sem", "xrd")}
    header, *rows = ranking.content.decode("utf-8-sig").splitlines()
    assert header.startswith("排名 Rank,单位 Institution,名称 Name,")
    assert [row.split(",")[1:3] for row in rows] == [
        ["uni", "东北大学"], ["incub", "孵化实验室"], ["other", "大连理工大学"]]


def test_lists(year: Api) -> None:
    with year.as_("evaluator") as c:
        low = c.get("/evaluation/2025/low-utilisation").json()
        silent = c.get("/evaluation/silent", params={"days": 30}).json()
        overdue, overdue_zh = (c.get("/evaluation/overdue-registrations", params={
            "as_of": "2025-12-31", "format": "csv", "lang": lang}) for lang in ("en", "zh"))
    assert [i["key"] for i in low["items"]] == ["inc1", "sem", "xrd"]
    owners = {i["instrument_id"]: i["institution_id"] for i in silent["items"]}
    assert {i["key"]: i["institution_id"] for i in low["items"]} == owners
    lines = overdue.content.decode("utf-8-sig").splitlines()
    assert 'filename="overdue-registrations-2025-12-31.csv"' in overdue.headers[
        "content-disposition"]
    assert lines[0].startswith("Instrument,Name,Institution")
    assert [line.split(",")[0] for line in lines[1:]] == ["xrd"]
    for response, column, word in ((overdue, "Deadline estimated", "no"),
                                   (overdue_zh, "期限为估算", "否")):  # words, not False
        header, first = response.content.decode("utf-8-sig").splitlines()
        assert first.split(",")[header.split(",").index(column)] == word


NAMED_LISTS: dict[str, tuple[dict[str, str | int], set[str]]] = {
    "/evaluation/2025/low-utilisation": ({}, {"inc1", "sem", "xrd"}),
    "/evaluation/silent": ({"days": 30}, {"inc1", "sem", "xrd"}),
    "/evaluation/overdue-registrations": ({"as_of": "2025-12-31"}, {"xrd"}),
}
"""Each list's query and the instruments it holds with ``SETUP``."""


def test_lists_name_each_unit_beside_its_id(year: Api) -> None:
    """The low-use, silent and overdue lists, as the evaluation, give each instrument's unit
    by its registered name beside its id, in JSON and in the files, headed in the language
    asked for."""
    with year.as_("evaluator") as c:
        for path, (params, listed) in NAMED_LISTS.items():
            items = c.get(path, params=params).json()["items"]
            english, chinese = (c.get(path, params={**params, "format": fmt, "lang": lang})
                                for fmt, lang in (("csv", "en"), ("xlsx", "zh")))
            expected = {i: UNIT_NAMES[i] for i in listed}
            assert {i.get("key", i.get("instrument_id")): (i["institution_id"],
                                                          i["institution_name"])
                    for i in items} == expected, path
            assert units_in_file(english, 0) == units_in_file(chinese, 0) == expected, path
            header = english.content.decode("utf-8-sig").splitlines()[0].split(",")
            assert header[2:4] == ["Institution", "Institution name"], path
            sheet = openpyxl.load_workbook(io.BytesIO(chinese.content)).active
            assert sheet is not None
            assert [cell.value for cell in sheet[1]][2:4] == ["单位", "单位名称"], path


def test_a_silent_file_says_which_instruments_never_reported(year: Api) -> None:
    year.sql("INSERT INTO instrument (id, name, institution_id) VALUES ('mute', 'm', 'uni')")
    with year.as_("evaluator") as c:
        listed = c.get("/evaluation/silent", params={"days": 30}).json()["items"]
        files = [c.get("/evaluation/silent", params={"days": 30, "format": "csv", "lang": lang})
                 for lang in ("en", "zh")]
    never = {i["instrument_id"] for i in listed if i["last_data"] is None}
    assert "mute" in never
    for response, word in zip(files, ("never reported", "从未上报"), strict=True):
        header, *lines = response.content.decode("utf-8-sig").splitlines()
        at = header.split(",").index("Last data" if word.isascii() else "最后数据时间")
        worded = {line.split(",")[0] for line in lines if line.split(",")[at] == word}
        assert worded == never


def test_the_silent_list_says_which_instruments_await_disposal(year: Api) -> None:
    """An instrument marked for disposal stays on the list, its silence explained, in JSON and
    in words in the files."""
    year.sql("UPDATE instrument SET awaiting_disposal = true WHERE id = 'sem'")
    with year.as_("evaluator") as c:
        listed = c.get("/evaluation/silent", params={"days": 30}).json()["items"]
        english, chinese = (c.get("/evaluation/silent",
                                  params={"days": 30, "format": "csv", "lang": lang})
                            for lang in ("en", "zh"))
    assert {i["instrument_id"]: i["awaiting_disposal"] for i in listed} == {
        "inc1": False, "sem": True, "xrd": False}
    for response, column, words in ((english, "Awaiting disposal", ("yes", "no")),
                                    (chinese, "待报废", ("是", "否"))):
        header, *lines = response.content.decode("utf-8-sig").splitlines()
        at = header.split(",").index(column)
        assert {line.split(",")[0]: line.split(",")[at] for line in lines} == {
            "inc1": words[1], "sem": words[0], "xrd": words[1]}


def test_rules_are_configuration(year: Api, database_url: str) -> None:
    rules = EvaluationRules(full_use_hours=600, excellent=85, star_scores=[10, 40, 50, 60])
    auth = {"Authorization": f"Bearer {year.tokens['evaluator']}"}
    with serve(make_settings(database_url, evaluation=rules)) as url, httpx.Client(
        base_url=url, headers=auth
    ) as c:
        items = {i["instrument_id"]: i for i in
                 c.get("/evaluation/2025/instruments").json()["items"]}
        stars = {i["institution_id"]: i["stars"] for i in
                 c.get("/evaluation/2025/institutions").json()["items"]}
        nmr_class = c.get("/evaluation/2025/duplicate-review", params={"category": "0104"}).json()
    assert (items["nmr"]["operation"], items["nmr"]["score"], items["nmr"]["grade"]) == \
        (40, 90, "优秀")
    # uni (90 + 13.33) / 2 = 51.67 reaches 10, 40 and 50; the incubation pool is not rated
    assert stars == {"uni": 3, "other": 0, "incub": None}
    # nmr's 600 h now reach full use: no spare hours in its class
    assert (nmr_class["verdict"], nmr_class["fully_used"], nmr_class["shareable"]) == \
        ("no_spare_capacity", 1, 0)
    assert (nmr_class["category_name"], nmr_class["category_name_en"]) == \
        ("光谱仪器", "Optical spectrometers")
    assert nmr_class["items"][0]["capacity"] == "fully_used"


def test_only_instruments_at_the_value_threshold_are_evaluated(
    year: Api, database_url: str
) -> None:
    """At 1,000,000 RMB: nmr (5.2M) and sem (2.1M) of uni; not xrd (800k) or inc1 (400k),
    nor their institutions; an instrument without a registered value still is."""
    year.sql("INSERT INTO instrument (id, name, institution_id) VALUES ('nov', '无原值', 'other')")
    rules = EvaluationRules(min_value_rmb=1_000_000)
    auth = {"Authorization": f"Bearer {year.tokens['evaluator']}"}
    with serve(make_settings(database_url, evaluation=rules)) as url, httpx.Client(
        base_url=url, headers=auth
    ) as c:
        instruments = [i["instrument_id"] for i in
                       c.get("/evaluation/2025/instruments").json()["items"]]
        institutions = [i["institution_id"] for i in
                        c.get("/evaluation/2025/institutions").json()["items"]]
        low = [i["key"] for i in c.get("/evaluation/2025/low-utilisation").json()["items"]]
    assert sorted(instruments) == ["nmr", "nov", "sem"]
    assert sorted(institutions) == ["other", "uni"]  # other: through nov only
    assert low == ["nov", "sem"]


def test_a_two_year_cycle_judges_hours_per_year_over_both(year: Api, database_url: str) -> None:
    """With cycle_years = 2 the evaluation named 2025 covers 2024 and 2025: nmr, networked in
    2023, is judged on both years whole, so full use is 2 x 1,200 h. 20 more sessions of 6 h by the
    inside user in 2024: 720 h, 60 h external. operation 40 x 720/2400 = 12; sharing 20 x
    (60/720)/0.10 = 16.67; management 30: 58.67 -> 不合格. Its low-use threshold is 800 h.
    The annual evaluation of 2025 is unchanged (70), and what was published under the cycle
    still says which years it covers. The duplicate-purchase review stays on 2025 alone."""
    year.sql("UPDATE instrument SET accepted_on = '2023-11-01', networked_on = '2023-11-10'"
             " WHERE id = 'nmr'")
    year.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
             " SELECT 'nmr', d + interval '9 hours', d + interval '15 hours',"
             "        d + interval '15 hours', 'in1'"
             " FROM generate_series(1, 20) n, LATERAL (SELECT ('2024-01-01 00:00+08'::timestamptz"
             "      + (n * 7) * interval '1 day') AS d) x")
    admin = {"Authorization": f"Bearer {year.tokens['admin']}"}
    settings = make_settings(database_url, evaluation=EvaluationRules(cycle_years=2))
    with serve(settings) as url, httpx.Client(base_url=url, headers=admin) as c:
        found = c.get("/evaluation/2025/instruments").json()
        ranked = c.get("/evaluation/2025/institutions").json()
        low = c.get("/evaluation/2025/low-utilisation").json()
        cycle_review = c.get("/evaluation/2025/duplicate-review", params={"category": "0104"})
        assert c.put("/evaluation/2025/publication", json={"note": "两年一评"}).status_code == 200
    nmr = next(i for i in found["items"] if i["instrument_id"] == "nmr")
    assert (found["year"], found["first_year"], ranked["first_year"]) == (2025, 2024, 2024)
    assert (nmr["effective_hours"], nmr["external_hours"]) == (pytest.approx(720),
                                                               pytest.approx(60))
    assert (nmr["evaluated_days"], nmr["target_hours"]) == (731, 2400)
    assert (nmr["operation"], nmr["sharing"], nmr["management"]) == (12, 16.67, 30)
    assert (nmr["score"], nmr["grade"]) == (58.67, "不合格")
    assert (low["first_year"], low["below_hours"]) == (2024, 800)
    assert {i["key"]: i["threshold_hours"] for i in low["items"]}["nmr"] == 800
    with year.as_("admin") as c:  # the default rules: one year
        annual = c.get("/evaluation/2025/instruments").json()
        published = c.get("/evaluation/2025/published/institutions").json()
        annual_review = c.get("/evaluation/2025/duplicate-review", params={"category": "0104"})
    assert annual["first_year"] == 2025
    assert next(i for i in annual["items"] if i["instrument_id"] == "nmr")["score"] == 70
    assert cycle_review.json() == annual_review.json()
    assert cycle_review.json()["items"][0]["target_hours"] == 1200
    assert (published["year"], published["first_year"]) == (2025, 2024)


@pytest.mark.parametrize("scores", [[70, 60], [-1, 50], [10, 20, 30, 40, 50, 60]])
def test_star_scores_must_ascend_within_100(scores: list[float]) -> None:
    with pytest.raises(ValueError, match="star"):
        EvaluationRules(star_scores=scores)


def test_an_instrument_is_judged_on_the_part_of_the_year_it_was_monitored(year: Api) -> None:
    """xrd joined the platform on 20 Oct 2025: 73 days, a fifth of the year. Its 40 sessions
    x 3 h = 120 h (12 h by an outside firm) meet a target of 1200 x 73/365 = 240 h halfway:
    operation 20; openness 10% -> sharing 20; management 5 (registry 3 of 6) + 0 (no fees)
    + 0 (overdue) + 10 (up all of its 73 days, though only a fifth of the year): 55.
    inc1 joined in 2026: not evaluated for 2025. Had xrd been accepted in January, it would be
    judged from its registration deadline instead: a gateway switched on late earns no smaller
    target."""
    year.sql("UPDATE instrument SET accepted_on = '2025-09-10' WHERE id = 'xrd'")  # due 29 Oct
    year.sql("UPDATE instrument SET monitored_since = '2025-10-20 00:00+08' WHERE id = 'xrd'")
    year.sql("UPDATE instrument SET monitored_since = '2026-02-01 00:00+08' WHERE id = 'inc1'")
    year.sql("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
             " SELECT 'xrd', t, 'idle', 'gw-x', row_number() OVER (ORDER BY t)"
             " FROM generate_series('2025-10-20 00:00+08'::timestamptz,"
             "                      '2026-01-01 00:00+08', interval '10 minutes') t")
    year.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
             " SELECT 'xrd', d + interval '9 hours', d + interval '12 hours',"
             "        d + interval '12 hours', CASE WHEN n <= 36 THEN 'out1' ELSE 'firm1' END"
             " FROM generate_series(1, 40) n, LATERAL (SELECT '2025-10-20 00:00+08'::timestamptz"
             "      + n * interval '1 day' AS d) x")
    with year.as_("evaluator") as c:
        items = {i["instrument_id"]: i for i in
                 c.get("/evaluation/2025/instruments").json()["items"]}
        low = c.get("/evaluation/2025/low-utilisation").json()
        report = c.get("/reports/utilisation", params={
            "start": "2025-01-01", "end": "2025-12-31", "group_by": "instrument"}).json()
        csv = c.get("/evaluation/2025/instruments", params={"format": "csv", "lang": "en"})
    xrd = items["xrd"]
    assert (xrd["effective_hours"], xrd["openness_ratio"]) == (120, 0.1)
    assert (xrd["operation"], xrd["sharing"], xrd["management"]) == (20, 20, 15)
    assert (xrd["score"], xrd["grade"]) == (55, "不合格")
    assert (xrd["availability"], xrd["evaluated_days"]) == (1.0, 73)
    assert datetime.fromisoformat(xrd["monitored_since"]) == datetime(2025, 10, 19, 16,
                                                                       tzinfo=UTC)
    # the utilisation report's availability is, as the evaluation's, a share of the time on
    # the platform: before it the instrument was not offline, it was not there; inc1, there
    # only from 2026, has none in 2025
    availability = {r["key"]: r["availability"] for r in report["items"]}
    assert (availability["xrd"], availability["inc1"]) == (1.0, None)
    assert "inc1" not in items
    assert (items["nmr"]["evaluated_days"], items["nmr"]["monitored_since"]) == (365, None)
    # low use: xrd's 120 h clear its threshold of 400 x 73/365 = 80 h; inc1 is not listed
    assert [(i["key"], i["threshold_hours"]) for i in low["items"]] == [("sem", 400)]
    header = csv.content.decode("utf-8-sig").splitlines()[0]
    assert "Monitored since,Days evaluated" in header
    # accepted 6 Jan 2025: 30 official working days (the Spring Festival's off) end on 21 Feb
    year.sql("UPDATE instrument SET accepted_on = '2025-01-06' WHERE id = 'xrd'")
    with year.as_("evaluator") as c:
        late = next(i for i in c.get("/evaluation/2025/instruments").json()["items"]
                    if i["instrument_id"] == "xrd")
    assert (late["evaluated_days"], late["target_hours"]) == (313, round(1200 * 313 / 365, 2))
    assert late["availability"] == round(73 / 313, 4)


def _samples(api: Api, instrument: str, rows: list[tuple[str, str]]) -> None:
    api.sql("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
            " SELECT %s, t.ts::timestamp AT TIME ZONE 'Asia/Shanghai', t.state, 'gw', 0"
            " FROM unnest(%s::text[], %s::text[]) AS t (ts, state)",
            (instrument, [r[0] for r in rows], [r[1] for r in rows]))


def test_an_institutions_hours_are_its_instruments_summed_unrounded(year: Api) -> None:
    """20 more minutes on nmr and on sem (both of uni): 600 h 20 min and 20 min, shown as
    600.3333 and 0.3333, but uni's 600 h 40 min are 600.6667, as the utilisation report says,
    not 600.6666."""
    year.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
             " SELECT i, '2025-12-30 09:00+08', '2025-12-30 09:20+08', '2025-12-30 09:20+08',"
             " 'in1' FROM unnest(ARRAY['nmr', 'sem']) i")
    with year.as_("evaluator") as c:
        instruments = {i["instrument_id"]: i["effective_hours"] for i in
                       c.get("/evaluation/2025/instruments").json()["items"]}
        uni = next(i for i in c.get("/evaluation/2025/institutions").json()["items"]
                   if i["institution_id"] == "uni")
        report = c.get("/reports/utilisation", params={
            "start": "2025-01-01", "end": "2025-12-31", "group_by": "institution",
            "institution_id": "uni", "availability": "false"}).json()["items"]
    assert (instruments["nmr"], instruments["sem"]) == (600.3333, 0.3333)
    assert uni["effective_hours"] == report[0]["effective_hours"] == 600.6667
    assert uni["external_hours"] == report[0]["external_hours"] == 60


def test_a_year_not_begun_evaluates_nothing(year: Api) -> None:
    """sem and inc1 have no acceptance, networking or monitoring date, so they are judged on
    the year gone: for a year that has not begun, none; they are not listed with 0 days."""
    with year.as_("evaluator") as c:
        instruments = c.get("/evaluation/2100/instruments").json()
        institutions = c.get("/evaluation/2100/institutions").json()
        review = c.get("/evaluation/2100/duplicate-review", params={"category": "01"}).json()
    assert (instruments["total"], institutions["total"], review["total"]) == (0, 0, 0)
    assert review["verdict"] == "none_registered"


def test_a_late_registration_counts_against_the_years_it_was_late_in(year: Api) -> None:
    """sem, accepted 2 Jan 2023, was networked on 1 Jun 2023, months after its deadline: the
    2023 evaluation holds it against sem (a quarter of the management points, 10), 2025's
    does not; not networked at all, it would count in 2025 too."""
    def management(evaluated: int) -> float:
        with year.as_("evaluator") as c:
            items = c.get(f"/evaluation/{evaluated}/instruments").json()["items"]
        return float(next(i for i in items if i["instrument_id"] == "sem")["management"])

    year.sql("UPDATE instrument SET accepted_on = '2023-01-02', networked_on = '2023-06-01'"
             " WHERE id = 'sem'")
    late_then, on_time_now = management(2023), management(2025)
    year.sql("UPDATE instrument SET networked_on = NULL WHERE id = 'sem'")
    still_late = management(2025)
    assert on_time_now - still_late == pytest.approx(10, abs=0.01)
    assert management(2023) == late_then
    assert on_time_now - late_then >= 10 - 0.01  # 2023: late (its availability may differ too)


def test_running_state_and_sharing_mode_in_the_national_classes(year: Api) -> None:
    """sem: four faults in 2025 -> occasional, not open -> internal; the last two 16 days
    apart with nothing in between (offline), so its fault at the year's end is 4 days old, not
    awaiting repair. xrd: six (the default
    threshold) -> frequent, open at a service institution -> external. inc1: in fault from
    20 Dec to the year's end, 12 days (>= 7) -> awaiting repair; in a sub-unit of an
    incubation-pool institution (the sub-unit's own tier does not count) -> internal. nmr
    marked for disposal -> awaiting disposal, not shared."""
    _samples(year, "sem", [("2025-03-01 10:00", "idle"), ("2025-03-01 10:10", "fault"),
                           ("2025-03-01 10:20", "idle"), ("2025-03-01 10:30", "fault"),
                           ("2025-03-01 10:40", "idle")])
    for lo, hi in (("2025-12-10 00:00", "2025-12-12 00:00"), ("2025-12-28 00:00",
                                                              "2025-12-31 23:55")):
        year.sql("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
                 " SELECT 'sem', t, 'fault', 'gw', 0 FROM generate_series("
                 " (%s::timestamp AT TIME ZONE 'Asia/Shanghai'),"
                 " (%s::timestamp AT TIME ZONE 'Asia/Shanghai'), interval '10 minutes') t",
                 (lo, hi))
    _samples(year, "xrd", [(f"2025-0{m}-01 10:{k}0", state) for m in range(1, 7)
                           for k, state in ((0, "idle"), (1, "fault"), (2, "idle"))])
    year.sql("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
             " SELECT 'inc1', t, CASE WHEN t = '2025-12-20 00:00+08' THEN 'idle'"
             " ELSE 'fault' END, 'gw', 0 FROM generate_series('2025-12-20 00:00+08'::timestamptz,"
             " '2025-12-31 23:55+08', interval '10 minutes') t")
    # in a sub-unit of the incubation-pool institution, whatever tier the sub-unit was given
    year.sql("INSERT INTO institution (id, name, parent_id, tier) VALUES"
             " ('incub-lab', '孵化分室', 'incub', 'voucher')")
    year.sql("UPDATE instrument SET institution_id = 'incub-lab' WHERE id = 'inc1'")
    with year.as_("admin") as c:
        assert c.patch("/instruments/nmr", json={"awaiting_disposal": True}).status_code == 200
        items = {i["instrument_id"]: i for i in
                 c.get("/evaluation/2025/instruments").json()["items"]}
        csv = c.get("/evaluation/2025/instruments", params={"format": "csv", "lang": "zh"})
    assert {i: (items[i]["faults"], items[i]["running_state"], items[i]["sharing_mode"])
            for i in items} == {
        "sem": (4, "occasional_faults", "internal"),
        "xrd": (6, "frequent_faults", "external"),
        "inc1": (1, "awaiting_repair", "internal"),
        "nmr": (0, "awaiting_disposal", "not_shared"),
    }
    lines = csv.content.decode("utf-8-sig").splitlines()
    head = lines[0].split(",")
    state, mode = head.index("运行状态"), head.index("共享方式")
    by_id = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    assert (by_id["inc1"][state], by_id["inc1"][mode]) == ("待修", "内部共享")
    assert (by_id["xrd"][state], by_id["xrd"][mode]) == ("故障频繁", "对外共享")


def test_assessments_weigh_what_the_platform_cannot_measure(year: Api, database_url: str) -> None:
    """Weights 30 / 15 / 35 and 20 assessed points; uni marked 80 -> 16 points to each of its
    instruments. nmr: 30 x 600/1200 = 15, sharing 15, management 35 x 3/4 = 26.25, + 16 =
    72.25 (合格). sem: 35/4 x (2/6 + 1) = 11.67 + 16 = 27.67. uni: 49.96; other (xrd, no
    mark): 35/4 x 3/6 = 4.38."""
    with year.as_("admin") as admin, year.as_("evaluator") as evaluator:
        r = admin.put("/evaluation/2025/assessments/uni",
                      json={"mark": 80, "note": "支撑国家重点研发计划 2 项"})
        assert r.status_code == 200, r.text
        assert (r.json()["mark"], r.json()["name"]) == ("80.00", "东北大学")
        assert admin.put("/evaluation/2025/assessments/uni-ac",
                         json={"mark": 80, "note": "x"}).status_code == 422  # a sub-unit
        assert admin.put("/evaluation/2025/assessments/nowhere",
                         json={"mark": 80, "note": "x"}).status_code == 404
        blank = admin.put("/evaluation/2025/assessments/other", json={"mark": 80, "note": " "})
        assert (blank.status_code, blank.json()["message"]) == (  # no reason, said so
            422, "body.note: may not be blank (only spaces or invisible characters)")
        assert admin.put("/evaluation/2025/assessments/other",
                         json={"mark": 101, "note": "x"}).status_code == 422
        listed = evaluator.get("/evaluation/2025/assessments").json()
        assert [(a["institution_id"], a["note"]) for a in listed["items"]] == [
            ("uni", "支撑国家重点研发计划 2 项")]
    rules = EvaluationRules(operation_points=30, sharing_points=15, management_points=35,
                            assessed_points=20)
    auth = {"Authorization": f"Bearer {year.tokens['evaluator']}"}
    with serve(make_settings(database_url, evaluation=rules)) as url, httpx.Client(
        base_url=url, headers=auth
    ) as c:
        assert c.get("/evaluation/rules").json() == rules.model_dump()
        items = {i["instrument_id"]: i for i in
                 c.get("/evaluation/2025/instruments").json()["items"]}
        ranked = {i["institution_id"]: i for i in
                  c.get("/evaluation/2025/institutions").json()["items"]}
    nmr = items["nmr"]
    assert (nmr["operation"], nmr["sharing"], nmr["management"], nmr["assessed"]) == \
        (15, 15, 26.25, 16)
    assert (nmr["score"], nmr["grade"]) == (72.25, "合格")
    assert items["sem"]["score"] == pytest.approx(27.67)
    assert (ranked["uni"]["assessed"], ranked["uni"]["score"]) == (16, 49.96)
    assert (ranked["other"]["assessed"], ranked["other"]["score"]) == (0, 4.38)
    with year.as_("admin") as admin:
        assert admin.delete("/evaluation/2025/assessments/uni").status_code == 204
        assert admin.delete("/evaluation/2025/assessments/uni").status_code == 404


def test_concurrent_requests_share_one_computation(
    year: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The evaluation page asks for instruments and institutions at once: one computation
    serves both; the next request computes again (nothing is kept)."""
    computed: list[int] = []
    score = evaluation_router._score

    async def counted(pool: Any, settings: Any, y: int, years: int) -> Any:
        computed.append(y)
        await asyncio.sleep(0.5)  # the other request arrives meanwhile
        return await score(pool, settings, y, years)

    monkeypatch.setattr(evaluation_router, "_score", counted)
    with year.as_("evaluator") as a, year.as_("evaluator") as b, ThreadPoolExecutor(2) as run:
        instruments = run.submit(a.get, "/evaluation/2025/instruments")
        institutions = run.submit(b.get, "/evaluation/2025/institutions")
        items = {i["instrument_id"]: i["score"] for i in instruments.result().json()["items"]}
        ranked = {i["institution_id"]: i["score"] for i in institutions.result().json()["items"]}
        assert computed == [2025]
        assert (items["nmr"], ranked["uni"]) == (70, 41.67)
        assert a.get("/evaluation/2025/instruments").status_code == 200
    assert computed == [2025, 2025]


def test_duplicate_purchase_review(year: Api) -> None:
    """Class 01 holds nmr (600 of 1,200 h, open), xrd (0 h, open, on the platform from its
    registration deadline, 22 Feb: 1,200 x 313/365 h) and sem (not open); inc1 is
    class 02. nmr's unit has no region of its own: it is in its university's, 沈阳."""
    with year.as_("evaluator") as c:
        def ask(**params: str) -> dict[str, Any]:
            response = c.get("/evaluation/2025/duplicate-review", params=params)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        analytical = ask(category="01")
        in_shenyang = ask(category="0104", region="沈阳")
        in_dalian = ask(category="0104", region="大连")
        sem_class = ask(category="010203")
        english = c.get("/evaluation/2025/duplicate-review",
                        params={"category": "01", "format": "csv", "lang": "en"})
        refused = [c.get("/evaluation/2025/duplicate-review", params=p).status_code
                   for p in ({"category": "010"}, {}, {"category": "01%"})]
    assert [(i["instrument_id"], i["capacity"], i["spare_hours"], i["value_rmb"])
            for i in analytical["items"]] == [
        ("xrd", "spare", 1029.04, "800000.00"), ("nmr", "spare", 600, "5200000.00"),
        ("sem", "not_open", 1200, "2100000.00")]
    assert (analytical["verdict"], analytical["shareable"], analytical["shareable_hours"],
            analytical["fully_used"], analytical["total"]) == (
        "spare_capacity", 2, 1629.04, 0, 3)
    assert [(i["instrument_id"], i["region"]) for i in in_shenyang["items"]] == [("nmr", "沈阳")]
    assert (in_dalian["verdict"], in_dalian["total"]) == ("none_registered", 0)
    assert (sem_class["verdict"], sem_class["shareable_hours"]) == ("no_spare_capacity", 0)
    lines = english.content.decode("utf-8-sig").splitlines()
    assert lines[0].endswith("Full-use hours,Spare hours,Capacity")
    assert lines[1].startswith("xrd,") and lines[1].endswith('"spare, shareable"')
    assert "external,normal" in lines[1]
    assert refused == [422, 422, 422]


def test_a_review_in_a_region_without_institutions_is_refused(year: Api) -> None:
    """A mistyped region gets 422, not the verdict ``none_registered``, which reads as
    "nothing of the class there: buying is justified"."""
    with year.as_("evaluator") as c:
        for region in ("沈阳市", ""):
            r = c.get("/evaluation/2025/duplicate-review",
                      params={"category": "0104", "region": region})
            assert (r.status_code, r.json()["message"]) == (
                422, f"region: no institution is registered in {region!r}"
                     " (each institution's region is in GET /institutions)")


def test_published_results_are_frozen_and_read_by_every_unit(year: Api) -> None:
    """An admin publishes 2025; later changes move the live results, not the published ones;
    lab managers read the whole ranking and their own instruments only."""
    year.sql("UPDATE instrument SET monitored_since = '2024-06-01T02:00:00Z' WHERE id = 'nmr'")
    with year.as_("admin") as admin:
        published = admin.put("/evaluation/2025/publication", json={"note": "评审委员会审定"})
        assert published.status_code == 200, published.text
        early = admin.put("/evaluation/2100/publication", json={})
    summary = published.json()
    assert (summary["institutions"], summary["instruments"], summary["note"]) == \
        (3, 4, "评审委员会审定")
    with year.as_("manager") as manager:  # the list answers for a year not published too
        listed = [manager.get("/evaluation/publications", params=p).json() for p in (
            {}, {"year": 2025}, {"year": 2024})]
    assert [(page["total"], [p["year"] for p in page["items"]]) for page in listed] == [
        (1, [2025]), (1, [2025]), (0, [])]
    assert listed[0]["items"][0] == summary
    assert summary["published_by"].startswith("admin:")
    assert summary["rules"]["full_use_hours"] == 1200
    assert early.status_code == 409 and "2100 is not over" in early.json()["message"]
    with year.as_("evaluator") as evaluator:  # the files say what the live ones said
        for part in ("institutions", "instruments"):
            files = [evaluator.get(f"/evaluation/2025/{path}", params={
                "format": "csv", "lang": "en"}).text for path in (part, f"published/{part}")]
            assert files[0] == files[1] and "fail" in files[0] and "不合格" not in files[0]
        assert "2024-06-01T10:00:00+08:00" in files[1]  # monitored_since, in Asia/Shanghai

    year.sql("DELETE FROM usage_session WHERE instrument_id = 'nmr'")  # e.g. data corrected
    with year.as_("manager") as manager:
        ranking = manager.get("/evaluation/2025/published/institutions").json()
        own = manager.get("/evaluation/2025/published/instruments").json()
        xlsx = manager.get("/evaluation/2025/published/instruments", params={"format": "xlsx"})
        live = manager.get("/evaluation/2025/instruments")
    with year.as_("evaluator") as evaluator:
        live_nmr = {i["instrument_id"]: i["score"] for i in
                    evaluator.get("/evaluation/2025/instruments").json()["items"]}["nmr"]
    assert [(r["institution_id"], r["score"]) for r in ranking["items"]] == [
        ("uni", 41.67), ("incub", 13.33), ("other", 5)]
    assert {i["instrument_id"]: i["score"] for i in own["items"]} == {"nmr": 70, "sem": 13.33}
    assert own["published_at"] == summary["published_at"]
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None and sheet.max_row == 3  # header and the manager's two
    assert live.status_code == 403  # the live results are the evaluation office's
    assert live_nmr == 30  # without its sessions: management only

    with year.as_("admin") as admin:
        again = admin.put("/evaluation/2025/publication", json={"note": "更正"}).json()
        republished = admin.get("/evaluation/2025/published/instruments").json()
        withdrawn = admin.delete("/evaluation/2025/publication").status_code
        gone = [admin.get(p).status_code for p in (
            "/evaluation/2025/publication", "/evaluation/2025/published/institutions")]
        twice = admin.delete("/evaluation/2025/publication").status_code
    assert again["note"] == "更正" and again["published_at"] >= summary["published_at"]
    assert {i["instrument_id"]: i["score"] for i in republished["items"]}["nmr"] == 30
    assert (withdrawn, gone, twice) == (204, [404, 404], 404)


def _grades_of(items: list[dict[str, Any]]) -> dict[str, int]:
    return {g: sum(i["grade"] == g for i in items) for g in ("优秀", "良好", "合格", "不合格")}


def test_an_instrument_page_counts_the_grades_of_the_whole_list(year: Api) -> None:
    """A page of one instrument (any offset) carries the grades of all four, live and
    published: a grade chart reads the first page only, not every page, each of which scores
    the year again; a lab manager's published counts are of their own instruments."""
    paths = ("/evaluation/2025/instruments", "/evaluation/2025/published/instruments")
    with year.as_("admin") as admin:
        assert admin.put("/evaluation/2025/publication", json={}).status_code == 200
        for path in paths:
            whole = admin.get(path).json()
            pages = [admin.get(path, params={"limit": 1, "offset": n}).json() for n in (0, 3)]
            assert whole["grades"] == _grades_of(whole["items"]) == {
                "优秀": 0, "良好": 0, "合格": 1, "不合格": 3}, path
            assert [(len(p["items"]), p["grades"]) for p in pages] == [
                (1, whole["grades"])] * 2, path
            past = admin.get(path, params={"offset": 9}).json()  # a page after the last
            assert (past["items"], past["grades"]) == ([], whole["grades"]), path
    with year.as_("manager") as manager:  # nmr (合格) and sem
        own = manager.get(paths[1], params={"limit": 1}).json()
    assert own["grades"] == {"优秀": 0, "良好": 0, "合格": 1, "不合格": 1}
