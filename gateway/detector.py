"""Readings -> instrument states, with hysteresis on power and debounce on state changes.

A change is accepted once ``debounce`` consecutive readings agree on the new state, and it is
dated at the first of them: session bounds are then exact to one sample interval. Until a
change is decided, its readings are held back, so every sample carries the state that was
finally accepted for its instant (samples lag by at most ``debounce - 1`` polls).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gateway.config import DetectorConfig
from gateway.probes import Reading
from instrushare.protocol import Event, EventType, Sample, State

_LEAVING = {
    State.RUNNING: EventType.SESSION_END,
    State.FAULT: EventType.FAULT_CLEARED,
    State.MAINTENANCE: EventType.MAINTENANCE_END,
}
_ENTERING = {
    State.RUNNING: EventType.SESSION_START,
    State.FAULT: EventType.FAULT,
    State.MAINTENANCE: EventType.MAINTENANCE_START,
}


@dataclass(slots=True)
class Detected:
    """What one reading produced: samples now decided, events, and whether the state changed."""

    samples: list[Sample] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    changed: bool = False


class StateDetector:
    """Per-instrument state machine; ``feed`` one reading per poll, in time order."""

    __slots__ = ("_config", "_pending", "_raw", "_session_user", "_state")

    def __init__(self, config: DetectorConfig) -> None:
        self._config = config
        self._state: State | None = None
        self._raw: State = State.OFF
        self._pending: list[tuple[datetime, Reading, State]] = []
        self._session_user: str | None = None

    @property
    def state(self) -> State | None:
        """The accepted state (None before the first reading)."""
        return self._state

    def classify(self, reading: Reading) -> State:
        """The raw state of one reading. Between ``run_off_w`` and ``run_on_w`` (hysteresis)
        it continues running when the accepted state or the previous reading's is running: a
        single dip below ``run_off_w`` is then noise the debounce absorbs, not the end of the
        session, and a start is not undone by the next reading easing off."""
        if reading.state is not None:
            return reading.state
        power = reading.power_w
        if power is None:
            return self._raw
        cfg = self._config
        if power < cfg.off_below_w:
            return State.OFF
        if power >= cfg.run_on_w or (
            power >= cfg.run_off_w and State.RUNNING in (self._raw, self._state)
        ):
            return State.RUNNING
        return State.IDLE

    def feed(self, ts: datetime, reading: Reading) -> Detected:
        raw = self._raw = self.classify(reading)
        out = Detected()
        if self._state is None:
            self._enter(ts, reading, raw, out)
            return out
        if raw == self._state:
            self._release(out)
            self._emit(out, ts, reading, raw)
            return out
        if self._pending and self._pending[-1][2] != raw:
            self._release(out)
        self._pending.append((ts, reading, raw))
        if len(self._pending) >= self._config.debounce:
            first_ts, first_reading, _ = self._pending[0]
            user = next((r.user for _, r, _ in self._pending if r.user), first_reading.user)
            self._enter(first_ts, Reading(user=user), raw, out)
            for p_ts, p_reading, _ in self._pending:
                self._emit(out, p_ts, p_reading, raw)
            self._pending.clear()
        return out

    def release(self) -> Detected:
        """Decide held-back readings now, as the accepted state (used by flush and stop).

        A change they began is then counted again from the next reading.
        """
        out = Detected()
        if self._state is not None:
            self._release(out)
        return out

    def _enter(self, ts: datetime, reading: Reading, new: State, out: Detected) -> None:
        """Accept ``new`` at ``ts``: events for leaving the old state, then for entering."""
        old = self._state
        if old in _LEAVING:
            user = self._session_user if old == State.RUNNING else None
            out.events.append(Event(ts=ts, type=_LEAVING[old], user=user))
        if new in _ENTERING:
            user = reading.user if new == State.RUNNING else None
            out.events.append(Event(ts=ts, type=_ENTERING[new], user=user))
        self._session_user = reading.user if new == State.RUNNING else None
        self._state = new
        out.changed = True
        if old is None:
            self._emit(out, ts, reading, new)

    def _release(self, out: Detected) -> None:
        """A would-be change did not last: its readings keep the accepted state."""
        assert self._state is not None
        for p_ts, p_reading, _ in self._pending:
            self._emit(out, p_ts, p_reading, self._state)
        self._pending.clear()

    def _emit(self, out: Detected, ts: datetime, reading: Reading, state: State) -> None:
        if state == State.RUNNING and self._session_user is None and reading.user:
            self._session_user = reading.user
        out.samples.append(
            Sample(
                ts=ts,
                state=state,
                power_w=reading.power_w,
                user=reading.user,
                metrics=reading.metrics,
            )
        )
