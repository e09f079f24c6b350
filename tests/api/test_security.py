"""What one request may cost the server: a value or a file crafted to make it work for minutes
(or hold gigabytes) is refused at once, and the server keeps serving everyone else."""

from __future__ import annotations

import threading
import time

import httpx

from tests.api.conftest import NEXT_WEEK, Api

DIGITS = "1" * 20_000 + "x"
"""Looks like a number until its last character: a backtracking check of "is this a number"
took quadratic time on it (20,000 characters: ~10 s; a 1 MiB body: hours), on the event loop,
so that every other request waited."""


def test_a_long_almost_number_in_place_of_a_time_is_refused_at_once(api: Api) -> None:
    calls = [
        ("POST", "/bookings", None, {"instrument_id": "nmr", "kind": "assisted",
                                     "start": DIGITS, "end": f"{NEXT_WEEK}T10:00:00Z"}),
        ("GET", "/bookings", {"ends_after": DIGITS}, None),
        ("GET", "/instruments/nmr/timeline", {"start": DIGITS, "end": "2026-01-01T00:00:00Z"},
         None),
    ]
    probe: list[float] = []

    def health() -> None:  # the rest of the server is not held up meanwhile
        time.sleep(0.3)
        started = time.monotonic()
        httpx.get(f"{api.url}/healthz", timeout=60)
        probe.append(time.monotonic() - started)

    for method, path, query, body in calls:
        watcher = threading.Thread(target=health)
        watcher.start()
        with api.as_("user") as c:
            started = time.monotonic()
            r = c.request(method, path, params=query, json=body, timeout=60)
            took = time.monotonic() - started
        watcher.join()
        assert r.status_code == 422, r.text
        # margins for a loaded machine: the quadratic check took ~10 s on this text
        assert took < 5, f"{method} {path} took {took:.1f} s"
        assert probe[-1] < 3, f"/healthz waited {probe[-1]:.1f} s behind {method} {path}"


def test_an_import_of_more_rows_than_allowed_is_refused_before_it_is_checked(api: Api) -> None:
    """A 20 MiB file of minimal lines is 1.4 million instruments: parsed, it held over 2 GB
    and took minutes; the import takes at most 200,000 rows."""
    rows = 200_001
    text = "id,name,institution_id\n" + "".join(f"m{k:x},n,uni-ac\n" for k in range(rows))
    assert len(text.encode()) < 20 * 2**20  # within the size allowed
    with api.as_("manager") as c:
        r = c.post("/instruments/import", content=text.encode(),
                   headers={"Content-Type": "text/csv"}, timeout=120)
    assert r.status_code == 422, r.text[:300]
    body = r.json()
    assert body["details"] == [{"line": rows + 1, "reason": "the file holds more than 200,000"
                                " rows: split it into files of at most 200,000 rows"}]
    assert api.sql("SELECT count(*) FROM instrument WHERE id LIKE 'm%%'") == [(0,)]


def test_reported_use_takes_as_many_rows_as_an_import(api: Api) -> None:
    text = "instrument_id,effective_hours\n" + "a,1\n" * 200_001  # under 1 MiB
    with api.as_("manager") as c:
        r = c.post("/evaluation/2025/reported-use", content=text.encode(),
                   headers={"Content-Type": "text/csv"}, timeout=120)
    assert r.status_code == 422, r.text[:300]
    assert r.json()["details"] == [{"line": 200_002, "reason": "the file holds more than"
                                    " 200,000 rows: split it into files of at most 200,000"
                                    " rows"}]
