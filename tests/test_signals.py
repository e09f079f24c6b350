"""A stop signal delivered twice at once (``timeout``, supervisors signalling the process and
then its group) is one request; a signal sent later still counts."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from types import FrameType

import pytest

from instrushare.signals import ignoring_repeats
from tests.services import free_port


@pytest.fixture
def received() -> Iterator[list[str]]:
    """The names of SIGUSR1 and SIGUSR2 as a handler ignoring repeats within 0.3 s gets them."""
    names: list[str] = []

    def record(signum: int, _frame: FrameType | None) -> None:
        names.append(signal.Signals(signum).name)

    on_signal = ignoring_repeats(record, window_s=0.3)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGUSR1, signal.SIGUSR2)}
    yield names
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def test_a_repeat_within_the_window_is_logged_and_dropped(
    received: list[str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="instrushare.signals")
    os.kill(os.getpid(), signal.SIGUSR1)
    os.kill(os.getpid(), signal.SIGUSR1)  # Python runs the handler before this returns
    assert received == ["SIGUSR1"]
    assert "received SIGUSR1 again 0.0" in caplog.text
    assert caplog.text.rstrip().endswith("s later: the same request")


def test_another_signal_or_one_after_the_window_counts(received: list[str]) -> None:
    os.kill(os.getpid(), signal.SIGUSR1)
    os.kill(os.getpid(), signal.SIGUSR2)
    time.sleep(0.4)
    os.kill(os.getpid(), signal.SIGUSR2)
    os.kill(os.getpid(), signal.SIGUSR2)
    assert received == ["SIGUSR1", "SIGUSR2", "SIGUSR2"]


def test_the_api_signalled_and_then_its_group_still_shuts_the_app_down(
    database_url: str,
) -> None:
    """uvicorn takes a second SIGINT as "force quit", skipping the app's shutdown (its pool
    and background work); ``timeout -s INT`` sends one to the process and one to its group."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "instrushare", "api", "--port", str(free_port())],
        env={**os.environ, "DATABASE_URL": database_url}, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        assert proc.stderr is not None
        while "Application startup complete" not in proc.stderr.readline():
            assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        while "Shutting down" not in proc.stderr.readline():
            assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "Application shutdown complete" in err and "Traceback" not in err
