"""When an instrument's open message is closed: its cadence against the poll schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.batch import MessageBatch
from instrushare.protocol import Sample, State

T = datetime(2026, 11, 1, tzinfo=UTC)


def _closing_polls(*, poll_s: float, interval_s: float, jitter_s: float, polls: int,
                   step_at: int = 0, step_s: float = 0) -> list[int]:
    """The polls (numbered from 1) at which the message is closed, one sample per poll, the
    wall clock off the poll schedule by +-``jitter_s`` in turn, and set ``step_s`` forward
    (back if negative) before poll ``step_at``."""
    batch = MessageBatch(instrument="i1", topic="t")
    closed = []
    for k in range(1, polls + 1):
        now = T + timedelta(seconds=poll_s * k + (jitter_s if k % 2 else -jitter_s)
                            + (step_s if step_at and k >= step_at else 0))
        batch.add(now, [Sample(ts=now, state=State.IDLE)], [])
        if batch.due(interval_s=interval_s, poll_s=poll_s, max_samples=500):
            closed.append(k)
            assert batch.close(gateway="gw", bd_seq=0, created_at=now, historical=False,
                               max_samples=500)
    return closed


@pytest.mark.parametrize("jitter_s", [0, 0.4, 2])
def test_one_message_per_publish_interval(jitter_s: float) -> None:
    assert _closing_polls(poll_s=60, interval_s=300, jitter_s=jitter_s, polls=30) == [
        5, 10, 15, 20, 25, 30]
    assert _closing_polls(poll_s=2, interval_s=10, jitter_s=jitter_s / 10, polls=10) == [5, 10]


def test_an_interval_not_a_multiple_of_the_poll_closes_at_the_nearest_poll() -> None:
    # 100 s with polls of 60 s: after 2 polls (120 s) rather than 1 (60 s)
    assert _closing_polls(poll_s=60, interval_s=100, jitter_s=0, polls=6) == [2, 4, 6]
    # shorter than a poll: every poll
    assert _closing_polls(poll_s=60, interval_s=30, jitter_s=0, polls=3) == [1, 2, 3]


@pytest.mark.parametrize("step_s", [-90, -3600, -86400])
def test_a_clock_set_back_does_not_hold_the_message_back(step_s: float) -> None:
    """An NTP correction between two polls: the poll after it counts as no time, not as
    negative time, which would keep the message open (the instrument shown offline) until
    the clock caught up again."""
    assert _closing_polls(poll_s=60, interval_s=300, jitter_s=0, polls=16, step_at=3,
                          step_s=step_s) == [6, 11, 16]


def test_a_clock_set_forward_closes_the_message_at_once() -> None:
    assert _closing_polls(poll_s=60, interval_s=300, jitter_s=0, polls=13, step_at=3,
                          step_s=3600) == [3, 8, 13]
