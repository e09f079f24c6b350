"""Status board (derived offline), timeline, power series and the server-sent events stream."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from importlib import resources

import httpx
import pytest

from monitor_api.db import make_pool
from monitor_api.status_feed import BACKLOG, Changes, StatusFeed
from tests.api.conftest import Api, make_settings
from tests.api_server import serve

STATUS = [
    "INSERT INTO gateway (id, bd_seq, online, changed_at) VALUES"
    " ('gw1', 1, true, now() - interval '2 hours'), ('gw2', 1, false, now() - interval '3 days')",
    "INSERT INTO instrument_status (instrument_id, gateway_id, state, since, user_id, power_w,"
    " last_ts) VALUES"
    " ('nmr', 'gw1', 'running', now() - interval '1 hour', 'in1', 850, now() - interval '1 min'),"
    " ('sem', 'gw1', 'idle', now() - interval '1 hour', NULL, 90, now() - interval '20 min'),"
    " ('xrd', 'gw2', 'idle', now() - interval '5 days', NULL, 50, now() - interval '3 days')",
]


@pytest.fixture
def live(api: Api) -> Api:
    for statement in STATUS:
        api.sql(statement)
    return api


def _board(api: Api, role: str = "user", **params: str) -> dict[str, dict[str, object]]:
    with api.as_(role) as c:
        r = c.get("/status", params=params)
    assert r.status_code == 200, r.text
    return {i["instrument_id"]: i for i in r.json()["items"]}


def test_board_derives_offline(live: Api) -> None:
    board = _board(live)
    assert {k: v["state"] for k, v in board.items()} == {
        "nmr": "running", "sem": "offline", "xrd": "offline", "inc1": "offline"}
    assert board["nmr"]["power_w"] == 850 and board["nmr"]["online"] is True
    assert board["sem"]["power_w"] is None  # no live values for an offline instrument
    assert board["inc1"]["since"] is None


def test_who_is_at_an_instrument_is_shown_to_staff_and_to_that_user_only(live: Api) -> None:
    """in1 runs the nmr: staff see who; the outside user out1 does not, on the board, the
    detail or the stream, until out1 is the one at it."""
    for role in ("admin", "manager", "evaluator", "inside_user"):
        nmr = _board(live, role)["nmr"]
        assert (nmr["user_id"], nmr["user_name"]) == ("in1", "校内用户"), role
    nmr = _board(live, "user")["nmr"]
    assert (nmr["state"], nmr["user_id"], nmr["user_name"]) == ("running", None, None)
    with live.as_("user") as c:
        status = c.get("/instruments/nmr/detail").json()["status"]
        assert (status["user_id"], status["user_name"]) == (None, None)
        with c.stream("GET", "/status/stream", timeout=10) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            events = []
            for user in ("out1", "in1"):
                live.sql(f"UPDATE instrument_status SET user_id = '{user}', updated_at = now()"
                         " WHERE instrument_id = 'nmr'")
                events.append(json.loads(next(ln for ln in lines if ln.startswith("data:"))[5:]))
    assert [(e["user_id"], e["user_name"]) for e in events] == [
        ("out1", "外单位用户"), (None, None)]


def test_a_gateway_naming_nobody_shows_the_user_of_the_booking(live: Api) -> None:
    """A power meter names nobody: who is at the nmr is the user of the approved booking its
    running started in (window widened by the grace), marked as the booking's; a cancelled
    booking names nobody, and the user the gateway reports wins."""
    live.sql("UPDATE instrument_status SET user_id = NULL WHERE instrument_id = 'nmr'")
    assert _board(live, "admin")["nmr"]["user_id"] is None
    # running since an hour ago: in the grace (30 min) before out1's window, not in in1's
    live.sql("INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
             " VALUES ('nmr', 'in1', 'assisted', now() - interval '4 hours',"
             "         now() - interval '3 hours', 'approved'),"
             "        ('nmr', 'out1', 'assisted', now() - interval '40 min',"
             "         now() + interval '1 hour', 'approved'),"
             "        ('sem', 'in1', 'self', now() - interval '2 hours', now(), 'cancelled')")
    for role in ("admin", "manager", "user"):
        nmr = _board(live, role)["nmr"]
        assert (nmr["user_id"], nmr["user_name"], nmr["user_booked"]) == (
            "out1", "外单位用户", True), role
    with live.as_("inside_user") as c:  # in1 sees nobody: it is not them
        status = c.get("/instruments/nmr/detail").json()["status"]
    assert (status["user_id"], status["user_booked"]) == (None, False)
    live.sql("UPDATE booking SET status = 'cancelled' WHERE user_id = 'out1'")
    assert _board(live, "admin")["nmr"]["user_id"] is None
    live.sql("UPDATE booking SET status = 'approved' WHERE user_id = 'out1'")
    live.sql("UPDATE instrument_status SET user_id = 'in1' WHERE instrument_id = 'nmr'")
    nmr = _board(live, "admin")["nmr"]
    assert (nmr["user_id"], nmr["user_booked"]) == ("in1", False)


def test_a_booking_approved_while_running_reaches_the_stream_with_the_next_sample(
    live: Api
) -> None:
    """The running nmr names nobody; out1's booking of the hour is approved meanwhile: the
    instrument's next sample (at least one a minute, docs/protocol.md) brings out1, marked
    as the booking's, to the stream."""
    live.sql("UPDATE instrument_status SET user_id = NULL WHERE instrument_id = 'nmr'")
    live.sql("INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
             " VALUES ('nmr', 'out1', 'assisted', now() - interval '40 min',"
             "         now() + interval '1 hour', 'requested')")
    with live.as_("admin") as c, c.stream("GET", "/status/stream", timeout=10,
                                          params={"instrument_id": "nmr"}) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        live.sql("UPDATE booking SET status = 'approved'")
        live.sql("UPDATE instrument_status SET power_w = 852, updated_at = now()"
                 " WHERE instrument_id = 'nmr'")
        event = json.loads(next(ln for ln in lines if ln.startswith("data:"))[5:])
    assert (event["user_id"], event["user_booked"]) == ("out1", True)


UNITS = {"nmr": ("uni-ac", "东北大学分析测试中心"), "sem": ("uni-ac", "东北大学分析测试中心"),
         "xrd": ("other", "大连理工大学"), "inc1": ("incub", "孵化实验室")}
"""Each seeded instrument's unit, by id and name: nmr and sem's is a sub-unit of uni."""


def test_entries_name_their_unit_and_a_renamed_one_anew(live: Api) -> None:
    """Board, detail and stream name each instrument's own unit (a sub-unit by its own name,
    not its university's), for staff and registered users alike. A unit renamed while a
    stream is open is named anew with the instrument's next change, and the stream goes on
    sending changes, a renaming being none."""
    for role in ("admin", "manager", "user"):
        board = _board(live, role)
        assert {k: (v["institution_id"], v["institution_name"]) for k, v in board.items()} \
            == {k: UNITS[k] for k in board}, role
    with live.as_("user") as c:
        detail = c.get("/instruments/nmr/detail").json()
        with c.stream("GET", "/status/stream", timeout=10) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            live.sql("UPDATE institution SET name = '东北大学测试中心' WHERE id = 'uni-ac'")
            events = []
            for state in ("idle", "running"):
                live.sql(f"UPDATE instrument_status SET state = '{state}', since = now(),"
                         " updated_at = now() WHERE instrument_id = 'nmr'")
                events.append(json.loads(next(ln for ln in lines if ln.startswith("data:"))[5:]))
    assert (detail["instrument"]["institution_name"], detail["status"]["institution_name"]) \
        == (UNITS["nmr"][1],) * 2
    assert [(e["instrument_id"], e["state"], e["institution_name"]) for e in events] == [
        ("nmr", "idle", "东北大学测试中心"), ("nmr", "running", "东北大学测试中心")]


def test_board_filters_and_pages(live: Api) -> None:
    assert set(_board(live, state="running")) == {"nmr"}
    assert set(_board(live, state="offline")) == {"sem", "xrd", "inc1"}
    assert set(_board(live, institution_id="uni")) == {"nmr", "sem"}  # sub-unit included
    assert set(_board(live, category="0104")) == {"nmr"}
    with live.as_("user") as c:
        page = c.get("/status", params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 4 and [i["instrument_id"] for i in page["items"]] == ["nmr"]


def test_longer_timeout_setting_changes_the_board(database_url: str, api: Api) -> None:
    for statement in STATUS:
        api.sql(statement)
    settings = make_settings(database_url, heartbeat_timeout_s=3600)
    auth = {"Authorization": f"Bearer {api.tokens['admin']}"}
    with serve(settings) as url, httpx.Client(base_url=url, headers=auth) as c:
        items = {i["instrument_id"]: i["state"] for i in c.get("/status").json()["items"]}
    assert items["sem"] == "idle"  # 20 min old data is fresh with a one-hour timeout
    assert items["xrd"] == "offline"  # gateway offline


def test_detail_timeline_and_power(api: Api) -> None:
    api.sql(
        "INSERT INTO state_sample (instrument_id, ts, state, power_w, gateway_id, seq) VALUES"
        " ('nmr', '2026-03-10 10:00Z', 'idle', 100, 'gw1', 1),"
        " ('nmr', '2026-03-10 10:05Z', 'idle', 200, 'gw1', 2),"
        " ('nmr', '2026-03-10 10:10Z', 'running', 300, 'gw1', 3),"
        " ('nmr', '2026-03-10 10:20Z', 'running', 500, 'gw1', 4),"
        " ('nmr', '2026-03-10 10:30Z', 'idle', NULL, 'gw1', 5),"
        " ('nmr', '2026-03-10 11:00Z', 'idle', NULL, 'gw1', 6),"
        " ('nmr', '2026-03-10 11:10Z', 'idle', NULL, 'gw1', 7),"
        " ('nmr', '2026-03-10 11:20Z', 'idle', NULL, 'gw1', 8)"
    )
    window = {"start": "2026-03-10T10:00:00Z", "end": "2026-03-10T11:15:00Z"}
    with api.as_("evaluator") as c:
        tl = c.get("/instruments/nmr/timeline", params=window).json()
        power = c.get("/instruments/nmr/power", params={**window, "step_s": 600}).json()
        detail = c.get("/instruments/nmr/detail").json()
        second = c.get("/instruments/nmr/timeline", params={**window, "limit": 1, "offset": 1})
        past = [c.get(f"/instruments/nmr/{path}", params={**window, **step, "offset": 9}).json()
                for path, step in (("timeline", {}), ("power", {"step_s": 600}))
                ]  # a page after the last
    assert [(i["state"], i["start"][11:16], i["end"][11:16]) for i in tl["items"]] == [
        ("idle", "10:00", "10:10"), ("running", "10:10", "10:30"),
        ("offline", "10:30", "11:00"), ("idle", "11:00", "11:15")]
    assert second.json()["total"] == 4 and second.json()["items"][0]["state"] == "running"
    assert [(p["items"], p["total"]) for p in past] == [([], 4), ([], 3)]
    assert [(p["ts"][11:16], p["avg_w"], p["min_w"], p["max_w"]) for p in power["items"]] == [
        ("10:00", 150, 100, 200), ("10:10", 300, 300, 300), ("10:20", 500, 500, 500)]
    assert detail["instrument"]["id"] == "nmr" and detail["status"]["state"] == "offline"
    assert detail["gateway"] is None  # none bound, and gw1 never announced itself


def _timescale_statements() -> tuple[str, str]:
    """The continuous aggregate's query and TimescaleDB's power_hours() from timescale.sql."""
    text = (resources.files("instrushare") / "migrations" / "timescale.sql").read_text()
    query = re.search(r"AS\n(SELECT instrument_id.*?)\nWITH NO DATA;", text, re.S)
    function = re.search(r"CREATE OR REPLACE FUNCTION power_hours.*?\$\$;", text, re.S)
    assert query and function
    return query[1], function[0]


def test_power_whole_hours_from_hourly_sums(api: Api) -> None:
    """A window starting on the hour with whole-hour steps takes its whole hours from
    power_hours(); read from raw samples here, or from TimescaleDB's continuous aggregate
    (stood in for by a table filled by the aggregate's own query), the figures are the same."""
    api.sql(
        "INSERT INTO state_sample (instrument_id, ts, state, power_w, gateway_id, seq) VALUES"
        " ('nmr', '2026-03-10 10:00Z', 'idle', 100, 'gw1', 1),"
        " ('nmr', '2026-03-10 10:30Z', 'idle', 200, 'gw1', 2),"
        " ('nmr', '2026-03-10 11:00Z', 'running', 300, 'gw1', 3),"
        " ('nmr', '2026-03-10 11:30Z', 'running', NULL, 'gw1', 4),"
        " ('nmr', '2026-03-10 11:45Z', 'running', 500, 'gw1', 5),"
        " ('nmr', '2026-03-10 12:00Z', 'running', 600, 'gw1', 6),"
        " ('nmr', '2026-03-10 12:15Z', 'idle', 700, 'gw1', 7),"
        " ('nmr', '2026-03-10 12:30Z', 'idle', 800, 'gw1', 8),"
        " ('sem', '2026-03-10 10:15Z', 'idle', 5000, 'gw1', 9)"
    )
    hourly: dict[str, str | int] = {
        "start": "2026-03-10T10:00:00Z", "end": "2026-03-10T12:30:00Z", "step_s": 7200}
    raw: dict[str, str | int] = {
        "start": "2026-03-10T10:10:00Z", "end": "2026-03-10T12:30:00Z", "step_s": 3600}

    def series(params: dict[str, str | int]) -> list[tuple[str, float, float, float, int]]:
        with api.as_("evaluator") as c:
            r = c.get("/instruments/nmr/power", params=params)
        assert r.status_code == 200, r.text
        return [(p["ts"][11:16], p["avg_w"], p["min_w"], p["max_w"], p["samples"])
                for p in r.json()["items"]]

    # 10:00-12:00 from the hourly sums, 12:00-12:30 from the samples (12:30 is past the end)
    expected = [("10:00", 275, 100, 500, 4), ("12:00", 650, 600, 700, 2)]
    unaligned = [("10:10", 250, 200, 300, 2), ("11:10", 550, 500, 600, 2),
                 ("12:10", 700, 700, 700, 1)]
    assert series(hourly) == expected and series(raw) == unaligned

    query, function = _timescale_statements()
    api.sql("CREATE FUNCTION time_bucket(width interval, ts timestamptz) RETURNS timestamptz"
            " LANGUAGE sql IMMUTABLE AS $$ SELECT date_bin(width, ts, '2000-01-03 00:00Z') $$")
    api.sql(f"CREATE TABLE power_hour AS {query}")
    api.sql(function)
    assert series(hourly) == expected and series(raw) == unaligned
    api.sql("UPDATE power_hour SET max_w = 999 WHERE instrument_id = 'nmr'"
            " AND hour = '2026-03-10 11:00Z'")  # the hourly sums are what is read
    assert series(hourly)[0][3] == 999 and series(raw) == unaligned


# gw1 is bound to nmr and sem but announces sem only, and sem last reported through gw2,
# which announces xrd (another institution's) and an instrument the registry does not know
GATEWAYS = [
    "INSERT INTO gateway (id, bd_seq, online, changed_at, instruments, software, dropped)"
    " VALUES ('gw1', 4, false, '2026-03-10 09:00Z', '{sem}', 'instrushare-gateway/0.1', 12),"
    " ('gw2', 1, true, '2026-03-10 08:00Z', '{xrd,ghost}', NULL, 0),"
    " ('gw3', 1, true, '2026-03-10 07:00Z', '{}', NULL, NULL)",
    "UPDATE instrument SET gateway_id = 'gw1' WHERE id IN ('nmr', 'sem')",
    "INSERT INTO instrument_status (instrument_id, gateway_id, state, since, last_ts) VALUES"
    " ('sem', 'gw2', 'idle', now(), '2026-03-10 10:00Z'),"
    " ('xrd', 'gw2', 'idle', now(), '2026-03-10 11:00Z')",
]


def test_detail_shows_the_gateway_and_whether_it_announces_the_instrument(api: Api) -> None:
    for statement in GATEWAYS:
        api.sql(statement)
    with api.as_("evaluator") as c:
        nmr, sem, xrd, inc1 = (c.get(f"/instruments/{i}/detail").json()["gateway"]
                               for i in ("nmr", "sem", "xrd", "inc1"))
    assert nmr == {"id": "gw1", "online": False, "since": "2026-03-10T09:00:00Z",
                   "software": "instrushare-gateway/0.1", "dropped": 12,
                   "announces_instrument": False}
    assert (sem["id"], sem["announces_instrument"]) == ("gw1", True)  # the registry's binding
    assert (xrd["id"], xrd["online"], xrd["announces_instrument"]) == ("gw2", True, True)
    assert inc1 is None  # unbound and never heard of
    with api.as_("user") as c:  # an outside user: nothing of the unit's equipment
        detail = c.get("/instruments/nmr/detail").json()
        board = {i["instrument_id"]: i for i in c.get("/status").json()["items"]}
        listed = c.get("/instruments/nmr").json()
    assert (detail["gateway"], detail["instrument"]["gateway_id"],
            detail["status"]["gateway_id"], listed["gateway_id"]) == (None, None, None, None)
    assert {i["gateway_id"] for i in board.values()} == {None} and "sem" in board


def test_gateway_list(api: Api) -> None:
    for statement in GATEWAYS:
        api.sql(statement)
    with api.as_("evaluator") as c:
        page = c.get("/gateways").json()
        assert page["total"] == 3
        gw1, gw2, gw3 = page["items"]
        assert gw1 == {"id": "gw1", "online": False, "since": "2026-03-10T09:00:00Z",
                       "software": "instrushare-gateway/0.1", "dropped": 12, "announced": ["sem"],
                       "bound": ["nmr", "sem"], "reporting": [], "last_data": None}
        assert (gw2["announced"], gw2["bound"], gw2["reporting"], gw2["last_data"]) == (
            ["ghost", "xrd"], [], ["sem", "xrd"], "2026-03-10T11:00:00Z")
        assert (gw3["id"], gw3["announced"], gw3["reporting"], gw3["dropped"]) == (
            "gw3", [], [], None)
        online = c.get("/gateways", params={"online": "true", "limit": 1}).json()
        assert (online["total"], [g["id"] for g in online["items"]]) == (2, ["gw2"])
    with api.as_("manager") as c:  # uni's nmr and sem: gw1 bound, gw2 reporting sem
        mine = c.get("/gateways").json()["items"]
    assert [(g["id"], g["announced"], g["bound"], g["reporting"], g["last_data"])
            for g in mine] == [("gw1", ["sem"], ["nmr", "sem"], [], None),
                               ("gw2", [], [], ["sem"], "2026-03-10T10:00:00Z")]


def test_server_sent_events(live: Api) -> None:
    with live.as_("user") as c, c.stream("GET", "/status/stream", timeout=10) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        live.sql("UPDATE instrument_status SET power_w = 851, updated_at = now()"
                 " WHERE instrument_id = 'nmr'")  # power alone: no event
        live.sql("UPDATE instrument_status SET state = 'idle', since = now(), user_id = NULL,"
                 " updated_at = now() WHERE instrument_id = 'nmr'")
        events = []
        for line in lines:
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
                break
    assert events[0]["instrument_id"] == "nmr"
    assert events[0]["state"] == "idle" and events[0]["user_id"] is None


_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")


def test_every_json_time_is_utc_with_z(live: Api) -> None:
    """One form whichever route answers: the board and the stream, encoded without a response
    model, write times as the models of the detail and the gateways do."""
    with live.as_("admin") as c:
        bodies = [c.get(path).text for path in ("/status", "/instruments/nmr/detail",
                                                "/gateways")]
        with c.stream("GET", "/status/stream", timeout=10) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            live.sql("UPDATE instrument_status SET state = 'idle', since = now(), user_id = NULL,"
                     " updated_at = now() WHERE instrument_id = 'nmr'")
            event = []
            for line in lines:
                if line.startswith(("id:", "data:")):
                    event.append(line)
                if line.startswith("data:"):
                    break
    times = _TIME.findall("\n".join(bodies))
    # board: since and last_ts of nmr, sem and xrd; detail: the registry's created_at and
    # listed_at, the board's two, gw1's since; gateways: since and last_data of gw1 and gw2
    assert len(times) == 6 + 5 + 4 and all(t.endswith("Z") for t in times), times
    assert [len(_TIME.findall(line)) for line in event] == [1, 2]  # the id; since, last_ts
    assert all(t.endswith("Z") for line in event for t in _TIME.findall(line)), event


# stream -> (token, query, the instruments whose changes it must get: nmr belongs to uni-ac,
# a sub-unit of uni, listed in category 010401 but since moved to 020101 and renamed, not yet
# reviewed; xrd to other, category 010501, and is not listed)
STREAMS = {
    "all": ("admin", {}, ["nmr", "xrd"]),
    "user": ("user", {}, ["nmr"]),
    "manager": ("manager", {}, ["nmr"]),
    "sub-units": ("evaluator", {"institution_id": "uni"}, ["nmr"]),
    "institution": ("admin", {"institution_id": "other"}, ["xrd"]),
    "category": ("admin", {"category": "0105"}, ["xrd"]),
    "live category": ("admin", {"category": "02"}, ["nmr"]),
    "listed category": ("user", {"category": "0104"}, ["nmr"]),
    "unlisted category": ("user", {"category": "02"}, []),
    "none": ("admin", {"category": "03"}, []),
    "instrument": ("admin", {"instrument_id": "xrd"}, ["xrd"]),
    "own instrument": ("manager", {"instrument_id": "nmr"}, ["nmr"]),
    "quiet instrument": ("manager", {"instrument_id": "sem"}, []),
    "listed instrument": ("user", {"instrument_id": "nmr"}, ["nmr"]),
}
NMR_LISTED, NMR_LIVE = "核磁共振波谱仪", "600 MHz 核磁共振波谱仪"


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith(name + " ")))


def test_streams_share_one_poll_and_each_keeps_to_its_scope(live: Api) -> None:
    settings = make_settings(live.database_url, sse_keepalive_s=0.3)
    got: dict[str, list[str]] = {name: [] for name in STREAMS}
    nmr_names: dict[str, set[str]] = {name: set() for name in STREAMS}
    listening = threading.Barrier(len(STREAMS) + 1, timeout=20)
    stop = threading.Event()

    def listen(url: str, name: str) -> None:
        token, params, _ = STREAMS[name]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {live.tokens[token]}"},
                          timeout=10) as c, c.stream("GET", "/status/stream", params=params) as s:
            lines = s.iter_lines()
            assert next(lines).startswith("retry:")  # sent once the stream read its board
            listening.wait()
            for line in lines:
                if line.startswith("data:"):
                    item = json.loads(line[5:])
                    got[name].append(item["instrument_id"])
                    if item["instrument_id"] == "nmr":
                        nmr_names[name].add(item["name"])
                if stop.is_set():
                    return

    live.sql("UPDATE instrument SET listing = NULL WHERE id = 'xrd'")  # out of the catalogue
    live.sql(f"UPDATE instrument SET name = '{NMR_LIVE}', category_code = '020101'"
             " WHERE id = 'nmr'")
    with serve(settings) as url, ThreadPoolExecutor(len(STREAMS)) as pool:
        listeners = [pool.submit(listen, url, name) for name in STREAMS]
        listening.wait()
        assert _metric(url, "instrushare_api_event_streams") == len(STREAMS)
        polls, started = _metric(url, "instrushare_api_status_polls_total"), time.monotonic()
        live.sql("UPDATE instrument_status SET state = 'idle', user_id = NULL, since = now(),"
                 " updated_at = now() WHERE instrument_id = 'nmr'")
        live.sql("UPDATE gateway SET online = true, changed_at = now() WHERE id = 'gw2'")
        live.sql("UPDATE instrument_status SET last_ts = now(), updated_at = now()"
                 " WHERE instrument_id = 'xrd'")  # back online
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and got["all"] != ["nmr", "xrd"]:
            time.sleep(0.05)
        time.sleep(1)  # anything a stream should not get would come by now
        stop.set()
        for listener in listeners:
            listener.result()
        elapsed = time.monotonic() - started
        assert 1 <= _metric(url, "instrushare_api_status_polls_total") - polls \
            <= elapsed / settings.sse_poll_s + 2  # one poll per interval for all the streams
    assert got == {name: expected for name, (_, _, expected) in STREAMS.items()}
    assert nmr_names == {name: set() if "nmr" not in expected
                         else {NMR_LISTED} if token == "user" else {NMR_LIVE}
                         for name, (token, _, expected) in STREAMS.items()}


def test_an_institution_that_does_not_exist_is_refused(live: Api) -> None:
    """A mistyped id gets 422 naming it, as a report does, not an empty board (or a stream
    that never says anything) that reads as an institution without instruments; a lab
    manager still gets 403 for any id outside their tree."""
    refused = (422, "institution_id: no institution 'unii'")
    for role in ("evaluator", "admin", "user"):
        with live.as_(role) as c:
            for path in ("/status", "/status/stream"):
                r = c.get(path, params={"institution_id": "unii"})
                assert (r.status_code, r.json()["message"]) == refused, (role, path)
    with live.as_("manager") as c:
        assert c.get("/status", params={"institution_id": "unii"}).status_code == 403
        assert c.get("/status", params={"institution_id": "uni-ac"}).status_code == 200


def test_a_stream_of_one_instrument_is_refused_as_its_detail_is(live: Api) -> None:
    """Another institution's instrument is 403 for a lab manager, one not listed 404 for a
    registered user, an unknown id 404 for everyone: what its detail answers, with the same
    message, rather than a stream that never says anything."""
    live.sql("UPDATE instrument SET listing = NULL WHERE id = 'xrd'")
    refused = {("manager", "xrd"): 403, ("user", "xrd"): 404,
               **{(role, "nope"): 404 for role in ("admin", "manager", "evaluator", "user")}}
    for (role, instrument), code in refused.items():
        with live.as_(role) as c:
            stream = c.get("/status/stream", params={"instrument_id": instrument})
            detail = c.get(f"/instruments/{instrument}/detail")
        assert (stream.status_code, stream.json()) == (code, detail.json()), (role, instrument)


def test_lab_manager_sees_only_their_institution(live: Api) -> None:
    with live.as_("manager") as c:
        board = c.get("/status").json()["items"]
        assert {i["instrument_id"] for i in board} == {"nmr", "sem"}
        assert c.get("/status", params={"institution_id": "other"}).status_code == 403
        assert c.get("/status/stream", params={"institution_id": "other"}).status_code == 403
        assert c.get("/instruments/nmr/detail").status_code == 200
        foreign = sorted({"xrd", "inc1"})
        for instrument in foreign:
            assert c.get(f"/instruments/{instrument}/detail").status_code == 403
            span = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
            assert c.get(f"/instruments/{instrument}/timeline", params=span).status_code == 403
            assert c.get(f"/instruments/{instrument}/power", params=span).status_code == 403
    with live.as_("evaluator") as c:
        assert len(c.get("/status").json()["items"]) == 4


def test_a_stream_too_far_behind_is_ended(database_url: str) -> None:
    """Its queue holds at most BACKLOG polls; then the feed drops them and ends it (the
    browser reconnects and reads the board anew), and stops polling for it."""
    async def scenario() -> tuple[list[Changes | None], int, int]:
        pool = make_pool(make_settings(database_url))
        await pool.open()
        polls = 0

        def count() -> None:
            nonlocal polls
            polls += 1

        feed = StatusFeed(pool, timeout=timedelta(minutes=15), grace=timedelta(minutes=30),
                          poll_s=0.005, on_poll=count)
        try:
            async with feed.subscribe() as slow:
                while feed.streams:
                    await asyncio.sleep(0.01)
                at_drop = polls
                await asyncio.sleep(0.2)
                queued = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
        finally:
            await feed.close()
            await pool.close()
        return queued, at_drop, polls

    queued, at_drop, polls = asyncio.run(scenario())
    assert queued == [None]
    assert at_drop == BACKLOG + 1 and polls == at_drop  # idle once nobody listens


def test_a_stream_ends_once_its_token_is_revoked(live: Api) -> None:
    settings = make_settings(live.database_url, sse_keepalive_s=0.3)
    with serve(settings) as url, httpx.Client(base_url=url, timeout=10) as c:
        admin = {"Authorization": f"Bearer {live.tokens['admin']}"}
        made = c.post("/tokens", json={"role": "evaluator"}, headers=admin).json()
        watcher = {"Authorization": f"Bearer {made['token']}"}
        with c.stream("GET", "/status/stream", headers=watcher) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            assert c.delete(f"/tokens/{made['id']}", headers=admin).status_code == 204
            deadline = time.monotonic() + 5
            for line in lines:  # ends when the server ends the stream
                assert not line.startswith("data:")
                assert time.monotonic() < deadline, "the stream outlived its token"
        assert c.get("/status/stream", headers=watcher).status_code == 401
