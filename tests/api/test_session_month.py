"""The monthly usage rollup (session_month): written once a month is final, read by the next
report over whole months, and forgotten when what it was computed from changes.

Data of tests/api/test_metrics.py (sessions on 9-11 March 2026), plus an 'nmr' sample on
2 April, which makes March final for 'nmr'. 'xrd' has a session still open: not final.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from instrushare.db import LOCK_INSTRUMENTS, SHARE_INSTRUMENTS, SHARE_ROLLUPS
from monitor_api.db import Connect, make_pool
from monitor_api.queries import metrics
from monitor_api.queries.session_month import roll_up
from monitor_api.report import period_bounds
from tests.api.conftest import Api, write_through_ingest
from tests.api.test_metrics import SETUP

SHANGHAI = ZoneInfo("Asia/Shanghai")
MARCH = date(2026, 3, 1)


@pytest.fixture
def final(api: Api) -> Api:
    for statement in SETUP:
        api.sql(statement)
    api.sql("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
            " VALUES ('nmr', '2026-04-02 00:00+08', 'idle', 'gw', 0)")
    return api


def _march(api: Api) -> dict[str, dict[str, Any]]:
    with api.as_("evaluator") as c:
        r = c.get("/reports/utilisation",
                  params={"start": "2026-03-01", "end": "2026-03-31", "availability": "false"})
    assert r.status_code == 200, r.text
    return {item["key"]: item for item in r.json()["items"]}


def _rolled(api: Api) -> list[tuple[object, ...]]:
    return api.sql("SELECT instrument_id, month FROM session_month"
                   " WHERE instrument_id IN ('nmr', 'xrd') ORDER BY 1, 2")


def test_a_final_month_is_rolled_up_and_serves_the_next_report(final: Api) -> None:
    first = _march(final)
    assert _rolled(final) == [("nmr", MARCH)]
    assert first["nmr"]["sessions"] == 6 and first["nmr"]["bookings"] == 3
    assert _march(final) == first  # read back from the rollup
    final.sql("UPDATE session_month SET effective_s = effective_s + 3600")
    again = _march(final)
    assert again["nmr"]["effective_hours"] == pytest.approx(
        first["nmr"]["effective_hours"] + 1)
    assert again["xrd"] == first["xrd"]  # still computed from its sessions
    # bookings are read when the report runs: a new one leaves the rollup alone
    final.sql("INSERT INTO booking (id, instrument_id, user_id, kind, start_ts, end_ts, status)"
              " VALUES (5, 'nmr', 'in1', 'self', '2026-03-20 09:00+08', '2026-03-20 10:00+08',"
              " 'approved')")
    assert _rolled(final) == [("nmr", MARCH)]
    assert _march(final)["nmr"]["bookings"] == 4


CHANGES = [
    "INSERT INTO certification (user_id, instrument_id, level, valid_from)"
    " VALUES ('new1', 'nmr', 'self', '2026-03-01 00:00+08')",
    "UPDATE certification SET valid_from = '2026-03-10 10:00+08' WHERE user_id = 'in1'",
    "UPDATE platform_user SET approved = false WHERE id = 'out1'",
    "UPDATE platform_user SET institution_id = 'uni' WHERE id = 'firm1'",
    "UPDATE instrument SET cooldown_s = 600 WHERE id = 'nmr'",
    "UPDATE institution SET parent_id = NULL WHERE id = 'uni-ac'",
]
"""Registry changes that change nmr's March figures."""


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_forgets_the_months_it_changes(final: Api, change: str) -> None:
    before = _march(final)
    assert _rolled(final) == [("nmr", MARCH)]
    final.sql(change)
    assert _rolled(final) == []
    after = _march(final)  # computed again, and equal to a report without any rollup
    assert _rolled(final) == [("nmr", MARCH)]
    final.sql("DELETE FROM state_sample WHERE ts = '2026-04-02 00:00+08'")  # not final now
    final.sql("DELETE FROM session_month")
    assert _march(final) == after
    assert after != before


def test_a_change_that_matters_not_keeps_the_rows(final: Api) -> None:
    _march(final)
    final.sql("UPDATE platform_user SET email = 'x@example.org' WHERE id = 'out1'")
    final.sql("UPDATE instrument SET location = 'B-101' WHERE id = 'nmr'")
    assert _rolled(final) == [("nmr", MARCH)]


def test_late_data_through_the_ingest_forgets_the_month(final: Api) -> None:
    assert _march(final)["nmr"]["sessions"] == 6
    # 'in1' ran nmr from 10:00 to 10:20 on 20 March; the gateway sent it a day later
    t0 = datetime(2026, 3, 20, 10, tzinfo=SHANGHAI)
    running = [(t0, "running", "in1"), (t0 + timedelta(minutes=10), "running", "in1"),
               (t0 + timedelta(minutes=20), "idle", None)]
    assert write_through_ingest(final.database_url, running, received=t0 + timedelta(days=1))
    assert _rolled(final) == []
    assert _march(final)["nmr"]["sessions"] == 7
    assert _rolled(final) == [("nmr", MARCH)]


def test_a_rollup_waits_for_a_batch_writing_the_instrument(final: Api) -> None:
    # a batch of the ingest holds nmr, and has written a session into March
    with psycopg.connect(final.database_url) as batch:
        batch.execute(LOCK_INSTRUMENTS, (["nmr"],))
        batch.execute("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts,"
                      " user_id) VALUES ('nmr', '2026-03-20 10:00+08', '2026-03-20 11:00+08',"
                      " '2026-03-20 11:00+08', 'in1')")
        with ThreadPoolExecutor(1) as pool:
            report = pool.submit(_march, final)
            time.sleep(1)
            assert not report.done(), "the rollup waits for the batch"
            batch.commit()
            assert report.result(timeout=30)["nmr"]["sessions"] == 7
    assert final.sql("SELECT sessions FROM session_month WHERE instrument_id = 'nmr'") == [(7,)]


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_waits_for_a_rollup_in_flight_and_forgets_its_rows(
    final: Api, change: str
) -> None:
    _march(final)
    stale = final.sql("SELECT * FROM session_month")
    final.sql("DELETE FROM session_month")
    # a report has computed March from the registry as it was, and not committed yet
    with psycopg.connect(final.database_url) as rollup:
        rollup.execute(SHARE_ROLLUPS)
        rollup.execute(SHARE_INSTRUMENTS, (["nmr"],))
        rollup.cursor().executemany(
            "INSERT INTO session_month VALUES (" + ", ".join(["%s"] * len(stale[0])) + ")",
            stale)
        with ThreadPoolExecutor(1) as pool:
            changed = pool.submit(final.sql, change)
            time.sleep(1)
            assert not changed.done(), "the change waits for the rollup"
            rollup.commit()
            changed.result(timeout=30)
    assert _rolled(final) == []


def test_months_deleted_after_the_check_are_computed_from_the_sessions(
    final: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    _march(final)
    found_complete = roll_up

    async def then_a_late_batch(connect: Connect, **kw: Any) -> set[str]:
        complete = await found_complete(connect, **kw)
        final.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
                  " VALUES ('nmr', '2026-03-20 10:00+08', '2026-03-20 11:00+08',"
                  " '2026-03-20 11:00+08', 'in1')")
        final.sql("DELETE FROM session_month WHERE instrument_id = 'nmr'")
        return complete

    async def report() -> list[dict[str, Any]]:
        pool = make_pool(final.settings)
        await pool.open()
        try:
            lo, hi = period_bounds(MARCH, date(2026, 3, 31))
            rows = await metrics.per_instrument(
                pool.connection, lo=lo, hi=hi, timeout=timedelta(minutes=15),
                grace=timedelta(minutes=30), institutions=None, category=None, region=None,
                working_days=30, with_availability=False)
            return rows
        finally:
            await pool.close()

    monkeypatch.setattr(metrics, "roll_up", then_a_late_batch)
    rows = {r["instrument_id"]: r for r in asyncio.run(report())}
    assert rows["nmr"]["sessions"] == 7
    assert "summed" not in rows["nmr"]


def _next_month(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1)


def _over_a_day(month: date, now: datetime) -> bool:
    """Whether ``month`` ended in Shanghai a day or more before ``now``: a report's months."""
    ended = datetime.combine(_next_month(month), datetime.min.time(), SHANGHAI)
    return ended + timedelta(days=1) <= now


@pytest.mark.parametrize("to_this_month", [False, True], ids=["april-1st", "this-month"])
def test_a_period_of_months_and_days_reads_the_months_and_computes_the_days(
    final: Api, monkeypatch: pytest.MonkeyPatch, to_this_month: bool
) -> None:
    # sessions across both ends of March: each counted once, its time cut at the month's ends
    final.sql("INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
              " VALUES ('nmr', '2026-02-28 23:30+08', '2026-03-01 00:30+08',"
              " '2026-03-01 00:30+08', 'in1'),"
              " ('nmr', '2026-03-31 23:00+08', '2026-04-01 01:00+08',"
              " '2026-04-01 01:00+08', 'out1')")
    # to the end of this month: every month ended a day ago is final once nmr reports after
    # it (now); this month, not over yet, is computed from the sessions
    now = datetime.now(SHANGHAI)
    final.sql("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
              " VALUES ('nmr', %s, 'idle', 'gw', 0)", (now - timedelta(seconds=1),))
    this_month = date(now.year, now.month, 1)
    end = str(_next_month(this_month) - timedelta(days=1)) if to_this_month else "2026-04-01"
    months = [MARCH]
    while to_this_month and _over_a_day(_next_month(months[-1]), now):
        months.append(_next_month(months[-1]))
    march = _march(final)["nmr"]
    assert _rolled(final) == [("nmr", MARCH)]

    def report() -> dict[str, Any]:
        with final.as_("evaluator") as c:
            r = c.get("/reports/utilisation",
                      params={"start": "2026-02-20", "end": end, "availability": "false"})
        assert r.status_code == 200, r.text
        nmr: dict[str, Any] = {item["key"]: item for item in r.json()["items"]}["nmr"]
        return nmr

    mixed = report()
    assert _rolled(final) == [("nmr", m) for m in months]
    assert mixed["sessions"] == march["sessions"] == 8
    assert mixed["effective_hours"] == pytest.approx(march["effective_hours"] + 1.5)

    async def nothing_rolled_up(_connect: Connect, **_kw: Any) -> set[str]:
        return set()

    with monkeypatch.context() as m:
        m.setattr(metrics, "roll_up", nothing_rolled_up)
        assert report() == mixed  # every day computed from the sessions
    final.sql("UPDATE session_month SET effective_s = effective_s + 3600")
    assert report()["effective_hours"] == pytest.approx(
        mixed["effective_hours"] + len(months))
