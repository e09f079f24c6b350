"""bench/api.py end to end with tiny parameters: one JSON line whose figures add up, the API
served by a process of its own that is gone afterwards, the scratch database dropped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.conftest import PG_ADMIN_URL

BENCH = Path(__file__).resolve().parents[2] / "bench" / "api.py"
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
    done = subprocess.run(
        [sys.executable, str(BENCH), "--instruments", str(INSTRUMENTS), "--reported",
         str(REPORTED), "--sessions", str(SESSIONS), "--runs", str(RUNS), "--report-runs",
         str(RUNS)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "BENCH_PG_ADMIN_URL": PG_ADMIN_URL},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    result = json.loads(lines[0])

    board, year = result["status_board"], result["utilisation_year"]
    assert board["instruments"] == INSTRUMENTS and board["runs"] == RUNS
    assert year["instruments"] == REPORTED and year["sessions"] == REPORTED * SESSIONS
    for figures, baseline, ratio in ((board, "bare_fetch", "ratio_vs_bare_fetch"),
                                     (year, "bare_sum", "ratio_vs_bare_sum")):
        assert 0 < figures["median_ms"] <= figures["p95_ms"]
        assert 0 < figures[baseline]["median_ms"] <= figures[baseline]["p95_ms"]
        assert figures[ratio] == pytest.approx(  # from the medians before rounding
            figures["median_ms"] / figures[baseline]["median_ms"], rel=0.05)
    assert result["evaluation_year"]["instruments"] == INSTRUMENTS
    assert 0 < result["utilisation_sampled_days"]["mean_availability"] <= 1
    assert (_bench_databases(), _api_servers()) == before  # dropped, and its server gone
