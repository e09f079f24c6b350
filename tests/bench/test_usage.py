"""What a user meets before a benchmark runs: its --help, where it finds PostgreSQL, and the
arguments it refuses. Each runs against a PostgreSQL that is not there, so a benchmark that
went further than it should fails at once instead of running."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.bench.helpers import BENCH_DIR

SCRIPTS = ("api.py", "ingest.py", "latency.py")
NOWHERE = "postgresql://postgres@127.0.0.1:1/postgres"
TINY = {
    "api.py": ("--instruments", "20", "--reported", "5", "--sessions", "2", "--runs", "1",
               "--report-runs", "1"),
    "ingest.py": ("--messages", "100", "--batched-messages", "10", "--samples-per-message", "2",
                  "--rounds", "1"),
    "latency.py": ("--instruments", "5", "--rate", "20", "--duration", "1", "--warmup", "0.2",
                   "--idle", "0.2"),
}
"""Parameters of a run over in seconds, should a benchmark find a database after all."""


def _bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH_DIR / script), *args], capture_output=True,
                          text=True, timeout=300, check=False,
                          env={"PATH": "/usr/bin:/bin:/usr/sbin", "TEST_PG_ADMIN_URL": NOWHERE})


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_says_what_the_benchmark_does_in_whole_sentences(script: str) -> None:
    """The description is the docstring's first paragraph, not its first line cut off."""
    doc = ast.get_docstring(ast.parse((BENCH_DIR / script).read_text()))
    assert doc is not None
    summary = " ".join(doc.split("\n\n")[0].split())
    done = _bench(script, "--help")
    assert done.returncode == 0, done.stderr
    assert summary in " ".join(done.stdout.replace("-\n", "-").split())
    assert summary.endswith(".")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_takes_postgresql_from_test_pg_admin_url(script: str) -> None:
    """The same variable as the tests' for all three: the server that is not there is the one
    named in the failure, not the default quietly used instead."""
    done = _bench(script, *TINY[script])
    assert done.returncode != 0
    assert 'connection to server at "127.0.0.1", port 1 failed' in done.stderr


@pytest.mark.parametrize(("script", "option"), [
    ("api.py", "--runs"), ("api.py", "--sample-days"), ("ingest.py", "--rounds"),
    ("ingest.py", "--messages"), ("latency.py", "--rate"), ("latency.py", "--probe-interval"),
])
def test_a_count_or_rate_of_zero_is_refused_before_anything_runs(
    script: str, option: str
) -> None:
    """Taken, a zero would crash the run once its scratch database is filled or, as an
    interval, never let it end."""
    done = _bench(script, option, "0")
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(f"error: argument {option}: must be above 0, not 0\n")
