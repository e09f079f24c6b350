"""The simulator's ground truth: what really happened, written to a JSON file tests compare with."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from device_sim.bookings import SimBooking
from device_sim.certifications import SimCertification
from device_sim.schedule import Timeline
from instrushare.protocol import State


@dataclass(frozen=True, slots=True)
class TruthSession:
    """A usage session; ``user`` ran it, and ``reported`` says whether its gateway knew."""

    instrument: str
    user: str | None
    start: datetime
    end: datetime
    reported: bool = True

    @property
    def reported_user(self) -> str | None:
        """The user the platform stores with the session (None from a power-only gateway)."""
        return self.user if self.reported else None

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600


def ground_truth(
    timelines: list[Timeline], *, start: datetime, tick_s: int, ticks: int, seed: int,
    bookings: Sequence[SimBooking] = (), certifications: Sequence[SimCertification] = (),
) -> dict[str, Any]:
    """Every state interval, usage session, network outage, booking and certification, times
    in UTC ISO 8601; states and sessions name who ran the instrument, sessions also the user
    its gateway reported (None where it sees power only)."""

    def at(tick: int) -> str:
        return (start + timedelta(seconds=tick * tick_s)).isoformat()

    end_tick = ticks
    return {
        "seed": seed,
        "start": at(0),
        "end": at(end_tick),
        "tick_s": tick_s,
        "instruments": [
            {
                "id": tl.instrument.id,
                "gateway": tl.instrument.gateway_id,
                "institution": tl.instrument.institution_id,
                "category": tl.instrument.profile.category,
                "reports_user": tl.instrument.reports_user,
            }
            for tl in timelines
        ],
        "states": [
            {
                "instrument": tl.instrument.id,
                "state": seg.state.value,
                "user": seg.user,
                "start": at(seg.start),
                "end": at(min(seg.end, end_tick)),
            }
            for tl in timelines
            for seg in tl.segments
            if seg.start < end_tick
        ],
        "sessions": [
            {
                "instrument": tl.instrument.id,
                "user": seg.user,
                "reported_user": seg.user if tl.instrument.reports_user else None,
                "start": at(seg.start),
                "end": at(seg.end),
            }
            for tl in timelines
            for seg in tl.segments
            if seg.state is State.RUNNING
        ],
        "outages": [
            {"gateway": tl.instrument.gateway_id, "start": at(o.start), "end": at(o.end)}
            for tl in timelines
            for o in tl.outages
        ],
        "bookings": [
            {
                "instrument": bk.instrument,
                "user": bk.user,
                "kind": bk.kind,
                "start": bk.start.astimezone(UTC).isoformat(),
                "end": bk.end.astimezone(UTC).isoformat(),
                "used": bk.used,
            }
            for bk in bookings
        ],
        "certifications": [
            {"user": c.user, "instrument": c.instrument, "level": c.level,
             "valid_from": c.valid_from.isoformat()}
            for c in certifications
        ],
    }


def write_truth(path: Path, truth: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(truth, indent=1, ensure_ascii=False), encoding="utf-8")


def load_sessions(path: Path) -> list[TruthSession]:
    data = json.loads(path.read_text(encoding="utf-8"))
    reports = {i["id"]: i["reports_user"] for i in data["instruments"]}
    return [
        TruthSession(
            s["instrument"],
            s["user"],
            datetime.fromisoformat(s["start"]),
            datetime.fromisoformat(s["end"]),
            reports[s["instrument"]],
        )
        for s in data["sessions"]
    ]
