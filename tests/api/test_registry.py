"""Registry CRUD, pagination, the all-or-nothing CSV import and the catalogue review."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from monitor_api.csv_import import parse_instruments
from tests.api.conftest import Api, write_through_ingest

GOOD = (
    "id,name,institution_id,model,maker,category_code,value_rmb,accepted_on,networked_on,"
    "open_to_outside,fee_schedule,awaiting_disposal\n"
    "icp-ms,电感耦合等离子体质谱仪,uni-ac,7900,Agilent,010102,1850000,2025-06-03,2025-06-20,是,"
    "\"校内 300 元/样, 校外 500 元/样\",否\n"
    "nmr,核磁共振波谱仪(更新),uni-ac,AVANCE NEO,Bruker,010401,5200000,2025-03-10,,yes,,是\n"
)

BAD = (
    "id,name,institution_id,category_code,value_rmb,accepted_on,open_to_outside\n"
    "ok-1,好仪器,uni-ac,010101,400000,2025-01-02,true\n"  # line 2: fine
    "bad/id,斜杠,uni-ac,010101,1,2025-01-02,true\n"  # line 3: bad id
    "ok-2,价格,uni-ac,0101,abc,2025-01-02,true\n"  # line 4: category and value
    "ok-3,日期,nowhere,010101,1,2025-02-30,true\n"  # line 5: date (institution unchecked)
    "ok-4,单位,nowhere,010101,1,2025-02-03,maybe\n"  # line 6: yes/no
    "ok-5,单位,nowhere,010101,1,2025-02-03,no\n"  # line 7: unknown institution
    "ok-1,重复,uni-ac,010101,1,2025-01-02,true\n"  # line 8: duplicate id
    "ok-6,多列,uni-ac,010101,1,2025-01-02,true,extra\n"  # line 9: field count
    "xrd,别人的,uni-ac,010101,1,2025-01-02,true\n"  # line 10: another institution's instrument
    "ok-7,n\x00ul,uni-ac,010101,1,2025-01-02,true\n"  # line 11: NUL, which no text holds
)


def _import(api: Api, who: str, text: str) -> tuple[int, dict[str, Any]]:
    with api.as_(who) as c:
        r = c.post("/instruments/import", content=text.encode(),
                   headers={"Content-Type": "text/csv"})
    return r.status_code, r.json()


def test_bad_rows_reported_with_line_numbers_nothing_imported(api: Api) -> None:
    code, body = _import(api, "manager", BAD)
    assert code == 422
    assert body["message"] == "9 bad row(s); nothing was imported"
    lines = [d["line"] for d in body["details"]]
    assert lines == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    reasons = {d["line"]: d["reason"] for d in body["details"]}
    assert "id" in reasons[3]
    assert "category_code" in reasons[4] and "value_rmb" in reasons[4]
    assert "accepted_on" in reasons[5]
    assert "yes/no" in reasons[6]
    assert "unknown institution" in reasons[7]
    assert "line 2" in reasons[8]
    assert "expected 7 fields" in reasons[9]
    assert "another institution" in reasons[10]
    assert reasons[11].startswith("name: ") and "NUL" in reasons[11], reasons[11]
    assert api.sql("SELECT count(*) FROM instrument WHERE id LIKE 'ok-%%'")[0][0] == 0


def test_clean_file_imports_and_updates(api: Api) -> None:
    code, body = _import(api, "manager", GOOD)
    assert (code, body) == (200, {"imported": 2})
    with api.as_("evaluator") as c:
        icp = c.get("/instruments/icp-ms").json()
        nmr = c.get("/instruments/nmr").json()
    assert icp["fee_schedule"] == "校内 300 元/样, 校外 500 元/样"
    assert icp["value_rmb"] == "1850000.00"
    assert icp["open_to_outside"] is True
    assert nmr["name"] == "核磁共振波谱仪(更新)" and nmr["model"] == "AVANCE NEO"
    assert (icp["awaiting_disposal"], nmr["awaiting_disposal"]) == (False, True)


def test_reimport_keeps_the_columns_the_file_leaves_out(api: Api) -> None:
    with api.as_("admin") as c:
        r = c.patch("/instruments/nmr", json={
            "gateway_id": "gw-uni-1", "open_to_outside": False, "networked_on": "2025-04-01",
            "warmup_s": 600, "cooldown_s": 300, "min_session_s": 60, "auto_approve": True,
            "fee_schedule": "600 元/小时", "value_rmb": "5200000"})
        assert r.status_code == 200, r.text
    text = ("id,name,institution_id,model\n"
            "nmr,核磁共振波谱仪,uni-ac,AVANCE NEO\n"
            "new-1,新仪器,uni-ac,X1\n")
    assert _import(api, "manager", text) == (200, {"imported": 2})
    with api.as_("admin") as c:
        nmr = c.get("/instruments/nmr").json()
        new = c.get("/instruments/new-1").json()
    assert nmr["model"] == "AVANCE NEO"
    kept = {k: nmr[k] for k in ("gateway_id", "open_to_outside", "networked_on", "warmup_s",
                                 "cooldown_s", "min_session_s", "auto_approve",
                                 "fee_schedule", "value_rmb", "category_code")}
    assert kept == {"gateway_id": "gw-uni-1", "open_to_outside": False,
                    "networked_on": "2025-04-01", "warmup_s": 600, "cooldown_s": 300,
                    "min_session_s": 60, "auto_approve": True, "fee_schedule": "600 元/小时",
                    "value_rmb": "5200000.00", "category_code": "010401"}
    # a new instrument gets the defaults
    assert (new["open_to_outside"], new["gateway_id"], new["warmup_s"]) == (True, None, 0)
    # a column the file has is updated, an empty cell included
    assert _import(api, "manager", "id,name,institution_id,gateway_id,open_to_outside\n"
                   "nmr,核磁共振波谱仪,uni-ac,,是\n") == (200, {"imported": 1})
    with api.as_("admin") as c:
        nmr = c.get("/instruments/nmr").json()
    assert (nmr["gateway_id"], nmr["open_to_outside"], nmr["warmup_s"]) == (None, True, 600)


def test_header_problems(api: Api) -> None:
    code, body = _import(api, "admin", "id,name,colour\n")
    assert code == 422
    assert body["details"] == [{"line": 1, "reason": "unknown columns: colour; "
                                "missing columns: institution_id"}]
    code, body = _import(api, "admin", "")
    assert code == 422 and body["details"][0]["line"] == 1


def test_crud_and_pagination(api: Api) -> None:
    with api.as_("admin") as c:
        r = c.post("/institutions", json={"id": "dlut-ac", "name": "分析测试中心",
                                          "parent_id": "other", "tier": "voucher"})
        assert r.status_code == 201
        again = c.post("/institutions", json={"id": "dlut-ac", "name": "x"})
        assert (again.status_code, again.json()["message"]) == (
            409, "institution 'dlut-ac' already exists")
        bad_parent = c.post("/institutions", json={"id": "y", "name": "y", "parent_id": "zz"})
        assert (bad_parent.status_code, bad_parent.json()["message"]) == (
            422, "parent_id: no institution 'zz'")
        nameless = c.patch("/instruments/nmr", json={"name": None})
        assert (nameless.status_code, nameless.json()["message"]) == (
            422, "name may not be null")
        page1 = c.get("/instruments", params={"limit": 2}).json()
        page2 = c.get("/instruments", params={"limit": 2, "offset": 2}).json()
        assert page1["total"] == page2["total"] == 4
        assert [i["id"] for i in page1["items"] + page2["items"]] == ["inc1", "nmr", "sem", "xrd"]
        assert c.get("/instruments", params={"category": "0104"}).json()["total"] == 1
        missing = c.get("/instruments/none")
        assert missing.status_code == 404
        assert missing.json() == {"error": "not_found", "message": "no instrument 'none'"}
        extra = c.post("/instruments", json={"id": "q", "name": "q", "institution_id": "uni",
                                             "colour": "red"})
        assert extra.status_code == 422 and extra.json()["error"] == "invalid"
        assert c.patch("/users/new1", json={"approved": True}).json()["approved"] is True


def test_the_catalogue_names_each_instruments_unit(api: Api) -> None:
    """The list and the entry name the instrument's own unit (a sub-unit by its own name) for
    everyone who sees it, a registered user reading the catalogue too; so do an entry created
    and one moved to another unit, by the name registered now."""
    units = {"inc1": "孵化实验室", "nmr": "东北大学分析测试中心", "sem": "东北大学分析测试中心",
             "xrd": "大连理工大学"}
    for role in ("admin", "manager", "user"):
        with api.as_(role) as c:
            listed = c.get("/instruments", params={"limit": 1000}).json()["items"]
            entry = c.get("/instruments/nmr").json()
        assert {i["id"]: i["institution_name"] for i in listed} == {
            i: units[i] for i in (units if role != "manager" else ("nmr", "sem"))}, role
        assert (entry["institution_id"], entry["institution_name"]) == (
            "uni-ac", "东北大学分析测试中心"), role
    api.sql("UPDATE institution SET name = '大连理工大学(新)' WHERE id = 'other'")
    with api.as_("admin") as c:
        created = c.post("/instruments", json={"id": "q", "name": "q", "institution_id": "uni"})
        moved = c.patch("/instruments/sem", json={"institution_id": "other"})
    assert created.json()["institution_name"] == "东北大学"
    assert moved.json()["institution_name"] == "大连理工大学(新)"


def test_institutions_stay_a_tree(api: Api) -> None:
    """uni-ac is under uni: neither may come under itself, directly or through the other."""
    with api.as_("admin") as c:
        own = c.post("/institutions", json={"id": "loop", "name": "x", "parent_id": "loop"})
        under_child = c.patch("/institutions/uni", json={"parent_id": "uni-ac"})
        itself = c.patch("/institutions/uni", json={"parent_id": "uni"})
        assert c.patch("/institutions/uni-ac", json={"parent_id": "other"}).status_code == 200
    assert (own.status_code, own.json()["message"]) == (
        422, "institution loop cannot be under loop: that would put it under itself")
    assert (under_child.status_code, under_child.json()["message"]) == (
        422, "institution uni cannot be under uni-ac: that would put it under itself")
    assert (itself.status_code, itself.json()["message"]) == (
        422, "institution uni cannot be under uni: that would put it under itself")


def test_catalogue_review(api: Api) -> None:
    """Users see an instrument once an admin lists it, then its entry as reviewed; a lab
    manager's later change waits for the next review; unlisted, it is gone for them."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    window = {"instrument_id": "icp", "kind": "assisted", "start": start.isoformat(),
              "end": (start + timedelta(hours=1)).isoformat()}

    def seen(c: httpx.Client) -> tuple[int, set[str], set[str]]:
        """What a client finds: the instrument (status code), in the list, on the board."""
        listed = {i["id"] for i in c.get("/instruments", params={"limit": 1000}).json()["items"]}
        board = {i["instrument_id"] for i in c.get("/status").json()["items"]}
        return c.get("/instruments/icp").status_code, listed & {"icp"}, board & {"icp"}

    with api.as_("manager") as manager:
        created = manager.post("/instruments", json={
            "id": "icp", "name": "电感耦合等离子体质谱仪", "institution_id": "uni-ac",
            "fee_schedule": "300元/样"}).json()
    assert (created["listed_at"], created["review_pending"]) == (None, True)
    with api.as_("user") as user:
        assert seen(user) == (404, set(), set())
        refused = user.post("/bookings", json=window)
    assert refused.status_code == 409 and "not in the catalogue" in refused.json()["message"]

    with api.as_("admin") as admin:
        pending = admin.get("/instruments", params={"review_pending": True}).json()["items"]
        listed = admin.post("/instruments/icp/listing").json()
    assert [i["id"] for i in pending] == ["icp"]  # the seeded ones were listed
    assert listed["listed_by"].startswith("admin:") and listed["review_pending"] is False
    with api.as_("manager") as manager:
        changed = manager.patch("/instruments/icp", json={
            "fee_schedule": "500元/样", "open_to_outside": False, "name": "ICP-MS",
            "category_code": "140101", "owner_unit": "未经审核的文字", "value_rmb": "123456.78",
            "accepted_on": "2026-01-05", "auto_approve": True}).json()
        managers_tile = manager.get("/status", params={"category": "14"}).json()["items"]
    assert (changed["fee_schedule"], changed["listing"]["fee_schedule"]) == ("500元/样", "300元/样")
    assert changed["review_pending"] is True
    assert (changed["category_name"], changed["category_name_en"]) == ("激光器", "Lasers")
    with api.as_("user") as user:
        assert seen(user) == (200, {"icp"}, {"icp"})
        entry = user.get("/instruments/icp").json()
        open_ones = {i["id"] for i in user.get(
            "/instruments", params={"open_to_outside": True, "limit": 1000}).json()["items"]}
        closed = user.post("/bookings", json=window)  # bookings follow the live registry
        tile = next(i for i in user.get("/status").json()["items"] if i["instrument_id"] == "icp")
        by_live_category = user.get("/status", params={"category": "14"}).json()["items"]
        detail = user.get("/instruments/icp/detail").json()
        by_review = {pending: {i["id"] for i in user.get("/instruments", params={
            "review_pending": pending, "limit": 1000}).json()["items"]} for pending in (1, 0)}
    assert by_review[1] == set() and "icp" in by_review[0]  # users never see a pending review
    assert [(i["instrument_id"], i["name"]) for i in managers_tile] == [("icp", "ICP-MS")]
    assert (tile["name"], tile["category_code"], by_live_category) == \
        ("电感耦合等离子体质谱仪", None, [])  # as listed, not as renamed and refiled
    assert (detail["instrument"]["name"], detail["status"]["name"]) == \
        ("电感耦合等离子体质谱仪", "电感耦合等离子体质谱仪")
    assert (entry["fee_schedule"], entry["open_to_outside"], entry["listing"]) == \
        ("300元/样", True, None)
    assert (entry["category_code"], entry["category_name"], entry["category_name_en"]) == \
        (None, None, None)  # as listed
    # what the catalogue does not hold, nobody reviewed for users: they are not shown it
    assert {key: entry[key] for key in ("owner_unit", "value_rmb", "accepted_on", "auto_approve",
                                        "listed_by", "review_pending")} == {
        "owner_unit": "", "value_rmb": None, "accepted_on": None, "auto_approve": False,
        "listed_by": None, "review_pending": False}
    assert (entry["institution_name"], entry["listed_at"] is not None) == (
        created["institution_name"], True)
    assert "icp" in open_ones  # as listed, though the registry now says closed
    assert closed.status_code == 403 and "not open to outside users" in closed.json()["message"]

    with api.as_("admin") as admin:
        admin.post("/instruments/icp/listing")
        assert admin.get("/instruments", params={"review_pending": True}).json()["total"] == 0
        with api.as_("user") as user:
            assert user.get("/instruments/icp").json()["fee_schedule"] == "500元/样"
            assert admin.delete("/instruments/icp/listing").json()["listed_at"] is None
            assert seen(user) == (404, set(), set())
        assert admin.post("/instruments/nope/listing").status_code == 404


def test_names_may_not_be_blank(api: Api) -> None:
    with api.as_("admin") as c:
        refused = [
            c.post("/institutions", json={"id": "blank", "name": " \t"}),
            c.patch("/institutions/uni", json={"name": "  "}),
            c.post("/instruments", json={"id": "blank", "name": " ", "institution_id": "uni"}),
            c.patch("/instruments/nmr", json={"name": "\u3000"}),  # an ideographic space
            c.post("/users", json={"id": "blank", "name": "", "institution_id": "uni"}),
            c.patch("/users/in1", json={"name": " \u3000 "}),
            c.patch("/users/in1", json={"name": "\u200b\ufeff"}),  # pasted, and invisible
        ]
        nameless = c.post("/users", json={"id": "nameless", "institution_id": "uni"})
    assert [(r.status_code, r.json()["message"]) for r in refused] == [
        (422, "body.name: may not be blank (only spaces or invisible characters)")] * 7
    assert (nameless.status_code, nameless.json()["message"]) == (
        422, "body.name: Field required")
    assert api.sql("SELECT name FROM platform_user WHERE id = 'in1'") == [("校内用户",)]
    code, body = _import(api, "admin", "id,name,institution_id\nblank, \u3000 ,uni-ac\n")
    assert (code, body["details"]) == (422, [{"line": 2, "reason": "name: Field required"}])


def test_names_and_labels_lose_surrounding_spaces(api: Api) -> None:
    """Stored as meant: " 沈阳" is the region 沈阳 (reports group and filter by it), and a
    location of spaces only is no location."""
    with api.as_("admin") as c:
        institution = c.post("/institutions", json={
            "id": "sy", "name": " 沈阳材料所\u3000", "region": "沈阳 ", "kind": " institute"})
        instrument = c.post("/instruments", json={
            "id": "tem", "name": "  透射电镜 ", "institution_id": "sy", "model": " JEM-F200 ",
            "maker": "JEOL ", "owner_unit": " 电镜室", "location": "   "})
        user = c.post("/users", json={"id": "wang", "name": " 王工 ",
                                      "organisation": "\t沈阳某公司 "})
        patched = c.patch("/instruments/tem", json={"location": " A101 "})
        renamed = c.patch("/users/wang", json={"name": "王工程师 ", "organisation": " 某所"})
    assert [r.status_code for r in (institution, instrument, user, patched, renamed)] == [
        201, 201, 201, 200, 200]
    assert api.sql("SELECT name, region, kind FROM institution WHERE id = 'sy'") == [
        ("沈阳材料所", "沈阳", "institute")]
    assert api.sql("SELECT name, model, maker, owner_unit FROM instrument WHERE id = 'tem'") == [
        ("透射电镜", "JEM-F200", "JEOL", "电镜室")]
    assert instrument.json()["location"] == "" and patched.json()["location"] == "A101"
    assert user.json()["organisation"] == "沈阳某公司"
    assert api.sql("SELECT name, organisation FROM platform_user WHERE id = 'wang'") == [
        ("王工程师", "某所")]


def test_users_belong_to_an_institution_or_name_an_organisation(api: Api) -> None:
    """firm1 names an organisation and no institution; in1 has both."""
    message = "a user belongs to an institution (institution_id) or names an organisation"
    with api.as_("admin") as c:
        nobody = c.post("/users", json={"id": "nobody", "name": "某人"})
        blank = c.post("/users", json={"id": "nobody", "name": "某人", "organisation": "  "})
        firm = c.post("/users", json={"id": "firm2", "name": "张工", "organisation": "沈阳某公司"})
        cleared = c.patch("/users/firm1", json={"organisation": ""})
        both_cleared = c.patch("/users/in1", json={"institution_id": None, "organisation": " "})
        left = c.patch("/users/in1", json={"institution_id": None})  # keeps its organisation
    assert (nobody.status_code, nobody.json()["message"]) == (422, f"body: {message}")
    assert blank.status_code == 422
    assert firm.status_code == 201, firm.text
    assert [(r.status_code, r.json()["message"]) for r in (cleared, both_cleared)] == [
        (422, message)] * 2
    assert (left.status_code, left.json()["organisation"]) == (200, "东北大学")
    assert api.sql("SELECT organisation FROM platform_user WHERE id = 'firm1'") == [
        ("沈阳某科技公司",)]


def test_an_instrument_is_networked_on_or_after_its_acceptance(api: Api) -> None:
    new = {"id": "icp", "name": "ICP-MS", "institution_id": "uni-ac"}
    with api.as_("manager") as c:
        early = c.post("/instruments", json={**new, "accepted_on": "2025-03-10",
                                             "networked_on": "2025-03-09"})
        same_day = c.post("/instruments", json={**new, "accepted_on": "2025-03-10",
                                                "networked_on": "2025-03-10"})
        before_stored = c.patch("/instruments/icp", json={"networked_on": "2025-03-01"})
        stored_before = c.patch("/instruments/icp", json={"accepted_on": "2025-04-01"})
        both_moved = c.patch("/instruments/icp", json={"accepted_on": "2025-04-01",
                                                       "networked_on": "2025-04-02"})
        unaccepted = c.patch("/instruments/icp", json={"accepted_on": None,
                                                       "networked_on": "2025-01-01"})
    assert (early.status_code, early.json()["message"]) == (
        422, "body: networked_on 2025-03-09 is before accepted_on 2025-03-10")
    assert same_day.status_code == 201, same_day.text
    assert [(r.status_code, r.json()["message"]) for r in (before_stored, stored_before)] == [
        (422, "networked_on 2025-03-01 is before accepted_on 2025-03-10"),
        (422, "networked_on 2025-03-10 is before accepted_on 2025-04-01")]
    assert both_moved.status_code == unaccepted.status_code == 200
    code, body = _import(api, "manager", "id,name,institution_id,accepted_on,networked_on\n"
                                         "late,迟,uni-ac,2025-05-02,2025-05-01\n")
    assert (code, body["details"]) == (422, [
        {"line": 2, "reason": "networked_on 2025-05-01 is before accepted_on 2025-05-02"}])
    # a file naming only networked_on is checked against the acceptance stored
    api.sql("UPDATE instrument SET accepted_on = '2025-04-01' WHERE id = 'icp'")
    code, body = _import(api, "manager", "id,name,institution_id,networked_on\n"
                                         "icp,ICP-MS,uni-ac,2025-03-31\n")
    assert (code, body["details"]) == (422, [
        {"line": 2, "reason": "networked_on 2025-03-31 is before accepted_on 2025-04-01"}])


def test_every_line_naming_an_id_seen_before_is_a_duplicate() -> None:
    parsed = parse_instruments("id,name,institution_id,value_rmb\n"
                               "a,甲,uni,-1\n"     # a bad value
                               "a,甲,uni,1\n"      # its id again
                               "a,甲,uni,x,y\n"    # again, and a bad line itself
                               "b,乙,uni,1\n")
    assert [(e.line, e.reason) for e in parsed.errors] == [
        (2, "value_rmb: Input should be greater than or equal to 0"),
        (3, "id 'a' already appears on line 2"),
        (4, "id 'a' already appears on line 2; expected 4 fields, found 5")]
    assert [(line, item.id) for line, item in parsed.rows] == [(5, "b")]


def test_lines_end_as_any_spreadsheet_ends_them() -> None:
    """LF, CRLF (Windows) and a lone CR (older Mac spreadsheets) read alike, line numbers
    included; a line break inside quotes stays in its cell."""
    rows = ["id,name,institution_id,fee_schedule", 'a,甲,uni,"校内\n校外"', "b,乙,uni,x",
            "c,丙,uni,"]
    for end in ("\n", "\r\n", "\r"):
        parsed = parse_instruments(end.join(rows) + end)
        assert parsed.errors == [], repr(end)
        assert [(line, item.id, item.fee_schedule) for line, item in parsed.rows] == [
            (2, "a", "校内\n校外"), (4, "b", "x"), (5, "c", "")], repr(end)


def test_a_lab_manager_binds_only_gateways_serving_their_own_instruments(api: Api) -> None:
    """Binding another unit's gateway would show them its state and let it speak for theirs."""
    write_through_ingest(api.database_url, [(datetime.now(UTC), "idle", None)],
                         received=datetime.now(UTC))  # 'nmr' (uni) reports through 'gw'
    with api.as_("other_manager") as other:
        reporting = other.patch("/instruments/xrd", json={"gateway_id": "gw"})
        bound = other.patch("/instruments/xrd", json={"gateway_id": "gw-other"})
        assert [g["id"] for g in other.get("/gateways").json()["items"]] == []
    assert reporting.status_code == 403
    assert reporting.json()["message"] == \
        "gateway_id: gateway 'gw' serves another institution's instruments"
    assert bound.status_code == 200
    with api.as_("manager") as manager:
        patched = manager.patch("/instruments/nmr", json={"gateway_id": "gw-other"})
        created = manager.post("/instruments", json={
            "id": "icp", "name": "质谱仪", "institution_id": "uni-ac", "gateway_id": "gw-other"})
        own = manager.patch("/instruments/nmr", json={"gateway_id": "gw"})
    assert (patched.status_code, created.status_code, own.status_code) == (403, 403, 200)
    code, body = _import(api, "manager", "id,name,institution_id,gateway_id\n"
                                         "icp,质谱仪,uni-ac,gw-new\n"
                                         "sem,扫描电镜,uni,gw-other\n")
    assert (code, body["details"]) == (422, [
        {"line": 3, "reason": "gateway 'gw-other' serves another institution's instruments"}])
    with api.as_("admin") as admin:  # an admin binds as the hardware is wired
        assert admin.patch("/instruments/nmr", json={"gateway_id": "gw-other"}).status_code == 200
