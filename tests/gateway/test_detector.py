"""State detection: hysteresis, debounce dated at the first agreeing reading, explicit states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway import DetectorConfig, Reading
from gateway.detector import StateDetector
from instrushare.protocol import EventType, State

T = datetime(2025, 1, 1, tzinfo=UTC)


def ts(i: int) -> datetime:
    return T + timedelta(minutes=i)


Samples = list[tuple[datetime, State]]
Events = list[tuple[datetime, EventType, str | None]]


def run(readings: list[Reading], **cfg: float) -> tuple[Samples, Events]:
    detector = StateDetector(DetectorConfig(**cfg))  # type: ignore[arg-type]
    samples, events = [], []
    for i, reading in enumerate(readings):
        out = detector.feed(ts(i), reading)
        samples += [(s.ts, s.state) for s in out.samples]
        events += [(e.ts, e.type, e.user) for e in out.events]
    return samples, events


def powers(*values: float) -> list[Reading]:
    return [Reading(power_w=v) for v in values]


def test_hysteresis_without_debounce() -> None:
    samples, _ = run(powers(0, 10, 39, 40, 35, 31, 29, 45, 4.9), debounce=1)
    assert [s for _, s in samples] == [
        State.OFF, State.IDLE, State.IDLE, State.RUNNING, State.RUNNING, State.RUNNING,
        State.IDLE, State.RUNNING, State.OFF,
    ]


def test_debounce_dates_the_change_at_the_first_agreeing_reading() -> None:
    samples, events = run(
        [Reading(power_w=10), Reading(power_w=10), Reading(power_w=50, user="bob"),
         Reading(power_w=60), Reading(power_w=70), Reading(power_w=10), Reading(power_w=10),
         Reading(power_w=10)],
        debounce=2,
    )
    # every reading yields exactly one sample, with its own timestamp, in order
    assert [t for t, _ in samples] == [ts(i) for i in range(8)]
    assert [s for _, s in samples] == [State.IDLE] * 2 + [State.RUNNING] * 3 + [State.IDLE] * 3
    assert events == [
        (ts(2), EventType.SESSION_START, "bob"),
        (ts(5), EventType.SESSION_END, "bob"),
    ]


def test_short_blips_are_noise_and_keep_the_accepted_state() -> None:
    samples, events = run(powers(10, 50, 10, 50, 50, 50, 10, 50, 50), debounce=3)
    assert events == [(ts(3), EventType.SESSION_START, None)]
    assert [s for _, s in samples] == [State.IDLE] * 3 + [State.RUNNING] * 6


def test_a_dip_below_the_running_band_is_noise_and_does_not_end_the_session() -> None:
    """One reading under run_off_w (a meter glitch, even 0 W) while running is held back;
    the next, back inside the band (35 W: not enough to start, enough to keep running),
    continues the session, whatever the debounce."""
    for dip in (20, 0):
        for debounce in (2, 3):
            samples, events = run(powers(100, 100, dip, 35, 35, 35), debounce=debounce)
            assert events == [(ts(0), EventType.SESSION_START, None)], (dip, debounce)
            assert [s for _, s in samples] == [State.RUNNING] * 6
    # two readings under it do end it, at the first of them
    _, events = run(powers(100, 100, 20, 20, 35), debounce=2)
    assert events == [(ts(0), EventType.SESSION_START, None), (ts(2), EventType.SESSION_END, None)]


def test_a_change_to_another_candidate_restarts_the_count() -> None:
    # idle -> off (1 reading) -> running (2 readings): only running is accepted, dated at ts(2)
    samples, events = run(powers(10, 0, 50, 50), debounce=2)
    assert events == [(ts(2), EventType.SESSION_START, None)]
    assert [s for _, s in samples] == [State.IDLE, State.IDLE, State.RUNNING, State.RUNNING]


def test_explicit_state_wins_over_power() -> None:
    readings = [
        Reading(power_w=100),
        Reading(power_w=100, state=State.FAULT),
        Reading(power_w=100, state=State.FAULT),
        Reading(power_w=0, state=State.MAINTENANCE),
        Reading(power_w=0, state=State.MAINTENANCE),
        Reading(power_w=0),
        Reading(power_w=0),
    ]
    samples, events = run(readings, debounce=2)
    assert [e[:2] for e in events] == [
        (ts(0), EventType.SESSION_START),
        (ts(1), EventType.SESSION_END),
        (ts(1), EventType.FAULT),
        (ts(3), EventType.FAULT_CLEARED),
        (ts(3), EventType.MAINTENANCE_START),
        (ts(5), EventType.MAINTENANCE_END),
    ]
    assert [s for _, s in samples] == [
        State.RUNNING, State.FAULT, State.FAULT, State.MAINTENANCE, State.MAINTENANCE,
        State.OFF, State.OFF,
    ]


def test_missing_power_keeps_the_previous_raw_state() -> None:
    samples, _ = run([Reading(power_w=50), Reading(), Reading(power_w=35)], debounce=1)
    assert [s for _, s in samples] == [State.RUNNING] * 3


def test_session_user_comes_from_the_first_reading_that_names_one() -> None:
    readings = [Reading(power_w=10), Reading(power_w=50), Reading(power_w=50, user="carol"),
                Reading(power_w=0), Reading(power_w=0)]
    _, events = run(readings, debounce=2)
    assert events == [
        (ts(1), EventType.SESSION_START, "carol"),
        (ts(3), EventType.SESSION_END, "carol"),
    ]
