"""Running a benchmark script as a user would, for the smoke tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def run_bench(script: str, *args: object, timeout: float,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``bench/<script>`` with ``args``; it must succeed and print exactly one JSON line,
    which is returned."""
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / script), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    result: dict[str, Any] = json.loads(lines[0])
    assert result["bench"] == script.removesuffix(".py")
    return result
