"""bench/api.py end to end with tiny parameters: one JSON line whose figures add up, the API
served by a process of its own that is gone afterwards, the scratch database dropped."""

from __future__ import annotations

import psutil
import psycopg

from tests.bench.helpers import run_bench
from tests.conftest import PG_ADMIN_URL

INSTRUMENTS, REPORTED, SESSIONS, RUNS = 200, 30, 4, 2


def _bench_databases() -> set[str]:
    with psycopg.connect(PG_ADMIN_URL) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'instrushare_bench_%'").fetchall()
    return {r[0] for r in rows}


def _api_servers() -> set[int]:
    """``instrushare api`` processes running (the benchmark starts one)."""
    found = set()
    for process in psutil.process_iter(["cmdline"]):
        if (process.info["cmdline"] or [])[1:4] == ["-m", "instrushare", "api"]:
            found.add(process.pid)
    return found


def test_api_bench_prints_one_consistent_json_line() -> None:
    before = _bench_databases(), _api_servers()
    result = run_bench("api.py", "--instruments", INSTRUMENTS, "--reported", REPORTED,
                       "--sessions", SESSIONS, "--runs", RUNS, "--report-runs", RUNS,
                       timeout=300, env={"TEST_PG_ADMIN_URL": PG_ADMIN_URL})

    board, year, power = (result["status_board"], result["utilisation_year"],
                          result["power_year_daily"])
    assert board["instruments"] == INSTRUMENTS and board["runs"] == RUNS
    assert year["instruments"] == REPORTED and year["sessions"] == REPORTED * SESSIONS
    assert power["samples"] == 365 * 24 * 60
    for figures, baseline, ratio in ((board, "bare_fetch", "ratio_vs_bare_fetch"),
                                     (year, "bare_sum", "ratio_vs_bare_sum"),
                                     (power, "bare_avg", "ratio_vs_bare_avg")):
        assert 0 < figures["median_ms"] <= figures["p95_ms"]
        assert 0 < figures[baseline]["median_ms"] <= figures[baseline]["p95_ms"]
        # the ratio comes from the medians before they are printed to 0.1 ms, and is
        # printed to 0.01: it lies within what the printed medians allow
        median, base = figures["median_ms"], figures[baseline]["median_ms"]
        assert (median - 0.05) / (base + 0.05) - 0.005 <= figures[ratio] \
            <= (median + 0.05) / max(base - 0.05, 0.001) + 0.005
    assert result["evaluation_year"]["instruments"] == INSTRUMENTS
    assert 0 < result["overdue_registrations"]["overdue"] < INSTRUMENTS
    assert 0 < result["utilisation_sampled_days"]["mean_availability"] <= 1
    # its database dropped, its server gone (others' may come and go meanwhile)
    assert (_bench_databases() - before[0], _api_servers() - before[1]) == (set(), set())
