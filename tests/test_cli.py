"""The ``instrushare`` command as a person runs it: bad settings in the environment end it
with what to fix and exit code 2, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys


def test_invalid_settings_name_each_field_and_exit_2() -> None:
    env = {**os.environ, "INSTRUSHARE_API_POOL_MIN_SIZE": "0",
           "INSTRUSHARE_API_EVALUATION__ASSESSED_POINTS": "20"}
    done = subprocess.run([sys.executable, "-m", "instrushare", "api"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "instrushare: invalid settings in the environment (ApiSettings):",
        "  pool_min_size: Input should be greater than or equal to 1",
        "  evaluation: Value error, operation, sharing, management and assessed points add up"
        " to 120, not 100",
    ]
