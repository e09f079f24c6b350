"""A stop signal delivered twice at once (``timeout``, supervisors signalling the process and
then its group) is one request; a signal sent later still counts. The API under such signals:
tests/test_cli.py."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from types import FrameType

import pytest

from instrushare.signals import ignoring_repeats


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

