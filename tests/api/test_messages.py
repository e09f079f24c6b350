"""Refusals say what is wrong in words a caller can act on, with the documented codes."""

from __future__ import annotations

import httpx

from tests.api.conftest import Api


def _refusal(r: httpx.Response) -> tuple[int, str, str]:
    body = r.json()
    return r.status_code, body["error"], body["message"]


def test_a_body_that_is_not_json_says_why_and_where(api: Api) -> None:
    with api.as_("admin") as c:
        def patch(content: bytes) -> httpx.Response:
            return c.patch("/institutions/uni", content=content,
                           headers={"Content-Type": "application/json"})

        not_utf8 = patch(b"\xff\xfe{")
        syntax = patch(b'{"name": "x",\n "region" "y"}')
        deep = patch(b"[" * 100_000)
    assert _refusal(not_utf8) == (422, "invalid", "body: not valid JSON: not UTF-8 text")
    assert _refusal(syntax) == (
        422, "invalid", "body: not valid JSON: Expecting ':' delimiter at line 2, column 11")
    assert _refusal(deep) == (422, "invalid", "body: nested too deeply to read")


def test_hours_must_be_a_finite_number(api: Api) -> None:
    with api.as_("evaluator") as c:
        for value in ("NaN", "inf"):
            r = c.get("/evaluation/2026/low-utilisation", params={"below_hours": value})
            assert _refusal(r) == (422, "invalid", "query.below_hours: Input should be a"
                                   " finite number")


def test_a_class_neither_named_nor_registered_is_refused_wherever_it_filters(api: Api) -> None:
    """0199 (analytical, other) and 15 name no class: refused, not answered with empty lists
    that would read as "none of the class", until an instrument is registered in 0199. A
    six-digit code in a named class (019999: class 01) is taken as it is."""
    month = {"start": "2026-01-01", "end": "2026-01-31"}
    paths = [("/evaluation/2026/duplicate-review", {}), ("/status", {}), ("/instruments", {}),
             ("/reports/utilisation", month), ("/status/stream", {})]

    def asked(category: str) -> list[tuple[int, str, str]]:
        with api.as_("evaluator") as c:
            return [_refusal(c.get(path, params={**params, "category": category}))
                    for path, params in paths]

    for category in ("0199", "15"):
        assert asked(category) == [(422, "invalid", "category: the national classification"
                                    f" has no class {category!r} and no instrument is"
                                    " registered in it (GET /categories lists the classes)")
                                   ] * len(paths)
    api.sql("UPDATE instrument SET category_code = '019901' WHERE id = 'nmr'")
    with api.as_("evaluator") as c:
        review = c.get("/evaluation/2026/duplicate-review", params={"category": "0199"})
        board = c.get("/status", params={"category": "0199"})
        other = c.get("/reports/utilisation", params={**month, "category": "019999"})
    assert [i["instrument_id"] for i in review.json()["items"]] == ["nmr"]
    assert [i["instrument_id"] for i in board.json()["items"]] == ["nmr"]
    assert (other.status_code, other.json()["items"]) == (200, [])


def test_a_service_register_of_an_unknown_instrument_is_refused(api: Api) -> None:
    with api.as_("evaluator") as c:
        r = c.get("/reports/service-records", params={
            "start": "2026-01-01", "end": "2026-01-31", "instrument_id": "nmx"})
    assert _refusal(r) == (404, "not_found", "no instrument 'nmx'")


def test_an_offset_whose_plus_arrived_as_a_space_gets_a_hint(api: Api) -> None:
    with api.as_("admin") as c:
        unencoded = c.get("/instruments/nmr/timeline?start=2026-11-27T00:00:00+08:00"
                          "&end=2026-11-28T00:00:00%2B08:00")
        naive = c.get("/instruments/nmr/timeline?start=2026-11-27T00:00:00"
                      "&end=2026-11-28T00:00:00%2B08:00")
        encoded = c.get("/instruments/nmr/timeline?start=2026-11-27T00:00:00%2B08:00"
                        "&end=2026-11-28T00:00:00%2B08:00")
    code, error, message = _refusal(unencoded)
    assert (code, error) == (422, "invalid")
    assert message.startswith("query.start: not a valid time (unexpected extra characters at"
                              " the end of the input): write it in ISO 8601 with an offset")
    assert message.endswith("send the offset's '+' as %2B")
    assert "%2B" not in naive.json()["message"]  # no offset at all: nothing to encode
    assert encoded.status_code == 200, encoded.text


def test_another_authorization_scheme_is_named(api: Api) -> None:
    basic = httpx.get(f"{api.url}/instruments", headers={"Authorization": "Basic dXNlcjpwdw=="})
    bare = httpx.get(f"{api.url}/instruments", headers={"Authorization": api.tokens["admin"]})
    none = httpx.get(f"{api.url}/instruments")
    scheme = (401, "unauthorized", "the Authorization header must use the Bearer scheme:"
              " `Authorization: Bearer <token>`")
    assert _refusal(basic) == _refusal(bare) == scheme
    assert basic.headers["WWW-Authenticate"] == "Bearer"
    assert _refusal(none) == (401, "unauthorized", "no API token: send the header"
                              " `Authorization: Bearer <token>`")


def test_days_and_times_are_written_out_not_numbers(api: Api) -> None:
    """A number would otherwise be read as Unix seconds, and a time at midnight in any zone
    as a day: both are refused, saying how to write them."""
    period = {"start": "2026-01-01", "end": "2026-01-31"}
    with api.as_("evaluator") as c:
        for start in ("20260101", "2026-01-01T00:00:00Z", "1767196800"):
            r = c.get("/reports/utilisation", params={**period, "start": start})
            assert _refusal(r) == (422, "invalid", "query.start: write a day as YYYY-MM-DD")
        assert c.get("/reports/utilisation", params=period).status_code == 200
        r = c.get("/instruments/nmr/timeline", params={"start": "1767196800",
                                                        "end": "2026-01-02T00:00:00+08:00"})
        assert r.status_code == 422 and "not as a number" in r.json()["message"]
    with api.as_("user") as c:
        r = c.post("/bookings", json={"instrument_id": "nmr", "kind": "assisted",
                                      "start": 1893456000, "end": "2030-01-01T12:00:00+08:00"})
        assert r.status_code == 422 and "not as a number" in r.json()["message"]


def test_a_nul_is_refused_in_words_wherever_it_is_sent(api: Api) -> None:
    """In a path, a filter or a JSON text: the caller reads what is wrong and where, not the
    database's complaint."""
    url = "the URL holds a NUL character (%00), which no id, date or filter may contain"
    with api.as_("admin") as c:
        in_path = c.get("/instruments/a%00b")
        in_filter = c.get("/instruments", params={"institution_id": "a\x00b"})
        in_body = c.patch("/institutions/uni", json={"name": "a\x00b"})
    assert _refusal(in_path) == _refusal(in_filter) == (422, "invalid", url)
    assert _refusal(in_body) == (422, "invalid",
                                 "body.name: may not contain the NUL character (U+0000)")


def test_a_time_it_cannot_read_is_refused_saying_how_to_write_one(api: Api) -> None:
    """Hour 24, a leap second, an offset of hours only: pydantic says only that characters
    are left over; the refusal says what a time must look like."""
    with api.as_("user") as c:
        for written in ("2026-03-10T24:00:00+08:00", "2024-02-29T23:59:60Z",
                        "2026-03-10T09:00:00+08", "2026-13-10T09:00:00Z"):
            r = c.post("/bookings", json={"instrument_id": "nmr", "kind": "assisted",
                                          "start": written, "end": "2026-03-11T09:00:00Z"})
            code, error, message = _refusal(r)
            assert (code, error) == (422, "invalid"), written
            assert message.startswith("body.start: not a valid time ("), message
            assert message.endswith("as 2026-03-10T09:00:00+08:00 (hours 00-23, minutes and"
                                    " seconds 00-59, offset ±HH:MM)"), message
            assert "%2B" not in message  # a body is not a query string



def test_a_query_parameter_the_endpoint_does_not_take_is_refused_by_name(api: Api) -> None:
    """An evaluator filtering the evaluation by institution, which its lists do not do, or
    misspelling a filter, is told so rather than given the whole province, and a filter given
    twice is not read as its last; the web pages, outside the API's document, take what a
    browser adds."""
    with api.as_("evaluator") as c:
        unknown = c.get("/evaluation/2025/instruments", params={"institution_id": "uni"})
        misspelt = c.get("/status", params={"instituton_id": "uni"})
        none_taken = c.get("/evaluation/rules", params={"limit": 10})
        taken = c.get("/status", params={"institution_id": "uni", "limit": 5})
        twice = c.get("/status?state=idle&state=running")
        root = c.get("/", params={"utm_source": "mail"})
        page = c.get("/ui/", params={"utm_source": "mail"})
    assert _refusal(unknown) == (422, "invalid", "query.institution_id: this endpoint takes no"
                                 " such parameter (it takes format, lang, limit, offset)")
    assert _refusal(misspelt) == (422, "invalid", "query.instituton_id: this endpoint takes no"
                                  " such parameter (it takes category, institution_id, limit,"
                                  " offset, state)")
    assert _refusal(none_taken) == (422, "invalid", "query.limit: this endpoint takes no such"
                                    " parameter (it takes none)")
    assert _refusal(twice) == (422, "invalid", "query.state: given 2 times; give it once (no"
                               " parameter takes a list)")
    assert taken.status_code == 200, taken.text
    assert root.status_code == 307  # to the dashboard
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
