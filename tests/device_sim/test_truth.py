"""The ground-truth file: the format docs/simulator.md describes, read back unchanged."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from device_sim import Simulation, SimulationSpec, TruthSession, load_sessions, write_truth
from device_sim.schedule import LOCAL_TZ
from instrushare.protocol import State

START = datetime(2025, 3, 10, tzinfo=LOCAL_TZ)


def _simulation(
    tmp_path: Path, *, days: float = 2, start: datetime | None = START
) -> Simulation:
    return Simulation(
        SimulationSpec(instruments=20, days=days, seed=3, start=start),
        mqtt_url="mqtt://127.0.0.1:1",
        topic_prefix="unused",
        state_dir=tmp_path / "outbox",
    )


def _utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), f"{value} is not in UTC"
    return parsed


def test_truth_file_has_the_documented_fields(tmp_path: Path) -> None:
    simulation = _simulation(tmp_path)
    path = tmp_path / "deep" / "dir" / "truth.json"  # parents are created
    write_truth(path, simulation.truth())
    data = json.loads(path.read_text(encoding="utf-8"))

    assert set(data) == {
        "seed",
        "start",
        "end",
        "tick_s",
        "instruments",
        "states",
        "sessions",
        "outages",
        "bookings",
        "certifications",
    }
    assert data["seed"] == 3 and data["tick_s"] == 60
    start, end = _utc(data["start"]), _utc(data["end"])
    assert start == START and end - start == timedelta(days=2)
    assert [i["id"] for i in data["instruments"]] == [f"ins-{n:05d}" for n in range(1, 21)]
    for inst in data["instruments"]:
        assert {"id", "gateway", "institution", "category", "reports_user"} <= set(inst)

    def on_tick(value: str) -> datetime:
        moment = _utc(value)
        assert start <= moment <= end, value
        assert (moment - start).total_seconds() % data["tick_s"] == 0, f"{value} not on a tick"
        return moment

    ids = {i["id"] for i in data["instruments"]}
    reports = {i["id"]: i["reports_user"] for i in data["instruments"]}
    assert set(reports.values()) == {True, False}  # a quarter of 20, by default
    for st in data["states"]:
        assert set(st) == {"instrument", "state", "user", "start", "end"}
        assert st["instrument"] in ids
        State(st["state"])
        assert on_tick(st["start"]) < on_tick(st["end"])
    assert data["sessions"]
    for s in data["sessions"]:
        assert set(s) == {"instrument", "user", "reported_user", "start", "end"}
        assert s["instrument"] in ids and s["user"]
        assert s["reported_user"] == (s["user"] if reports[s["instrument"]] else None)
        assert on_tick(s["start"]) < on_tick(s["end"])
    gateways = {i["gateway"] for i in data["instruments"]}
    assert data["outages"]
    for o in data["outages"]:
        assert set(o) == {"gateway", "start", "end"}
        assert o["gateway"] in gateways
        assert on_tick(o["start"]) < on_tick(o["end"])
    assert data["certifications"]
    for c in data["certifications"]:
        assert set(c) == {"user", "instrument", "level", "valid_from"}
        assert c["instrument"] in ids and c["level"] in ("self", "assisted")
        assert date.fromisoformat(c["valid_from"]) < START.date()
    assert {b["used"] for b in data["bookings"]} == {True, False}
    for b in data["bookings"]:
        assert set(b) == {"instrument", "user", "kind", "start", "end", "used"}
        assert b["instrument"] in ids and b["kind"] in ("self", "assisted", "sample")
        assert start - timedelta(minutes=45) <= _utc(b["start"]) < _utc(b["end"])
        assert _utc(b["end"]) <= end + timedelta(hours=1)


def test_truth_file_parses_back_to_the_same_data(tmp_path: Path) -> None:
    simulation = _simulation(tmp_path)
    truth = simulation.truth()
    path = tmp_path / "truth.json"
    write_truth(path, truth)
    assert json.loads(path.read_text(encoding="utf-8")) == truth

    sessions = load_sessions(path)
    assert sessions == [
        TruthSession(
            s["instrument"],
            s["user"],
            datetime.fromisoformat(s["start"]),
            datetime.fromisoformat(s["end"]),
            s["reported_user"] is not None,
        )
        for s in truth["sessions"]
    ]
    for loaded in sessions:
        assert loaded.start.tzinfo is not None and loaded.hours > 0
    # the sessions are the running time of the state intervals, hour for hour
    running_h = sum(
        (_utc(st["end"]) - _utc(st["start"])).total_seconds() / 3600
        for st in truth["states"]
        if st["state"] == "running"
    )
    assert abs(sum(s.hours for s in sessions) - running_h) < 1e-9

    # writing again gives the same bytes: the file is a pure function of the spec
    again = tmp_path / "again.json"
    write_truth(again, _simulation(tmp_path).truth())
    assert again.read_bytes() == path.read_bytes()


def test_truth_never_reaches_into_the_future(tmp_path: Path) -> None:
    """docs/simulator.md: the default start keeps every timestamp acceptable to the ingest."""
    for days in (0.1, 1, 1.5, 2):
        simulation = _simulation(tmp_path, days=days, start=None)
        truth = simulation.truth()
        now = datetime.now(UTC)
        assert _utc(truth["end"]) <= now
        assert now - _utc(truth["start"]) < timedelta(days=30)
        latest = max(
            [_utc(x["end"]) for key in ("states", "sessions", "outages") for x in truth[key]]
        )
        assert latest <= _utc(truth["end"])
