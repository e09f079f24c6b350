"""The register of service records: national-platform fields, measured service hours against
hand-computed values, scope per role, files with codes written as words."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
from openpyxl import load_workbook

from instrushare.db import migrate
from tests.api.conftest import Api

MARCH = {"start": "2026-03-01", "end": "2026-03-31"}

BOOKINGS = """
INSERT INTO booking (id, instrument_id, user_id, kind, start_ts, end_ts, status, purpose) VALUES
 (1, 'nmr', 'out1', 'sample', '2026-03-10 09:00+08', '2026-03-10 12:00+08', 'completed',
  'research'),
 (2, 'nmr', 'in1', 'self', '2026-03-10 13:00+08', '2026-03-10 15:00+08', 'approved', 'teaching'),
 (3, 'nmr', 'firm1', 'assisted', '2026-03-31 23:00+08', '2026-04-01 01:00+08', 'approved',
  'development'),
 (4, 'nmr', 'out1', 'assisted', '2026-03-11 09:00+08', '2026-03-11 10:00+08', 'requested', 'other'),
 (5, 'nmr', 'out1', 'assisted', '2026-03-11 10:00+08', '2026-03-11 11:00+08', 'cancelled', 'other'),
 (6, 'xrd', 'in1', 'sample', '2026-03-12 10:00+08', '2026-03-12 11:00+08', 'completed', 'other'),
 (7, 'nmr', 'out1', 'assisted', '2026-02-28 23:00+08', '2026-03-01 01:00+08', 'approved', 'other'),
 (8, 'nmr', 'new1', 'assisted', '2026-03-20 10:00+08', '2026-03-20 11:00+08', 'approved', 'other')
"""
SESSIONS = """
INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id) VALUES
 ('nmr', '2026-03-10 08:30+08', '2026-03-10 10:30+08', '2026-03-10 10:30+08', 'out1'),
 ('nmr', '2026-03-10 11:00+08', '2026-03-10 11:05+08', '2026-03-10 11:05+08', NULL),
 ('nmr', '2026-03-10 11:30+08', NULL, '2026-03-10 12:30+08', NULL),
 ('nmr', '2026-03-31 23:30+08', '2026-04-01 00:30+08', '2026-04-01 00:30+08', 'firm1')
"""
# (booking, user type, way, purpose, booked hours, service hours): in start order. Booking 1:
# 09:00-12:00 holds 09:00-10:30 of the first session and 11:30-12:00 of the open one (the
# five-minute one is noise at min_session_s = 600); booking 3 holds one hour across midnight
# and the month's end; 'new1' is not approved, so not an outside user.
EXPECTED = [
    (1, "external", "commissioned_test", "research", 3.0, 2.0),
    (2, "internal", "instrument_use", "teaching", 2.0, 0.0),
    (6, "external", "commissioned_test", "other", 1.0, 0.0),
    (8, "internal", "technical_service", "other", 1.0, 0.0),
    (3, "external", "technical_service", "development", 2.0, 1.0),
]


@pytest.fixture
def seeded(api: Api) -> Api:
    api.sql("UPDATE instrument SET min_session_s = 600 WHERE id = 'nmr'")
    api.sql(BOOKINGS)
    api.sql(SESSIONS)
    api.sql("INSERT INTO service_record (booking_id, contract_no, fee_rmb, voucher_rmb, rating,"
            " comment) VALUES (1, 'SY-1', 1800, 900, 5, '数据质量好')")
    return api


def _get(c: httpx.Client, **params: Any) -> httpx.Response:
    return c.get("/reports/service-records", params={**MARCH, **params})


def test_records_match_hand_computed_values(seeded: Api) -> None:
    with seeded.as_("evaluator") as c:
        body = _get(c).json()
    assert body["total"] == len(EXPECTED)
    got = [(r["booking_id"], r["user_type"], r["service_way"], r["purpose"], r["booked_hours"],
            r["service_hours"]) for r in body["items"]]
    assert got == EXPECTED
    first = body["items"][0]
    assert (first["contract_no"], first["fee_rmb"], first["voucher_rmb"], first["rating"],
            first["comment"], first["status"], first["organisation"]) == \
        ("SY-1", "1800.00", "900.00", 5, "数据质量好", "completed", "大连理工大学")
    assert body["items"][1]["fee_rmb"] == "0.00" and body["items"][1]["rating"] is None
    assert {(r["instrument_id"], r["institution_id"], r["institution_name"])
            for r in body["items"]} == {("nmr", "uni-ac", "东北大学分析测试中心"),
                                        ("xrd", "other", "大连理工大学")}


def test_scope_paging_and_filters(seeded: Api) -> None:
    with seeded.as_("manager") as mgr, seeded.as_("other_manager") as other, \
            seeded.as_("admin") as admin, seeded.as_("user") as user:
        assert [r["booking_id"] for r in _get(mgr).json()["items"]] == [1, 2, 8, 3]
        assert [r["booking_id"] for r in _get(other).json()["items"]] == [6]
        assert _get(other, institution_id="uni-ac").status_code == 403
        assert _get(user).status_code == 403
        page = _get(admin, limit=2, offset=1).json()
        assert (page["total"], [r["booking_id"] for r in page["items"]]) == (5, [2, 6])
        assert [r["booking_id"] for r in _get(admin, instrument_id="xrd").json()["items"]] == [6]
        bad = _get(admin, start="2026-03-31", end="2026-03-01")
        assert bad.status_code == 422 and "before start" in bad.json()["message"]


def test_files_write_codes_as_words(seeded: Api) -> None:
    with seeded.as_("evaluator") as c:
        zh = _get(c, format="csv", lang="zh").content.decode("utf-8-sig").splitlines()
        en = _get(c, format="csv", lang="en").content.decode("utf-8-sig").splitlines()
        book = load_workbook(io.BytesIO(_get(c, format="xlsx").content))
    assert zh[0].startswith("预约编号,合同编号,仪器编号") and "服务机时(h)" in zh[0]
    # the owner unit by its registered name beside its id
    assert en[0].split(",")[5:7] == ["Owner unit", "Institution name"]
    assert {tuple(line.split(",")[5:7]) for line in en[1:]} == {
        ("uni-ac", "东北大学分析测试中心"), ("other", "大连理工大学")}
    assert len(zh) == 1 + len(EXPECTED)
    assert "外部,委托测试,科研,已完成" in zh[1]
    assert "internal,instrument use,teaching,approved" in en[2]
    rows = list(book.active.iter_rows(values_only=True))
    assert rows[0][10] == "用户类型 User type"
    assert rows[1][10:13] == ("外部 external", "委托测试 commissioned test", "科研 research")
    assert rows[1][17] == 2.0  # service hours stay numbers
    starts = [line.split(",")[14] for line in en[1:]]
    assert starts[0] == "2026-03-10T09:00:00+08:00"  # in Asia/Shanghai, as the period's days
    assert rows[1][14] == datetime(2026, 3, 10, 9)  # a time cell: Excel sorts it as one


def test_what_users_type_reaches_files_as_text(seeded: Api) -> None:
    """A comment that looks like a formula stays text in both files, and control characters
    and noncharacters, which XLSX cannot hold, do not stop the workbook nor spoil it."""
    seeded.sql("UPDATE service_record SET comment = %s WHERE booking_id = 1",
               ('=HYPERLINK("http://x","click")',))
    seeded.sql("INSERT INTO service_record (booking_id, comment) VALUES (6, %s)",
               ("bad\x1bservice\x01\ufffe\uffff",))
    with seeded.as_("evaluator") as c:
        csv_text = _get(c, format="csv", lang="en").content.decode("utf-8-sig")
        xlsx = _get(c, format="xlsx")
    assert xlsx.status_code == 200
    comments = [r[21] for r in load_workbook(io.BytesIO(xlsx.content)).active.iter_rows(
        min_row=2, values_only=True)]
    assert '=HYPERLINK("http://x","click")' in comments
    assert "bad\ufffdservice\ufffd\ufffd\ufffd" in comments
    cells = load_workbook(io.BytesIO(xlsx.content)).active
    assert all(cell.data_type != "f" for row in cells.iter_rows() for cell in row)
    assert """'=HYPERLINK(""http://x"",""click"")""" in csv_text
    assert "bad\x1bservice\x01\ufffe\uffff" in csv_text  # CSV holds any text


def test_codes_keep_their_leading_zeros(seeded: Api) -> None:
    """A contract number and a category code that begin with 0 are written as they are: in
    CSV, for programs to read (a spreadsheet program opening it reads them as numbers, which
    is why docs/api.md points people to XLSX), and in XLSX as text cells, which keep them."""
    seeded.sql("UPDATE service_record SET contract_no = '00120' WHERE booking_id = 1")
    with seeded.as_("evaluator") as c:
        header, first, *_ = _get(c, format="csv", lang="en").content.decode(
            "utf-8-sig").splitlines()
        sheet = load_workbook(io.BytesIO(_get(c, format="xlsx").content)).active
    columns = header.split(",")
    at = columns.index("Contract no."), columns.index("Category code")
    assert [first.split(",")[i] for i in at] == ["00120", "010401"]
    cells = next(sheet.iter_rows(min_row=2, max_row=2))
    assert [(cells[i].value, cells[i].data_type) for i in at] == [
        ("00120", "s"), ("010401", "s")]


def test_migration_keeps_free_text_purposes_in_the_note(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        # The schema as it was before purposes were classes.
        conn.execute("ALTER TABLE booking DROP CONSTRAINT booking_purpose,"
                     " ALTER COLUMN purpose SET DEFAULT ''")
        conn.execute("DELETE FROM schema_migration WHERE name = '0011_booking_purpose.sql'")
        conn.execute("INSERT INTO institution (id, name) VALUES ('u', 'U')")
        conn.execute("INSERT INTO instrument (id, name, institution_id) VALUES ('i', 'I', 'u')")
        conn.execute("INSERT INTO platform_user (id) VALUES ('p')")
        conn.execute(
            "INSERT INTO booking (id, instrument_id, user_id, kind, start_ts, end_ts, purpose,"
            " note) VALUES"
            " (1, 'i', 'p', 'self', '2026-03-01 09:00+08', '2026-03-01 10:00+08', '蛋白结构', ''),"
            " (2, 'i', 'p', 'self', '2026-03-02 09:00+08', '2026-03-02 10:00+08', 'x', 'ok'),"
            " (3, 'i', 'p', 'self', '2026-03-03 09:00+08', '2026-03-03 10:00+08', '', ''),"
            " (4, 'i', 'p', 'self', '2026-03-04 09:00+08', '2026-03-04 10:00+08', 'teaching', '')")
    assert migrate(database_url).applied == ["0011_booking_purpose.sql"]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT purpose, note FROM booking ORDER BY id").fetchall()
    assert rows == [("other", "purpose: 蛋白结构"), ("other", "ok; purpose: x"), ("other", ""),
                    ("teaching", "")]
