"""The ``instrushare`` command as a person runs it: bad settings in the environment end it
with what to fix and exit code 2, not a traceback; each service loads only its own code."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


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


LOADED = """
import sys
from instrushare.cli import main
sys.argv = ["instrushare", *sys.argv[1:], "--help"]
try:
    main()
except SystemExit:
    pass
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})), file=sys.stderr)
"""
HEAVY = {"gateway", "ingest", "device_sim", "monitor_api", "fastapi", "uvicorn", "pandas",
         "openpyxl", "asyncua", "pymodbus"}


@pytest.mark.parametrize(("command", "needs"), [
    (["ingest"], {"ingest"}),
    (["gateway"], {"gateway", "pymodbus"}),  # OPC UA only for instruments that use it
    (["api"], {"monitor_api", "fastapi", "openpyxl"}),
    (["sim"], {"device_sim", "gateway", "pymodbus"}),
])
def test_a_command_loads_only_its_service(command: list[str], needs: set[str]) -> None:
    done = subprocess.run([sys.executable, "-c", LOADED, *command], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Usage: " in done.stdout
    loaded = set(done.stderr.split())
    assert loaded & HEAVY == needs
