"""Availability from the per-day rollup (state_day) equals the live computation.

Data of tests/api/test_metrics.py for 'nmr', plus one idle sample at 2026-03-11 00:00, which
makes 9 and 10 March final. Hand-computed, timeout 15 min:

  9 March:  23:50 idle until the 00:00 sample (10 min gap)          -> up 10 min
  10 March: 12 h idle to 12:00, offline 12-14, idle 14-15, fault 15-16, offline 16-24
                                                                     -> up 13 h, fault 1 h
  11 March: the 00:00 sample is the last: offline until now         -> up 0, not final

Month rollup (state_month): extra 'nmr' samples before those, every 10 min, timeout 15 min:

  28 Dec 2025: idle 09:00-11:00                                      -> up 2 h
  5 Jan 2026:  idle 08:00-20:00                                      -> up 12 h
  20 Jan 2026: fault 10:00-14:00                                     -> fault 4 h
  1 Feb 2026:  idle 00:00-02:00                                      -> up 2 h
  every other day of Dec 2025 to Feb 2026: offline (gaps, or before the first sample);
  all of them final, as the March samples follow.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

import psycopg
import pytest

from instrushare.db import LOCK_INSTRUMENTS, migrate
from monitor_api.db import make_pool
from monitor_api.queries.availability import _STATE_FIGURES, settled_before
from monitor_api.rollup import fill_rollups
from tests.api.conftest import Api, make_settings, write_through_ingest
from tests.api.test_metrics import SETUP
from tests.api_server import serve

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEXT_DAY_SAMPLE = ("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
                   " VALUES ('nmr', '2026-03-11 00:00+08', 'idle', 'gw', 0)")
UP_S = 600 + 13 * 3600


def _availability(api: Api, start: str, end: str) -> dict[str, float | None]:
    with api.as_("evaluator") as c:
        r = c.get("/reports/utilisation", params={"start": start, "end": end})
    assert r.status_code == 200, r.text
    return {item["key"]: item["availability"] for item in r.json()["items"]}


def _live_up_s(api: Api, lo: str, hi: str) -> float:
    """The definition without the rollup: state_segments over the whole period."""
    return float(api.sql(
        "SELECT up_s FROM state_time('nmr', %s::timestamptz, %s::timestamptz, '15 min')",
        (lo, hi))[0][0])


def _days(api: Api) -> list[tuple[object, ...]]:
    return api.sql("SELECT instrument_id, day, timeout, up_s, fault_s, offline_s FROM state_day"
                   " ORDER BY instrument_id, day")


@pytest.fixture
def seeded(api: Api) -> Api:
    for statement in [*SETUP, NEXT_DAY_SAMPLE]:
        api.sql(statement)
    return api


def test_rollup_equals_live_and_serves_the_next_report(seeded: Api) -> None:
    assert _live_up_s(seeded, "2026-03-09 00:00+08", "2026-03-12 00:00+08") == UP_S
    first = _availability(seeded, "2026-03-09", "2026-03-11")
    assert first["nmr"] == pytest.approx(UP_S / (3 * 86400), abs=1e-4)
    assert first["xrd"] == 0
    # the final days of nmr are stored; 11 March (no later sample) and instruments without
    # any sample are not
    assert _days(seeded) == [
        ("nmr", date(2026, 3, 9), timedelta(minutes=15), 600.0, 0.0, 86400.0 - 600),
        ("nmr", date(2026, 3, 10), timedelta(minutes=15), 13 * 3600.0, 3600.0, 10 * 3600.0),
    ]
    assert _availability(seeded, "2026-03-10", "2026-03-10")["nmr"] == pytest.approx(
        13 / 24, abs=1e-4)
    # the next report reads the stored day, not the samples
    seeded.sql("UPDATE state_day SET up_s = 6 * 3600 WHERE day = '2026-03-10'")
    assert _availability(seeded, "2026-03-10", "2026-03-10")["nmr"] == pytest.approx(
        6 / 24, abs=1e-4)


def test_rows_of_another_timeout_are_not_used(seeded: Api) -> None:
    _availability(seeded, "2026-03-10", "2026-03-10")
    seeded.sql("UPDATE state_day SET timeout = '1 hour'")
    assert _availability(seeded, "2026-03-10", "2026-03-10")["nmr"] == pytest.approx(
        13 / 24, abs=1e-4)
    assert len(_days(seeded)) == 2  # recomputed and stored for 15 min next to the 1 h row


def test_late_sample_through_the_ingest_invalidates_the_day(api: Api) -> None:
    # Recent days (the ingest refuses data older than 30 days)
    day, d0 = _recent_day(api)
    d = day.isoformat()
    assert _availability(api, d, d)["nmr"] == pytest.approx(6 / 24, abs=1e-4)
    assert [r[1] for r in _days(api)] == [day]

    # late samples fill 12:00-14:00: written through the ingest's store like the worker does
    late = [(d0 + timedelta(hours=12, minutes=10 * k), "idle", None) for k in range(1, 12)]
    assert write_through_ingest(api.database_url, late, received=datetime.now(UTC)) == 1
    assert _days(api) == []  # the stored day is gone with the batch
    assert _availability(api, d, d)["nmr"] == pytest.approx(8 / 24, abs=1e-4)
    assert [r[3] for r in _days(api)] == [8 * 3600.0]
    lo = d0.astimezone(UTC).isoformat()
    assert _live_up_s(api, lo, (d0 + timedelta(days=1)).isoformat()) == 8 * 3600


def _recent_day(api: Api) -> tuple[date, datetime]:
    """A day three days ago (Asia/Shanghai), within reach of late data: nmr idle from 08:00
    with a sample every 10 min to 12:00, none until 14:00, then to 16:00; one sample on the
    next day, which makes it final. Up 6 h."""
    day = datetime.now(SHANGHAI).date() - timedelta(days=3)
    d0 = datetime.combine(day, dtime(), SHANGHAI)
    api.sql("""INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)
               SELECT 'nmr', t, 'idle', 'gw', 0 FROM generate_series(
                   %(d0)s + interval '8 h', %(d0)s + interval '16 h', interval '10 min') t
               WHERE t <= %(d0)s + interval '12 h' OR t >= %(d0)s + interval '14 h'""",
            {"d0": d0})
    api.sql("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
            " VALUES ('nmr', %s, 'idle', 'gw', 0)", (d0 + timedelta(days=1, hours=1),))
    return day, d0


def test_a_report_waits_for_a_batch_writing_the_instrument(api: Api) -> None:
    day, d0 = _recent_day(api)
    # a batch of the ingest holds nmr: late samples fill the offline gap of 12-14, and it
    # deleted the instrument's stored days, as the ingest does
    with psycopg.connect(api.database_url) as batch:
        batch.execute(LOCK_INSTRUMENTS, (["nmr"],))
        batch.execute("""INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)
                         SELECT 'nmr', t, 'idle', 'gw', 0 FROM generate_series(
                             %(d0)s + interval '12 h 10 min', %(d0)s + interval '13 h 50 min',
                             interval '10 min') t""", {"d0": d0})
        batch.execute("DELETE FROM state_day WHERE instrument_id = 'nmr'")
        with ThreadPoolExecutor(1) as pool:
            report = pool.submit(_availability, api, day.isoformat(), day.isoformat())
            time.sleep(1)
            assert not report.done(), "the report waits for the batch"
            batch.commit()
            assert report.result(timeout=30)["nmr"] == pytest.approx(8 / 24, abs=1e-4)
    assert [r[3] for r in _days(api) if r[1] == day] == [8 * 3600.0]


def test_months_past_the_reach_of_late_data_are_computed_without_waiting(
    seeded: Api,
) -> None:
    """March 2026 is months past anything the ingest accepts: its days are computed and
    stored while a batch holds the instrument (it cannot be changing them)."""
    assert settled_before(datetime.now(UTC), FIFTEEN) > datetime(2026, 4, 1, tzinfo=SHANGHAI)
    with psycopg.connect(seeded.database_url) as batch:
        batch.execute(LOCK_INSTRUMENTS, (["nmr"],))
        assert _availability(seeded, "2026-03-10", "2026-03-10")["nmr"] == pytest.approx(
            13 / 24, abs=1e-4)
    assert [r[3] for r in _days(seeded) if r[1] == date(2026, 3, 10)] == [13 * 3600.0]


MONTH_SAMPLES = [
    ("2025-12-28 09:00+08", "2025-12-28 11:00+08", "idle"),
    ("2026-01-05 08:00+08", "2026-01-05 20:00+08", "idle"),
    ("2026-01-20 10:00+08", "2026-01-20 14:00+08", "fault"),
    ("2026-02-01 00:00+08", "2026-02-01 02:00+08", "idle"),
]
FIFTEEN = timedelta(minutes=15)
DEC, JAN = date(2025, 12, 1), date(2026, 1, 1)


def _months(api: Api) -> list[tuple[object, ...]]:
    return api.sql("SELECT instrument_id, month, timeout, up_s, fault_s, offline_s"
                   " FROM state_month ORDER BY instrument_id, month")


def _up_seconds(api: Api, lo: str, hi: str) -> float:
    """The report's query for 'nmr' alone, over any [lo, hi) (the API takes whole days)."""
    rows = api.sql(_STATE_FIGURES, {"ids": ["nmr"], "lo": lo, "hi": hi, "timeout": FIFTEEN})
    return float(rows[0][1])


@pytest.fixture
def months(api: Api) -> Api:
    for statement in SETUP:
        api.sql(statement)
    for first, last, state in MONTH_SAMPLES:
        api.sql("""INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)
                   SELECT 'nmr', t, %s, 'gw', 0 FROM generate_series(
                       %s::timestamptz, %s::timestamptz, interval '10 min') t""",
                (state, first, last))
    return api


def test_whole_months_are_stored_and_serve_the_next_report(months: Api) -> None:
    assert _availability(months, "2025-12-01", "2026-01-31")["nmr"] == pytest.approx(
        14 / (62 * 24), abs=1e-4)
    # one row per whole month of nmr, the sums of its days; none for instruments without
    # samples, whose days are not final
    assert _months(months) == [
        ("nmr", DEC, FIFTEEN, 2 * 3600.0, 0.0, 31 * 86400.0 - 2 * 3600),
        ("nmr", JAN, FIFTEEN, 12 * 3600.0, 4 * 3600.0, 31 * 86400.0 - 16 * 3600),
    ]
    assert len(_days(months)) == 62
    # the next report reads the month rows, not the days
    months.sql("UPDATE state_month SET up_s = 24 * 3600 WHERE month = '2026-01-01'")
    months.sql("UPDATE state_day SET up_s = 0")
    assert _availability(months, "2026-01-01", "2026-01-31")["nmr"] == pytest.approx(
        24 / (31 * 24), abs=1e-4)
    # rows of another timeout are not used
    months.sql("UPDATE state_month SET timeout = '1 hour'")
    months.sql("DELETE FROM state_day")
    assert _availability(months, "2026-01-01", "2026-01-31")["nmr"] == pytest.approx(
        12 / (31 * 24), abs=1e-4)


def test_faults_count_from_their_first_sample_and_roll_up(months: Api) -> None:
    """Onsets: 20 Jan (10:00-14:00 in fault: one); 5 Feb 10:00, again at 11:00 after 50
    minutes of silence (offline between: a new one) and at 11:20 after an idle sample; 6 Feb
    23:50 into 7 Feb 00:10 (one, counted on 6 Feb); 10 March 15:00 after idle. Six in all."""
    for ts, state in [("2026-02-05 10:00", "fault"), ("2026-02-05 10:10", "fault"),
                      ("2026-02-05 11:00", "fault"), ("2026-02-05 11:10", "idle"),
                      ("2026-02-05 11:20", "fault"), ("2026-02-06 23:50", "fault"),
                      ("2026-02-07 00:00", "fault"), ("2026-02-07 00:10", "fault")]:
        months.sql("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
                   " VALUES ('nmr', %s::timestamp AT TIME ZONE 'Asia/Shanghai', %s, 'gw', 0)",
                   (ts, state))

    def faults(start: str, end: str) -> int | None:
        with months.as_("evaluator") as c:
            r = c.get("/reports/utilisation", params={"start": start, "end": end})
        found: int | None = {i["key"]: i["faults"] for i in r.json()["items"]}["nmr"]
        return found

    assert months.sql("SELECT fault_onsets('nmr', '2025-12-01 00:00+08', '2026-03-11 00:00+08',"
                      " '15 min')") == [(6,)]
    assert faults("2025-12-01", "2026-03-10") == 6
    assert faults("2026-02-07", "2026-02-28") == 0  # the fault of 6 Feb goes on: not a new one
    assert months.sql("SELECT month, faults FROM state_month ORDER BY month") == [
        (DEC, 0), (JAN, 1), (date(2026, 2, 1), 4)]
    assert faults("2026-02-06", "2026-02-06") == 1
    months.sql("UPDATE state_month SET faults = 7 WHERE month = '2026-01-01'")
    assert faults("2026-01-01", "2026-01-31") == 7  # served from the month row
    with months.as_("evaluator") as c:
        r = c.get("/reports/utilisation", params={"start": "2026-01-01", "end": "2026-01-31",
                                                   "availability": "false"})
    assert r.json()["items"][0]["faults"] is None


def test_a_month_not_final_has_no_row(months: Api) -> None:
    # every day of February 2026 is final (samples follow in March); March is not: no
    # sample follows the last one, on 10 March at 16:00
    _availability(months, "2026-02-01", "2026-03-31")
    assert [r[1] for r in _months(months)] == [date(2026, 2, 1)]


def test_mid_month_period_combines_months_and_days(months: Api) -> None:
    # 15 Dec to 1 Feb: days of December and February around the whole month January
    expected = (2 + 12 + 2) / ((17 + 31 + 1) * 24)
    for _ in range(2):  # computed, then served from state_month and state_day
        assert _availability(months, "2025-12-15", "2026-02-01")["nmr"] == pytest.approx(
            expected, abs=1e-4)
        assert [r[1] for r in _months(months)] == [JAN]
    assert _live_up_s(months, "2025-12-15 00:00+08", "2026-02-02 00:00+08") == 16 * 3600
    # period ends inside days: 10:00 on 28 December to 01:00 on 1 February
    lo, hi = "2025-12-28 10:00+08", "2026-02-01 01:00+08"
    assert _up_seconds(months, lo, hi) == _live_up_s(months, lo, hi) == 14 * 3600
    # the stored month row is what January contributes
    months.sql("UPDATE state_month SET up_s = 0")
    assert _up_seconds(months, lo, hi) == 2 * 3600
    assert _availability(months, "2025-12-15", "2026-02-01")["nmr"] == pytest.approx(
        4 / ((17 + 31 + 1) * 24), abs=1e-4)


def test_late_sample_through_the_ingest_invalidates_the_month(months: Api) -> None:
    _availability(months, "2025-12-01", "2026-01-31")
    assert [r[1] for r in _months(months)] == [DEC, JAN]
    # a late sample 10 min after the 20:00 one on 5 January: that sample's interval is now
    # up. The message was sent and received the next day: the ingest refuses samples more
    # than 30 days older than their reception.
    late_ts = datetime(2026, 1, 5, 20, 10, tzinfo=SHANGHAI)
    assert write_through_ingest(months.database_url, [(late_ts, "idle", None)],
                                received=late_ts + timedelta(days=1)) == 1
    # January's row goes with the days from 5 January on; December's stays
    assert [r[1] for r in _months(months)] == [DEC]
    assert [r[1] for r in _days(months)][-1] == date(2026, 1, 4)
    assert _availability(months, "2025-12-01", "2026-01-31")["nmr"] == pytest.approx(
        (14 + 1 / 6) / (62 * 24), abs=1e-4)
    assert _months(months)[1] == (
        "nmr", JAN, FIFTEEN, 12 * 3600.0 + 600, 4 * 3600.0, 31 * 86400.0 - 16 * 3600 - 600)


def test_filler_stores_the_months_before_the_current_one(months: Api) -> None:
    async def fill() -> int:
        pool = make_pool(months.settings)
        await pool.open()
        try:
            return await fill_rollups(pool, timeout=FIFTEEN, months=4,
                                      now=datetime(2026, 3, 15, 12, tzinfo=SHANGHAI),
                                      grace=months.settings.no_show_grace)
        finally:
            await pool.close()

    assert asyncio.run(fill()) == len(months.sql("SELECT id FROM instrument"))
    # November 2025 to February 2026; only nmr has samples after them, so only its days
    # and months are final
    rows = _months(months)
    assert [(r[0], r[1]) for r in rows] == [
        ("nmr", date(2025, 11, 1)), ("nmr", DEC), ("nmr", JAN), ("nmr", date(2026, 2, 1))]
    assert rows[1:3] == [
        ("nmr", DEC, FIFTEEN, 2 * 3600.0, 0.0, 31 * 86400.0 - 2 * 3600),
        ("nmr", JAN, FIFTEEN, 12 * 3600.0, 4 * 3600.0, 31 * 86400.0 - 16 * 3600),
    ]
    # usage too: nmr's months are final (samples follow), empty (its sessions are in March)
    assert months.sql("SELECT instrument_id, month, sessions FROM session_month"
                      " WHERE instrument_id = 'nmr' ORDER BY month") == [
        ("nmr", date(2025, 11, 1), 0), ("nmr", DEC, 0), ("nmr", JAN, 0),
        ("nmr", date(2026, 2, 1), 0)]
    # the report reads what the filler stored
    months.sql("UPDATE state_month SET up_s = 24 * 3600 WHERE month = '2026-01-01'")
    assert _availability(months, "2026-01-01", "2026-01-31")["nmr"] == pytest.approx(
        24 / (31 * 24), abs=1e-4)


def test_the_api_fills_the_rollup_in_the_background(months: Api) -> None:
    assert _months(months) == []
    settings = make_settings(months.database_url, rollup_interval_s=3600)
    with serve(settings):  # the last 13 whole months before today include nmr's samples
        deadline = time.monotonic() + 30
        while {DEC, JAN} - {r[1] for r in _months(months)}:
            assert time.monotonic() < deadline, "the filler stored no month rows"
            time.sleep(0.2)
    assert ("nmr", JAN, FIFTEEN, 12 * 3600.0, 4 * 3600.0, 31 * 86400.0 - 16 * 3600) in (
        _months(months))


def test_migration_keeps_the_days_whose_samples_are_gone(database_url: str) -> None:
    """Rows stored before fault counts existed: those the samples still cover are dropped and
    computed again, with their faults; older ones (pruned samples) stay, faults unknown."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        # The schema as it was before fault counts.
        conn.execute("ALTER TABLE state_day DROP COLUMN faults")
        conn.execute("ALTER TABLE state_month DROP COLUMN faults")
        conn.execute("DROP FUNCTION fault_onsets")
        conn.execute("ALTER TABLE instrument DROP COLUMN awaiting_disposal")
        conn.execute("DELETE FROM schema_migration WHERE name = '0015_faults.sql'")
        conn.execute("INSERT INTO institution (id, name) VALUES ('u', 'U')")
        conn.execute("INSERT INTO instrument (id, name, institution_id) VALUES ('i', 'I', 'u')")
        # samples from 2 March on (earlier ones pruned), a fault on 2 March at 10:00
        conn.execute("INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
                     " SELECT 'i', t, CASE WHEN t = '2026-03-02 10:00+08' THEN 'fault'"
                     " ELSE 'idle' END, 'gw', 0 FROM generate_series("
                     "'2026-03-02 00:00+08'::timestamptz, '2026-03-04 00:00+08',"
                     " interval '10 minutes') t")
        for day, up in (("2026-02-28", 3600.0), ("2026-03-01", 7200.0), ("2026-03-02", 1.0)):
            conn.execute("INSERT INTO state_day (instrument_id, day, timeout, up_s, fault_s,"
                         " offline_s) VALUES ('i', %s, '15 min', %s, 0, 86400 - %s)",
                         (day, up, up))
        conn.execute("INSERT INTO state_month (instrument_id, month, timeout, up_s, fault_s,"
                     " offline_s) VALUES ('i', '2026-02-01', '15 min', 3600, 0, 2415600)")
    assert migrate(database_url).applied == ["0015_faults.sql"]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT day, faults FROM state_day ORDER BY day").fetchall() == [
            (date(2026, 2, 28), None), (date(2026, 3, 1), None)]
        assert conn.execute("SELECT month, faults FROM state_month").fetchall() == [
            (date(2026, 2, 1), None)]
        figures = conn.execute(_STATE_FIGURES, {
            "ids": ["i"], "lo": datetime(2026, 2, 1, tzinfo=SHANGHAI),
            "hi": datetime(2026, 3, 3, tzinfo=SHANGHAI), "timeout": FIFTEEN}).fetchall()
    # February from its month row, 1 March from its day row, 2 March from the samples
    # (up all day but the ten minutes in fault)
    assert figures == [("i", 3600 + 7200 + 86400 - 600, 1)]
