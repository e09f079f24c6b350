"""Utilisation figures against values computed by hand (docs/metrics.md).

One day, 2026-03-10 in Asia/Shanghai = [2026-03-09 16:00Z, 2026-03-10 16:00Z). On 'nmr'
(owned by the analysis centre 'uni-ac', a sub-unit of 'uni'):

  S1 22:00 (9th) - 02:00  in1   inside, certified      -> clipped to 2 h
  S2 09:00 - 12:00        out1  outside, certified     -> 3 h, inside booking B1
  S3 14:00 - 15:30        firm1 outside (a firm), certified only from 15:00 -> uncertified
  S4 23:00 - 01:00 (11th) out1  outside, cert revoked 23:30 (after start) -> clipped to 1 h
  S5 16:00:00 - 16:00:30  in1   shorter than min_session_s = 60 -> noise, ignored
  S6 18:00 - 19:00        nobody known -> unattributed
  S7 19:00 - 20:00        new1  registered but not approved: not external; no certification

  effective = 2 + 3 + 1.5 + 1 + 1 + 1 = 9.5 h; external = 3 + 1.5 + 1 = 5.5 h
  bookings: B1 09-12 out1 (completed, fee 1800, voucher 900, rating 4), B2 21:00-22:00 in1
  (approved, nobody ran, and the platform heard from nmr after it, at 23:00: no-show),
  B4 12:00-13:00 in1 (completed, fee 200, rating 5; S2 ends
  within the 30 min grace: not a no-show), B3 14:00-15:30 firm1 only requested (not a booking)
  unbooked (running time, no margins on nmr) = 9.5 - 3 = 6.5 h; uncertified = S3 + S7 = 2.5 h
  (2 sessions)
  availability: samples every 10 min 23:50 (9th) - 12:00, none until 14:00 (2 h gap > 15 min:
  offline), 14:00-15:00 idle, 15:00-16:00 fault, then one idle sample at 16:00 and one
  running at 23:00, each followed by a gap (offline) -> up 12 + 1 = 13 of 24 h.

'xrd' (owned by 'other', warm-up 30 min): a 10:00-11:00 session by out1, who belongs to
'other' (inside there) -> 1.5 h with warm-up; an open session from 20:00, last data 21:30,
user unknown -> 2 h with warm-up. Effective 3.5 h, external 0. No bookings: unbooked use is
the running time alone, 1 + 1.5 = 2.5 h (warm-up is not running time).
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openpyxl
import pytest

from monitor_api import exports
from monitor_api.report import SHANGHAI
from tests.api.conftest import Api

SETUP = [
    "UPDATE instrument SET min_session_s = 60 WHERE id = 'nmr'",
    "UPDATE instrument SET warmup_s = 1800 WHERE id = 'xrd'",
    """INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id) VALUES
     ('nmr', '2026-03-09 22:00+08', '2026-03-10 02:00+08', '2026-03-10 02:00+08', 'in1'),
     ('nmr', '2026-03-10 09:00+08', '2026-03-10 12:00+08', '2026-03-10 12:00+08', 'out1'),
     ('nmr', '2026-03-10 14:00+08', '2026-03-10 15:30+08', '2026-03-10 15:30+08', 'firm1'),
     ('nmr', '2026-03-10 23:00+08', '2026-03-11 01:00+08', '2026-03-11 01:00+08', 'out1'),
     ('nmr', '2026-03-10 16:00+08', '2026-03-10 16:00:30+08', '2026-03-10 16:00:30+08', 'in1'),
     ('nmr', '2026-03-10 18:00+08', '2026-03-10 19:00+08', '2026-03-10 19:00+08', NULL),
     ('nmr', '2026-03-10 19:00+08', '2026-03-10 20:00+08', '2026-03-10 20:00+08', 'new1'),
     ('xrd', '2026-03-10 10:00+08', '2026-03-10 11:00+08', '2026-03-10 11:00+08', 'out1'),
     ('xrd', '2026-03-10 20:00+08', NULL, '2026-03-10 21:30+08', NULL)""",
    """INSERT INTO certification (user_id, instrument_id, level, valid_from, valid_until,
                                  revoked_at) VALUES
     ('in1', 'nmr', 'self', '2026-01-01+08', NULL, NULL),
     ('out1', 'nmr', 'self', '2026-01-01+08', '2027-01-01+08', '2026-03-10 23:30+08'),
     ('firm1', 'nmr', 'assisted', '2026-03-10 15:00+08', NULL, NULL)""",
    """INSERT INTO booking (id, instrument_id, user_id, kind, start_ts, end_ts, status) VALUES
     (1, 'nmr', 'out1', 'self', '2026-03-10 09:00+08', '2026-03-10 12:00+08', 'completed'),
     (2, 'nmr', 'in1', 'self', '2026-03-10 21:00+08', '2026-03-10 22:00+08', 'approved'),
     (3, 'nmr', 'firm1', 'assisted', '2026-03-10 14:00+08', '2026-03-10 15:30+08',
      'requested'),
     (4, 'nmr', 'in1', 'sample', '2026-03-10 12:00+08', '2026-03-10 13:00+08', 'completed')""",
    """INSERT INTO service_record (booking_id, contract_no, fee_rmb, voucher_rmb, rating) VALUES
     (1, 'C-1', 1800, 900, 4), (4, 'C-4', 200, 0, 5)""",
    # availability samples for nmr
    """INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)
     SELECT 'nmr', t, 'idle', 'gw', 0 FROM generate_series(
        '2026-03-09 23:50+08'::timestamptz, '2026-03-10 12:00+08', '10 minutes') t""",
    """INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)
     SELECT 'nmr', t, CASE WHEN t < '2026-03-10 15:00+08' THEN 'idle' ELSE 'fault' END, 'gw', 0
     FROM generate_series('2026-03-10 14:00+08'::timestamptz, '2026-03-10 15:50+08',
                          '10 minutes') t""",
    """INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)
     VALUES ('nmr', '2026-03-10 16:00+08', 'idle', 'gw', 0),
            ('nmr', '2026-03-10 23:00+08', 'running', 'gw', 0)""",
]


@pytest.fixture
def seeded(api: Api) -> Api:
    for statement in SETUP:
        api.sql(statement)
    return api


def _report(api: Api, **params: str) -> dict[str, dict[str, object]]:
    with api.as_("evaluator") as c:
        r = c.get("/reports/utilisation", params={"start": "2026-03-10", "end": "2026-03-10",
                                                  **params})
    assert r.status_code == 200, r.text
    return {item["key"]: item for item in r.json()["items"]}


def test_per_instrument_figures(seeded: Api) -> None:
    nmr = _report(seeded)["nmr"]
    assert nmr["effective_hours"] == pytest.approx(9.5)
    assert nmr["external_hours"] == pytest.approx(5.5)
    assert nmr["openness_ratio"] == pytest.approx(5.5 / 9.5, abs=1e-4)
    assert nmr["sessions"] == 6
    assert nmr["outside_users"] == 2
    assert nmr["outside_organisations"] == 2
    assert nmr["bookings"] == 3
    assert nmr["no_shows"] == 1
    assert nmr["unbooked_hours"] == pytest.approx(6.5)
    assert nmr["uncertified_hours"] == pytest.approx(2.5)
    assert nmr["uncertified_sessions"] == 2
    assert nmr["unattributed_hours"] == pytest.approx(1.0)
    assert nmr["availability"] == pytest.approx(13 / 24, abs=1e-4)
    assert nmr["service_income_rmb"] == pytest.approx(2000)
    assert nmr["external_income_rmb"] == pytest.approx(1800)
    assert nmr["voucher_rmb"] == pytest.approx(900)
    assert nmr["voucher_share"] == pytest.approx(0.45)
    assert nmr["average_rating"] == pytest.approx(4.5)


def test_inside_user_of_owner_and_warm_up(seeded: Api) -> None:
    xrd = _report(seeded)["xrd"]
    assert xrd["effective_hours"] == pytest.approx(3.5)
    assert xrd["external_hours"] == 0
    assert xrd["openness_ratio"] == 0
    assert xrd["unattributed_hours"] == pytest.approx(2.0)
    assert xrd["unbooked_hours"] == pytest.approx(2.5)
    assert xrd["availability"] == 0  # no status data at all: offline the whole day


def test_margins_stop_at_the_neighbouring_sessions(seeded: Api) -> None:
    # warm-up and cool-down of 30 min each; in1 runs 10:00-10:30, out1 (outside) 10:40-11:00,
    # 5 min of noise between them is no neighbour: [09:30, 10:40) and [10:40, 11:30), 2 h of
    # wall clock, of which out1's 50 min are external (the first cool-down comes first)
    seeded.sql("UPDATE instrument SET warmup_s = 1800, cooldown_s = 1800, min_session_s = 600"
               " WHERE id = 'sem'")
    seeded.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
               " VALUES ('sem', '2026-03-10 10:00+08', '2026-03-10 10:30+08',"
               "         '2026-03-10 10:30+08', 'in1'),"
               "        ('sem', '2026-03-10 10:32+08', '2026-03-10 10:37+08',"
               "         '2026-03-10 10:37+08', NULL),"
               "        ('sem', '2026-03-10 10:40+08', '2026-03-10 11:00+08',"
               "         '2026-03-10 11:00+08', 'out1')")
    sem = _report(seeded)["sem"]
    assert (sem["effective_hours"], sem["external_hours"]) == (
        pytest.approx(2.0), pytest.approx(50 / 60, abs=1e-4))  # hours to 4 decimals
    assert sem["sessions"] == 2


def test_a_period_not_yet_over_counts_no_cool_down_beyond_now(seeded: Api) -> None:
    # a 1 h session that ended 2 min ago on sem, cool-down 30 min: 1 h 2 min so far, not 1.5 h
    seeded.sql("UPDATE instrument SET cooldown_s = 1800 WHERE id = 'sem'")
    now = datetime.now(UTC)
    seeded.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
               " VALUES ('sem', %(s)s, %(e)s, %(e)s, 'in1')",
               {"s": now - timedelta(minutes=62), "e": now - timedelta(minutes=2)})
    today = now.astimezone(SHANGHAI).date()
    sem = _report(seeded, start=str(today - timedelta(days=1)), end=str(today))["sem"]
    assert sem["effective_hours"] == pytest.approx(62 / 60, abs=0.01)


def test_sessions_crossing_the_period_end(seeded: Api) -> None:
    # 10-11 March: S1 still clipped at its start (2 h), S4 now whole (2 h), S5 still noise.
    nmr = _report(seeded, end="2026-03-11")["nmr"]
    assert nmr["effective_hours"] == pytest.approx(10.5)
    assert nmr["external_hours"] == pytest.approx(6.5)
    # 9-10 March: S1 whole (4 h).
    nmr = _report(seeded, start="2026-03-09")["nmr"]
    assert nmr["effective_hours"] == pytest.approx(11.5)


def test_an_institution_filter_covers_its_sub_units(seeded: Api) -> None:
    assert set(_report(seeded, institution_id="uni")) == {"nmr", "sem"}  # owned by uni-ac
    assert set(_report(seeded, institution_id="uni-ac")) == {"nmr", "sem"}
    assert set(_report(seeded, institution_id="other")) == {"xrd"}
    with seeded.as_("manager") as mgr:  # of uni: its sub-unit is theirs
        r = mgr.get("/reports/utilisation", params={
            "start": "2026-03-10", "end": "2026-03-10", "institution_id": "uni-ac"})
    assert {item["key"] for item in r.json()["items"]} == {"nmr", "sem"}


def test_an_institution_that_does_not_exist_is_refused(seeded: Api) -> None:
    """A mistyped id gets 422 naming it, not an empty report (or file) that reads as an
    institution whose instruments were never used."""
    with seeded.as_("evaluator") as c:
        for path in ("/reports/utilisation", "/reports/service-records"):
            r = c.get(path, params={"start": "2026-03-10", "end": "2026-03-10",
                                    "institution_id": "unii", "format": "xlsx"})
            assert (r.status_code, r.json()["message"]) == (
                422, "institution_id: no institution 'unii'")


def test_a_region_without_institutions_is_refused(seeded: Api) -> None:
    """A mistyped region gets 422 naming it, not an empty report."""
    with seeded.as_("evaluator") as c:
        r = c.get("/reports/utilisation", params={"start": "2026-03-10", "end": "2026-03-10",
                                                  "region": "沈阳市"})
    assert (r.status_code, r.json()["message"]) == (
        422, "region: no institution is registered in '沈阳市'"
             " (each institution's region is in GET /institutions)")


def test_groups(seeded: Api) -> None:
    by_inst = _report(seeded, group_by="institution")
    assert set(by_inst) == {"uni", "other", "incub"}
    assert by_inst["uni"]["instruments"] == 2  # nmr and sem, through the sub-unit
    assert by_inst["uni"]["effective_hours"] == pytest.approx(9.5)
    assert by_inst["uni"]["availability"] == pytest.approx(13 / 48, abs=1e-4)
    # out1 used nmr (outside) and xrd (inside): counted once, where outside.
    assert by_inst["other"]["outside_users"] == 0
    assert {k: v["name"] for k, v in by_inst.items()} == {
        "uni": "东北大学", "other": "大连理工大学", "incub": "孵化实验室"}
    by_unit = _report(seeded, group_by="unit")
    assert {k: v["name"] for k, v in by_unit.items()} == {
        "uni-ac": "东北大学分析测试中心", "other": "大连理工大学", "incub": "孵化实验室"}
    with seeded.as_("admin") as c:
        csv = c.get("/reports/utilisation", params={
            "start": "2026-03-10", "end": "2026-03-10", "group_by": "institution",
            "format": "csv", "lang": "en"}).content.decode("utf-8-sig")
    assert "uni,东北大学," in csv
    by_region = _report(seeded, group_by="region")
    assert by_region["大连"]["effective_hours"] == pytest.approx(3.5)
    assert by_region["沈阳"]["instruments"] == 3
    by_cat = _report(seeded, group_by="category")
    assert by_cat["01"]["effective_hours"] == pytest.approx(13.0)
    assert by_cat["01"]["external_hours"] == pytest.approx(5.5)
    assert by_cat["01"]["outside_users"] == 2
    assert by_cat["02"]["effective_hours"] == 0
    # named by the national classification: its first level, then its second
    assert (by_cat["01"]["name"], by_cat["02"]["name"]) == ("分析仪器", "物理性能测试仪器")
    by_class = _report(seeded, group_by="category", category_digits="4")
    assert {key: (item["name"], item["name_en"]) for key, item in by_class.items()} == {
        "0102": ("质谱仪器", "Mass spectrometers"), "0104": ("光谱仪器", "Optical spectrometers"),
        "0105": ("色谱仪器", "Chromatographs"),
        "0201": ("力学性能测试仪器", "Mechanical property testers")}
    assert by_region["大连"]["name_en"] is None  # no English for what the registry names
    with seeded.as_("admin") as c:  # files in English name the classes in English
        lines = [c.get("/reports/utilisation", params={
            "start": "2026-03-10", "end": "2026-03-10", "group_by": "category",
            "format": "csv", "lang": lang}).content.decode("utf-8-sig").splitlines()[1]
            for lang in ("en", "zh", "both")]
    assert [line.split(",")[1] for line in lines] == [
        "Analytical instruments", "分析仪器", "分析仪器 Analytical instruments"]


def test_english_files_name_the_groups_the_registry_leaves_unnamed(seeded: Api) -> None:
    seeded.sql("UPDATE instrument SET category_code = NULL WHERE id = 'xrd'")
    seeded.sql("UPDATE institution SET region = '' WHERE id = 'other'")
    with seeded.as_("admin") as c:
        files = {group: c.get("/reports/utilisation", params={
            "start": "2026-03-10", "end": "2026-03-10", "group_by": group, "format": "csv",
            "lang": "en"}).content.decode("utf-8-sig") for group in ("category", "region")}
    assert "\nunknown,uncategorised," in files["category"]
    assert "\nunknown,region not given," in files["region"]
    cells = set(files["category"].split(",") + files["region"].split(","))
    assert not {"未分类", "未填地区"} & cells


def test_lab_manager_sees_only_their_institution(seeded: Api) -> None:
    with seeded.as_("manager") as c:
        r = c.get("/reports/utilisation", params={"start": "2026-03-10", "end": "2026-03-10"})
        assert {i["key"] for i in r.json()["items"]} == {"nmr", "sem"}
        refused = c.get("/reports/utilisation", params={
            "start": "2026-03-10", "end": "2026-03-10", "institution_id": "other"})
        assert refused.status_code == 403


def test_csv_and_xlsx_exports(seeded: Api) -> None:
    params = {"start": "2026-03-10", "end": "2026-03-10"}
    with seeded.as_("admin") as c:
        csv_zh = c.get("/reports/utilisation", params={**params, "format": "csv", "lang": "zh"})
        xlsx = c.get("/reports/utilisation", params={**params, "format": "xlsx", "lang": "en"})
    assert csv_zh.headers["content-type"].startswith("text/csv")
    lines = csv_zh.content.decode("utf-8-sig").splitlines()
    assert lines[0].split(",")[:5] == ["对象", "名称", "仪器数", "使用次数", "有效工作机时(h)"]
    nmr_line = next(line for line in lines if line.startswith("nmr,"))
    assert nmr_line.split(",")[4] == "9.5"
    income = lines[0].split(",").index("服务收入(元)")
    assert nmr_line.split(",")[income] == "2000.00"  # yuan and fen, as an invoice shows them
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    assert sheet.title == "utilisation-instrument"  # the dates are in the file's name
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][4] == "Effective machine hours"
    nmr_row = next(r for r in rows if r[0] == "nmr")
    assert nmr_row[5] == pytest.approx(5.5)
    ratio = rows[0].index("Openness ratio")
    nmr_cell = next(r for r in sheet.iter_rows() if r[0].value == "nmr")[ratio]
    assert (nmr_cell.value, nmr_cell.number_format) == (pytest.approx(5.5 / 9.5, abs=1e-4),
                                                        "0.00%")
    income_cell = next(
        r for r in sheet.iter_rows() if r[0].value == "nmr")[rows[0].index("Service income (RMB)")]
    assert (income_cell.value, income_cell.number_format) == (pytest.approx(2000), "#,##0.00")


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_file_names_say_the_grouping(seeded: Api, fmt: str) -> None:
    """A period's reports by institution, category and instrument download as three files."""
    params = {"start": "2026-03-10", "end": "2026-03-11", "format": fmt}
    with seeded.as_("admin") as c:
        names = {group: c.get("/reports/utilisation", params={**params, "group_by": group})
                 .headers["content-disposition"] for group in ("institution", "category",
                                                               "instrument")}
    assert names == {group: f'attachment; filename="utilisation-{group}-2026-03-10-2026-03-11'
                            f'.{fmt}"' for group in names}


def test_a_workbook_being_written_holds_up_no_other_request(
    seeded: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workbook is written off the event loop: while it is, the API keeps answering."""
    writing, finish = threading.Event(), threading.Event()
    write = exports.to_xlsx

    def slow_write(*args: Any) -> bytes:
        writing.set()
        assert finish.wait(30)
        return write(*args)

    monkeypatch.setattr(exports, "to_xlsx", slow_write)
    params = {"start": "2026-03-10", "end": "2026-03-10", "format": "xlsx"}
    with seeded.as_("admin") as c, ThreadPoolExecutor(1) as pool:
        export = pool.submit(c.get, "/reports/utilisation", params=params)
        try:
            assert writing.wait(30)
            assert httpx.get(f"{seeded.url}/healthz", timeout=5).status_code == 200
        finally:
            finish.set()
        assert export.result().status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(export.result().content)).active
    assert sheet is not None and sheet.max_row == 1 + 4  # header and every instrument


def test_unbooked_use_leaves_the_margins_out(seeded: Api) -> None:
    # xrd (warm-up 30 min) booked 10:00-11:00, exactly its first session: the warm-up
    # 09:30-10:00 is effective time but not running time, so it is not unbooked use either.
    seeded.sql("INSERT INTO booking (id, instrument_id, user_id, kind, start_ts, end_ts, status)"
               " VALUES (5, 'xrd', 'out1', 'self', '2026-03-10 10:00+08', '2026-03-10 11:00+08',"
               " 'completed')")
    xrd = _report(seeded)["xrd"]
    assert xrd["effective_hours"] == pytest.approx(3.5)
    assert xrd["unbooked_hours"] == pytest.approx(1.5)  # the open session 20:00-21:30


def test_skipped_availability_is_null(seeded: Api) -> None:
    items = _report(seeded, availability="false")
    assert {k: v["availability"] for k, v in items.items()} == dict.fromkeys(items)
    assert _report(seeded, availability="false", group_by="institution")["uni"][
        "availability"] is None
    with seeded.as_("evaluator") as c:
        r = c.get("/reports/utilisation", params={"start": "2026-03-10", "end": "2026-03-10",
                                                  "availability": "false", "format": "csv",
                                                  "lang": "en"})
    header, *rows = r.content.decode("utf-8-sig").splitlines()
    column = header.split(",").index("Availability")
    assert {row.split(",")[column] for row in rows} == {""}


def test_bad_period_is_a_json_error(seeded: Api) -> None:
    with seeded.as_("admin") as c:
        r = c.get("/reports/utilisation", params={"start": "2026-03-10", "end": "2026-03-01"})
    assert r.status_code == 422
    assert r.json()["message"] == "end must not be before start"


def test_certification_revoked_before_it_began(seeded: Api) -> None:
    # revoking a certification issued for a later date leaves revoked_at < valid_from:
    # it was never valid, so S7 stays uncertified (and the report still answers)
    seeded.sql("""INSERT INTO certification (user_id, instrument_id, level, valid_from,
                                             revoked_at)
                  VALUES ('new1', 'nmr', 'self', '2026-03-10 18:00+08', '2026-03-01+08')""")
    nmr = _report(seeded)["nmr"]
    assert nmr["uncertified_hours"] == pytest.approx(2.5)
    assert nmr["uncertified_sessions"] == 2
