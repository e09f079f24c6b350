"""Parameters at the ends of the calendar, and bodies too large, stalled or sent with no
token, get a clear 4xx, never a 500."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from monitor_api.auth import NO_TOKEN
from monitor_api.body_limit import BodyLimit
from tests.api.conftest import Api

RANGE = "dates must lie between 1900-01-01 and 2199-12-31"
EARLY, LATE = "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"

# (method, path, query, json body, who)
CASES: list[tuple[str, str, dict[str, Any], Any, str]] = [
    ("GET", "/reports/utilisation", {"start": "9999-12-31", "end": "9999-12-31"}, None, "admin"),
    ("GET", "/reports/utilisation", {"start": "0001-01-01", "end": "0001-01-01"}, None, "admin"),
    ("GET", "/reports/utilisation", {"start": "1899-12-31", "end": "1900-01-02"}, None, "admin"),
    ("GET", "/compliance/overdue", {"as_of": "9999-12-31"}, None, "admin"),
    ("GET", "/compliance/overdue", {"as_of": "0001-01-01"}, None, "admin"),
    ("GET", "/evaluation/overdue-registrations", {"as_of": "9999-12-31"}, None, "admin"),
    ("GET", "/instruments/nmr/timeline", {"start": EARLY, "end": "2026-01-01T00:00:00Z"},
     None, "admin"),
    ("GET", "/instruments/nmr/timeline", {"start": "2026-01-01T00:00:00Z", "end": LATE},
     None, "admin"),
    ("GET", "/instruments/nmr/power",
     {"start": "9999-12-01T00:00:00Z", "end": LATE, "step_s": 2678400}, None, "admin"),
    ("GET", "/instruments/nmr/power",
     {"start": EARLY, "end": "0001-02-01T00:00:00Z", "step_s": 2678400}, None, "admin"),
    ("POST", "/instruments", {}, {"id": "far", "name": "x", "institution_id": "uni",
                                  "accepted_on": "9999-12-31"}, "admin"),
    ("PATCH", "/instruments/nmr", {}, {"networked_on": "0001-01-01"}, "admin"),
    ("POST", "/certifications", {}, {"user_id": "out1", "instrument_id": "nmr",
                                     "level": "self", "valid_from": EARLY}, "admin"),
    ("POST", "/bookings", {}, {"instrument_id": "nmr", "kind": "assisted",
                               "start": "9999-12-31T22:00:00-14:00", "end": LATE}, "user"),
    ("POST", "/bookings", {}, {"instrument_id": "nmr", "kind": "assisted",  # 2200 in UTC
                               "start": "2199-12-31T20:00:00-08:00",
                               "end": "2199-12-31T23:00:00-08:00"}, "user"),
]


def test_out_of_range_dates_are_refused_clearly(api: Api) -> None:
    failures = []
    for method, path, query, body, who in CASES:
        with api.as_(who) as c:
            r = c.request(method, path, params=query, json=body)
        if r.status_code != 422 or RANGE not in r.json()["message"]:
            failures.append(f"{method} {path} {query} {body}: {r.status_code} {r.text:.200}")
    assert not failures, "\n".join(failures)


def test_a_time_on_an_allowed_day_but_not_in_utc_says_which_instant(api: Api) -> None:
    with api.as_("user") as c:
        r = c.post("/bookings", json={"instrument_id": "nmr", "kind": "assisted",
                                      "start": "2199-12-31T20:00:00-08:00",
                                      "end": "2199-12-31T23:00:00-08:00"})
    assert r.json()["message"] == (f"body.start: {RANGE}, in UTC too: this time is"
                                   " 2200-01-01T04:00Z")


def test_evaluation_year_outside_the_range(api: Api) -> None:
    with api.as_("evaluator") as c:
        for year in (1999, 2101, 9999):
            r = c.get(f"/evaluation/{year}/instruments")
            assert r.status_code == 422, r.text
            assert "year" in r.json()["message"]


def test_csv_import_reports_far_dates_per_line(api: Api) -> None:
    text = "id,name,institution_id,accepted_on\nfar,远,uni-ac,9999-12-31\n"
    with api.as_("admin") as c:
        r = c.post("/instruments/import", content=text.encode(),
                   headers={"Content-Type": "text/csv"})
    assert r.status_code == 422
    assert r.json()["details"][0]["line"] == 2
    assert RANGE in r.json()["details"][0]["reason"]


def test_a_report_covers_at_most_1830_days(api: Api) -> None:
    with api.as_("admin") as c:
        longest, longer = (c.get("/reports/utilisation", params={
            "start": "2021-01-01", "end": end}) for end in ("2026-01-04", "2026-01-05"))
    assert longest.status_code == 200, longest.text
    assert longer.status_code == 422
    assert longer.json()["message"] == (
        "a report covers at most 1830 days; 2021-01-01 to 2026-01-05 is 1831")
    # a code and the limit, which a client words in its own language
    assert (longer.json()["reason"], longer.json()["details"]) == (
        "period_too_long", {"max_days": 1830})


def test_a_timeline_covers_at_most_400_days(api: Api) -> None:
    with api.as_("admin") as c:
        r = c.get("/instruments/nmr/timeline", params={
            "start": "2025-01-01T00:00:00Z", "end": "2026-02-06T00:00:00Z"})
    assert (r.status_code, r.json()["message"], r.json()["reason"], r.json()["details"]) == (
        422, "at most 400 days per request", "period_too_long", {"max_days": 400})


def test_the_ends_of_the_range_work(api: Api) -> None:
    with api.as_("admin") as c:
        for start, end in (("1900-01-01", "1900-01-01"), ("2199-12-31", "2199-12-31")):
            r = c.get("/reports/utilisation", params={"start": start, "end": end})
            assert r.status_code == 200, r.text
        assert c.get("/compliance/overdue", params={"as_of": "2199-12-31"}).status_code == 200


def test_an_import_file_over_20_mib_is_refused_whole(api: Api) -> None:
    header = "id,name,institution_id\n"
    row = "x{:07d},一台仪器,uni-ac\n"
    rows = [row.format(k) for k in range(21 * 2**20 // len(row.format(0).encode()))]
    with api.as_("admin") as c:
        r = c.post("/instruments/import", content=(header + "".join(rows)).encode(),
                   headers={"Content-Type": "text/csv"})
    assert r.status_code == 413
    assert r.json() == {"error": "too_large",
                        "message": "the request body may hold at most 20 MiB"}
    assert api.sql("SELECT count(*) FROM instrument WHERE id LIKE 'x0%'") == [(0,)]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_any_other_body_over_1_mib_is_refused_before_the_token_is_checked(
    api: Api, chunked: bool
) -> None:
    body = b'{"instrument_id": "' + b"x" * 2**21 + b'"}'
    content = (body[k:k + 65536] for k in range(0, len(body), 65536)) if chunked else body
    r = httpx.post(f"{api.url}/bookings", content=content, timeout=30, headers={
        "Content-Type": "application/json", "Authorization": "Bearer not-checked-yet"})
    assert r.status_code == 413
    assert r.json() == {"error": "too_large", "message": "the request body may hold at most 1 MiB"}
    with api.as_("user") as c:  # a body of ordinary size still gets through to its checks
        assert c.post("/bookings", json={"instrument_id": "nmr"}).status_code == 422


def _raw(api: Api, head: str) -> socket.socket:
    """A connection that has sent ``head`` (request line and headers) and what follows."""
    url = httpx.URL(api.url)
    conn = socket.create_connection((url.host, url.port), timeout=10)
    conn.sendall(head.replace("\n", "\r\n").encode())
    return conn


def _answer(conn: socket.socket) -> tuple[int, str]:
    """The response's status and body."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += conn.recv(65536)
    head, body = received.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += conn.recv(65536)
    return int(head.split(b" ", 2)[1]), json.loads(body)["message"]


def test_a_body_sent_with_no_token_is_refused_before_it_is_read(api: Api) -> None:
    """Else anyone could make the API hold 20 MiB per connection, unanswered."""
    with _raw(api, "POST /instruments/import HTTP/1.1\nHost: x\nContent-Type: text/csv\n"
                   "Transfer-Encoding: chunked\n\n10\nid,name,institut\n") as conn:
        answer = _answer(conn)  # the rest of the body never comes
    assert answer == (401, NO_TOKEN)
    r = httpx.post(f"{api.url}/bookings", json={"instrument_id": "nmr"})
    assert (r.status_code, r.json()["message"]) == (401, NO_TOKEN)


def test_a_chunked_body_that_stalls_or_is_abandoned_is_answered(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BodyLimit, "IDLE_S", 0.5)
    head = ("POST /instruments/import HTTP/1.1\nHost: x\nContent-Type: text/csv\n"
            f"Authorization: Bearer {api.tokens['admin']}\nTransfer-Encoding: chunked\n\n"
            "10\nid,name,institut\n")
    with _raw(api, head) as conn:
        answer = _answer(conn)
    assert answer == (408, "the request body stalled: nothing arrived for 0.5 s")
    _raw(api, head).close()  # gone mid-body: answered 400 into the void, not a 500
    time.sleep(1)
    with api.as_("admin") as c:
        metrics = c.get("/metrics").text
    assert 'method="POST",route="unmatched",status="400"' in metrics  # before routing
    assert 'status="500"' not in metrics
