"""The process probe against real processes: one sleeping, one busy, then gone."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest
from pydantic import ValidationError

from gateway.agent import build_probe
from gateway.config import InstrumentConfig, ProbeConfig
from gateway.probes import ProcessProbe
from instrushare.protocol import State

SLEEPING = "import time; time.sleep(60)"
BUSY = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass"


@contextmanager
def acquisition_software(code: str) -> Iterator[str]:
    """A process standing in for the software; its command line carries a unique marker."""
    marker = f"acq-{uuid.uuid4().hex}"
    proc = subprocess.Popen([sys.executable, "-c", code, marker])
    try:
        yield marker
    finally:
        proc.kill()
        proc.wait(10)


def test_running_while_the_software_runs_with_its_user() -> None:
    login = psutil.Process().username()
    with acquisition_software(SLEEPING) as marker:
        probe = ProcessProbe(process=marker, users={login: "u-op"})
        reading = probe.read()
        assert (reading.state, reading.user) == (State.RUNNING, "u-op")
        assert ProcessProbe(process=marker).read().user is None  # unmapped login: unknown
    after = probe.read()
    assert (after.state, after.user) == (State.IDLE, None)


def test_busy_cpu_threshold_tells_measuring_from_open() -> None:
    """From the first read on: a gateway started during a measurement says running at once
    rather than idle for one poll (which would split the session)."""
    with acquisition_software(SLEEPING) as idle_marker, \
            acquisition_software(BUSY) as busy_marker:
        time.sleep(0.5)  # the busy one is past its start
        idle = ProcessProbe(process=idle_marker, busy_cpu_percent=30)
        busy = ProcessProbe(process=busy_marker, busy_cpu_percent=30)
        first = [idle.read(), busy.read()]
        time.sleep(1.0)
        later = [idle.read(), busy.read()]
    for quiet, working in (first, later):
        assert quiet.state == State.IDLE and quiet.metrics["cpu_percent"] < 30
        assert working.state == State.RUNNING and working.metrics["cpu_percent"] >= 30


def test_process_probe_configuration() -> None:
    config = InstrumentConfig(id="nmr", probe=ProbeConfig(
        kind="process", process="topspin", busy_cpu_percent=5, users={"nmr-op": "u-li"}))
    probe = build_probe(config)
    assert isinstance(probe, ProcessProbe)
    assert (probe.process, probe.busy_cpu_percent, probe.users) == \
        ("topspin", 5, {"nmr-op": "u-li"})
    with pytest.raises(ValidationError, match="needs process"):
        ProbeConfig(kind="process")
    with pytest.raises(ValidationError, match="process probes only"):
        ProbeConfig(kind="simulated", process="topspin")
    with pytest.raises(ValidationError, match="modbus probes only"):
        ProbeConfig(kind="process", process="topspin", host="10.0.0.5")
