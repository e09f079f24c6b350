"""Benchmark of monitor_api: the status board of 10,000 instruments and a one-year
utilisation report for 3,000 instruments with synthetic usage sessions.

Creates a scratch database (dropped afterwards), serves the API with ``instrushare api`` in
a process of its own on a free port and prints one JSON line with median and p95 (nearest
rank) latencies in milliseconds.

    python bench/api.py [--instruments 10000] [--reported 3000] [--sessions 250] [--runs 30]
                        [--sample-days 1]

Availability reads raw state samples. Gateways send one a minute, so a year of them for
3,000 instruments would be 1.6 billion rows; the benchmark writes them, at that rate, for the
last ``--sample-days`` days of the year only (running during the sessions, idle or off
otherwise, occasional faults, an hour-long gap about every two days), one more at the first
minute of 2026 and one a day later, as gateways that keep reporting would: every day and month
of 2025 is then final, and its availability (state_day, state_month) and usage (session_month)
are kept in the rollups once a report has computed them. Each figure is the steady state
after one warm-up request, whose time is printed as ``cold_ms`` (for the yearly report with
availability: computing and storing the rollups). It times the
yearly report with and without availability, the year less its last day without it (eleven
months from the monthly usage rollup, the last 30 days from the sessions), a report over
the sampled days with availability, the year's evaluation of every instrument (each
accepted on a day of the last seven years and networked up to 90 days later, or not yet), the
list of overdue registrations, and one
instrument's power per day over a year of one-a-minute readings (the whole hours from
``power_hours()``, and every bucket from the samples when the window starts off the hour).

Targets (docs/api.md): board < 100 ms, yearly report < 1 s. Next to them, each measured in
the same run as a baseline of what the machine does that day: the board's rows read straight
from their two tables (``bare_fetch``), and the year's session hours of the report's
instruments summed straight from the sessions (``bare_sum``), the power readings averaged
per day straight from the samples (``bare_avg``), with the ratios.

Needs PostgreSQL at TEST_PG_ADMIN_URL (default 127.0.0.1:5432), as the other benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import httpx
import psycopg
from _args import positive
from psycopg import conninfo, sql

from instrushare.db import migrate
from monitor_api import ApiSettings
from monitor_api.auth import Role
from monitor_api.cli import create_token

ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def populate(url: str, *, instruments: int, reported: int, sessions: int, seed: int) -> int:
    """Fill the registry, live status and a year (2025) of sessions; return sessions written."""
    rng = random.Random(seed)
    year_start = datetime(2024, 12, 31, 16, tzinfo=UTC)  # 2025-01-01 00:00 Asia/Shanghai
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            with cur.copy("COPY institution (id, name, parent_id, tier, region) FROM STDIN") as cp:
                for i in range(100):
                    region = "沈阳" if i < 30 else "大连"
                    cp.write_row((f"inst{i:03d}", f"单位{i}", None, "voucher", region))
            with cur.copy("COPY platform_user (id, name, institution_id, organisation, approved)"
                          " FROM STDIN") as cp:
                for u in range(3000):
                    inst = f"inst{u % 100:03d}" if u % 7 else None
                    cp.write_row((f"u{u}", f"用户{u}", inst, "企业" if inst is None else "",
                                  True))
            with cur.copy("COPY instrument (id, name, institution_id, category_code, value_rmb,"
                          " gateway_id, accepted_on, networked_on) FROM STDIN") as cp:
                for n in range(instruments):
                    # the first `reported` instruments belong to the 30 institutions of 沈阳
                    owner = n % 30 if n < reported else 30 + n % 70
                    cat = f"{rng.choice(['01', '02', '03', '04'])}0101"
                    # accepted over seven years, networked 2 to 90 days later, one in 20 not yet:
                    # every evaluation and the overdue list count working days since then
                    accepted = date(2019, 1, 1) + timedelta(days=rng.randrange(7 * 365))
                    networked = (None if rng.random() < 0.05
                                 else accepted + timedelta(days=rng.randint(2, 90)))
                    cp.write_row((f"ins{n:05d}", f"仪器{n}", f"inst{owner:03d}", cat,
                                  rng.randint(300_000, 9_000_000), f"gw{n // 20}", accepted,
                                  networked))
            with cur.copy("COPY gateway (id, bd_seq, online, changed_at) FROM STDIN") as cp:
                for g in range(instruments // 20 + 1):
                    cp.write_row((f"gw{g}", 1, g % 17 != 0, now - timedelta(hours=2)))
            with cur.copy("COPY instrument_status (instrument_id, gateway_id, state, since,"
                          " user_id, power_w, last_ts) FROM STDIN") as cp:
                for n in range(instruments):
                    state = rng.choice(["off", "idle", "idle", "running", "fault"])
                    age = timedelta(seconds=rng.choice([30, 60, 120, 3600]))
                    cp.write_row((f"ins{n:05d}", f"gw{n // 20}", state, now - timedelta(hours=1),
                                  # a quarter of them measured by a power meter only: the
                                  # board looks up whose booking they are running in
                                  f"u{rng.randrange(3000)}" if state == "running" and n % 4
                                  else None,
                                  rng.uniform(40, 2000), now - age))
            written = 0
            with cur.copy("COPY usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
                          " FROM STDIN") as cp:
                step = timedelta(days=365) / sessions
                # Each instrument serves its own circle: 20 users of its institution and 10
                # outside users, the outside ones running ~15% of sessions (national
                # average sharing rate: 16%).
                users_of = [[u for u in range(3000) if u % 7 and u % 100 == i]
                            for i in range(100)]
                pools: list[list[str]] = []
                for n in range(reported):
                    inside = users_of[n % 30][:20]
                    outside = [rng.randrange(3000) for _ in range(10)]
                    pools.append([f"u{u}" for u in inside * 6 + outside * 2])
                for n in range(reported):
                    t = year_start
                    for _ in range(sessions):
                        start = t + timedelta(seconds=rng.uniform(0, step.total_seconds() / 3))
                        end = start + timedelta(hours=rng.uniform(0.5, 8))
                        user = rng.choice(pools[n]) if rng.random() < 0.9 else None
                        cp.write_row((f"ins{n:05d}", start, end, end, user))
                        written += 1
                        t += step
            with cur.copy("COPY booking (instrument_id, user_id, kind, start_ts, end_ts, status)"
                          " FROM STDIN") as cp:
                for n in range(0, reported, 3):
                    for d in range(0, 360, 7):
                        s = year_start + timedelta(days=d, hours=9)
                        cp.write_row((f"ins{n:05d}", f"u{rng.randrange(3000)}", "assisted", s,
                                      s + timedelta(hours=3), "approved"))
        conn.execute("ANALYZE")
        conn.commit()
    return written


def add_state_samples(url: str, *, reported: int, days: int) -> int:
    """One state sample a minute for the reported instruments over the last ``days`` days of
    2025 and the first minute of 2026, and one a day later; return the rows written."""
    hi = datetime(2025, 12, 31, 16, tzinfo=UTC)  # 2026-01-01 00:00 Asia/Shanghai
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            """
            INSERT INTO state_sample (instrument_id, ts, state, power_w, gateway_id, seq)
            SELECT i.id, t,
                   CASE WHEN s.instrument_id IS NOT NULL THEN 'running'
                        WHEN random() < 0.002 THEN 'fault'
                        WHEN extract(hour FROM t AT TIME ZONE 'Asia/Shanghai') BETWEEN 8 AND 21
                            THEN 'idle'
                        ELSE 'off' END,
                   CASE WHEN s.instrument_id IS NOT NULL THEN 800 + random() * 400
                        ELSE 10 + random() * 30 END,
                   i.gateway_id, 0
            FROM instrument i
            CROSS JOIN generate_series(%(lo)s, %(hi)s, interval '1 minute') t
            LEFT JOIN usage_session s
                ON s.instrument_id = i.id AND s.start_ts <= t AND s.end_ts > t
            WHERE i.id < %(first_unreported)s
              -- an hour without data about every two days: offline time
              AND (abs(hashtext(i.id)) + extract(epoch FROM date_trunc('hour', t))::bigint
                   / 3600) %% 48 <> 0
            """,
            {"lo": hi - timedelta(days=days), "hi": hi,
             "first_unreported": f"ins{reported:05d}"},
        )
        rows = cur.rowcount
        # a day later the gateways still report: December is final for the usage rollup too
        cur = conn.execute(
            "INSERT INTO state_sample (instrument_id, ts, state, power_w, gateway_id, seq)"
            " SELECT id, %(ts)s, 'idle', 20, gateway_id, 0 FROM instrument"
            " WHERE id < %(first_unreported)s",
            {"ts": hi + timedelta(days=1), "first_unreported": f"ins{reported:05d}"})
        rows += cur.rowcount
        conn.execute("ANALYZE state_sample")
        conn.commit()
    return rows


def add_power_year(url: str, instrument: str) -> int:
    """A year (2025) of one-a-minute power readings for one instrument; return the rows."""
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "INSERT INTO state_sample (instrument_id, ts, state, power_w, gateway_id, seq)"
            " SELECT i.id, t, 'idle', 20 + random() * 1000, i.gateway_id, 0"
            " FROM instrument i CROSS JOIN generate_series(%(lo)s::timestamptz,"
            " %(hi)s::timestamptz - interval '1 minute', interval '1 minute') t"
            " WHERE i.id = %(id)s",
            {"id": instrument, **YEAR_BOUNDS})
        conn.execute("ANALYZE state_sample")
        return cur.rowcount


def _measure(
    client: httpx.Client, path: str, params: dict[str, str], runs: int
) -> tuple[float, list[float]]:
    """The warm-up request's time and the times of ``runs`` requests after it."""
    t0 = time.perf_counter()
    client.get(path, params=params).raise_for_status()  # warm-up (fills the rollup)
    cold = (time.perf_counter() - t0) * 1000
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return cold, times


BARE_BOARD = """
SELECT i.id, i.institution_id, i.name, i.category_code, s.gateway_id, s.state, s.since,
       s.user_id, s.power_w, s.last_ts
FROM instrument i LEFT JOIN instrument_status s ON s.instrument_id = i.id ORDER BY i.id
"""
"""The board's rows read straight from its two tables, nothing derived: what reading them
costs on the machine that day, the board's baseline."""
BARE_YEAR = """
SELECT s.instrument_id, count(*),
       sum(extract(epoch FROM least(s.end_ts, %(hi)s) - greatest(s.start_ts, %(lo)s)))
FROM usage_session s JOIN instrument i ON i.id = s.instrument_id
JOIN institution u ON u.id = i.institution_id
WHERE u.region = '沈阳' AND s.start_ts < %(hi)s AND s.end_ts > %(lo)s
GROUP BY s.instrument_id
"""
"""The sessions' hours in the year per instrument of the report, summed straight from the
sessions: the yearly report's baseline."""
BARE_POWER = """
SELECT date_bin(%(step)s, ts, %(lo)s), avg(power_w), min(power_w), max(power_w), count(*)
FROM state_sample
WHERE instrument_id = %(id)s AND ts >= %(lo)s AND ts < %(hi)s AND power_w IS NOT NULL
GROUP BY 1 ORDER BY 1
"""
"""An instrument's power per bucket averaged straight from its samples: the power series'
baseline."""
YEAR_BOUNDS = {"lo": datetime(2024, 12, 31, 16, tzinfo=UTC),
               "hi": datetime(2025, 12, 31, 16, tzinfo=UTC)}
"""2025 in Asia/Shanghai."""


def _measure_sql(url: str, query: str, params: Mapping[str, object], runs: int
                 ) -> tuple[float, list[float]]:
    """As ``_measure``, for a query fetched with psycopg in this process."""
    with psycopg.connect(url) as conn:
        times = []
        for _ in range(runs + 1):
            t0 = time.perf_counter()
            conn.execute(query, params).fetchall()
            times.append((time.perf_counter() - t0) * 1000)
    return times[0], times[1:]


def _ratio(measured: tuple[float, list[float]], baseline: tuple[float, list[float]]) -> float:
    return round(statistics.median(measured[1]) / statistics.median(baseline[1]), 2)


def _stats(measured: tuple[float, list[float]]) -> dict[str, float]:
    """Median and the nearest-rank 95th percentile (the smallest time that at least 95% of
    the runs do not exceed: the slowest of 10 runs, the 29th of 30)."""
    cold, times = measured
    ordered = sorted(times)
    rank = math.ceil(0.95 * len(ordered))
    return {"median_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[rank - 1], 1), "runs": len(ordered),
            "cold_ms": round(cold, 1)}


@contextmanager
def _serving(url: str, port: int) -> Iterator[None]:
    """``instrushare api`` in a process of its own, as deployed: the benchmark's client,
    reading megabytes of JSON, does not share its interpreter. Rollups are left to the
    reports (cold_ms: the first report fills them). Its log goes to a file, whose end a
    server that does not come up is reported with."""
    env = {**os.environ, "DATABASE_URL": url, "INSTRUSHARE_API_ROLLUP_INTERVAL_S": "0"}
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "instrushare", "api", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while not _answers(port):
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"instrushare api did not come up on port {port}:\n{tail}")
                time.sleep(0.1)
            yield
        finally:
            server.terminate()
            server.wait(30)


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz").raise_for_status()
    except httpx.HTTPError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instruments", type=positive(int), default=10_000)
    parser.add_argument("--reported", type=positive(int), default=3_000)
    parser.add_argument("--sessions", type=positive(int), default=250,
                        help="per instrument and year")
    parser.add_argument("--runs", type=positive(int), default=30)
    parser.add_argument("--report-runs", type=positive(int), default=10)
    parser.add_argument("--sample-days", type=positive(int), default=1,
                        help="days of one-a-minute state samples at the end of 2025")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.reported >= args.instruments:
        parser.error("--reported must be below --instruments: the power series is read from "
                     "the first instrument outside the reports' region")

    name = f"instrushare_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = conninfo.make_conninfo(ADMIN_URL, dbname=name)
    try:
        migrate(url)
        t0 = time.perf_counter()
        written = populate(url, instruments=args.instruments, reported=args.reported,
                           sessions=args.sessions, seed=args.seed)
        samples = add_state_samples(url, reported=args.reported, days=args.sample_days)
        # an instrument outside the reports' region: its detail page over the year
        power_instrument = f"ins{args.reported:05d}"
        power_samples = add_power_year(url, power_instrument)
        load_s = time.perf_counter() - t0
        settings = ApiSettings(database_url=url, rollup_interval_s=0)  # cold_ms: reports fill it
        token = asyncio.run(create_token(settings, role=Role.EVALUATOR))
        port = _free_port()
        with _serving(url, port), httpx.Client(
                base_url=f"http://127.0.0.1:{port}", timeout=600,
                headers={"Authorization": f"Bearer {token}"}) as client:
            board = _measure(client, "/status", {"limit": str(args.instruments)}, args.runs)
            count = client.get("/status", params={"limit": "1"}).json()["total"]
            report_params = {"start": "2025-01-01", "end": "2025-12-31", "region": "沈阳",
                             "limit": "1000"}
            report = _measure(client, "/reports/utilisation", report_params,
                              args.report_runs)
            rows = client.get("/reports/utilisation", params=report_params).json()["total"]
            no_avail = _measure(client, "/reports/utilisation",
                                {**report_params, "availability": "false"},
                                args.report_runs)
            # eleven months from the rollup, 30 days from the sessions
            year_less_a_day = _measure(client, "/reports/utilisation",
                                       {**report_params, "end": "2025-12-30",
                                        "availability": "false"}, args.report_runs)
            sampled_start = (datetime(2025, 12, 31) - timedelta(days=args.sample_days - 1))
            days_params = {**report_params, "start": sampled_start.date().isoformat()}
            days = _measure(client, "/reports/utilisation", days_params, args.report_runs)
            first = client.get("/reports/utilisation", params=days_params).json()["items"]
            # of the instruments on the platform by then (the others have none)
            availability = statistics.mean(i["availability"] for i in first
                                           if i["availability"] is not None)
            # the register of the year's bookings against the plain list of as many
            year = {"start": "2025-01-01", "end": "2025-12-31", "limit": "1000"}
            register = _measure(client, "/reports/service-records", year, args.report_runs)
            listed = _measure(client, "/bookings", {"limit": "1000"}, args.report_runs)
            register_csv = _measure(client, "/reports/service-records",
                                    {**year, "format": "csv"}, 3)
            bookings = client.get("/reports/service-records",
                                  params={**year, "limit": "1"}).json()["total"]
            # the province's evaluation: every instrument, most of them never heard from
            evaluation = _measure(client, "/evaluation/2025/instruments", {"limit": "1000"},
                                  args.report_runs)
            overdue = _measure(client, "/evaluation/overdue-registrations",
                               {"limit": "1000"}, args.report_runs)
            late = client.get("/evaluation/overdue-registrations",
                              params={"limit": "1"}).json()["total"]
            # the year's power per day: whole hours from power_hours(), or, a minute
            # off the hour, every bucket from the samples
            power_path = f"/instruments/{power_instrument}/power"
            power_params = {"start": YEAR_BOUNDS["lo"].isoformat(),
                            "end": YEAR_BOUNDS["hi"].isoformat(), "step_s": "86400"}
            power = _measure(client, power_path, power_params, args.report_runs)
            unaligned = {**power_params, "start": (YEAR_BOUNDS["lo"]
                                                   + timedelta(minutes=1)).isoformat()}
            power_raw = _measure(client, power_path, unaligned, args.report_runs)
        bare_board = _measure_sql(url, BARE_BOARD, {}, args.runs)
        bare_year = _measure_sql(url, BARE_YEAR, YEAR_BOUNDS, args.report_runs)
        bare_power = _measure_sql(url, BARE_POWER, {**YEAR_BOUNDS, "id": power_instrument,
                                                    "step": timedelta(days=1)},
                                  args.report_runs)
        print(json.dumps({
            "bench": "api",
            "status_board": {"instruments": count, **_stats(board), "target_ms": 100,
                             "bare_fetch": _stats(bare_board),
                             "ratio_vs_bare_fetch": _ratio(board, bare_board)},
            "utilisation_year": {"instruments": rows, "sessions": written,
                                 "state_samples": samples, **_stats(report),
                                 "target_ms": 1000, "bare_sum": _stats(bare_year),
                                 "ratio_vs_bare_sum": _ratio(report, bare_year)},
            "utilisation_year_no_availability": {**_stats(no_avail), "target_ms": 1000},
            "utilisation_364_days_no_availability": _stats(year_less_a_day),
            "utilisation_sampled_days": {"days": args.sample_days,
                                         "mean_availability": round(availability, 3),
                                         **_stats(days)},
            "service_records_year": {
                "bookings": bookings, "page_of_1000": _stats(register),
                "booking_list_1000": _stats(listed),
                "ratio_page_vs_list": round(statistics.median(register[1])
                                            / statistics.median(listed[1]), 2),
                "csv_all": _stats(register_csv)},
            "evaluation_year": {"instruments": count, **_stats(evaluation)},
            "overdue_registrations": {"overdue": late, **_stats(overdue)},
            "power_year_daily": {"samples": power_samples, **_stats(power),
                                 "from_samples_only": _stats(power_raw),
                                 "bare_avg": _stats(bare_power),
                                 "ratio_vs_bare_avg": _ratio(power, bare_power)},
            "load_s": round(load_s, 1),
        }, ensure_ascii=False))
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
