"""Gateways that see power only: which instruments have one, and what their gateways report.

No broker or database: fleets and readings are planned in memory.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_sim.fleet import ANONYMOUS_SHARE, build_fleet
from device_sim.runner import Simulation, SimulationSpec, reading_for
from device_sim.schedule import LOCAL_TZ
from instrushare.cli import app
from instrushare.protocol import State

MONDAY = datetime(2025, 3, 10, tzinfo=LOCAL_TZ)


def _anonymous(
    size: int, *, seed: int = 3, id_prefix: str = "", anonymous_share: float = ANONYMOUS_SHARE
) -> list[str]:
    fleet = build_fleet(size, seed=seed, id_prefix=id_prefix, anonymous_share=anonymous_share)
    return [i.id for i in fleet.instruments if not i.reports_user]


def test_the_share_is_drawn_per_instrument_from_the_seed() -> None:
    drawn = _anonymous(400)
    assert drawn == _anonymous(400)
    assert drawn != _anonymous(400, seed=4)
    # binomial(400, 0.25): mean 100, standard deviation about 8.7; 4 of them either side
    assert abs(len(drawn) - 400 * ANONYMOUS_SHARE) <= 4 * math.sqrt(400 * 0.25 * 0.75)
    # by instrument number: a smaller fleet has the first ones, a prefix changes nothing
    assert _anonymous(40) == [i for i in drawn if int(i.rsplit("-", 1)[1]) <= 40]
    assert _anonymous(400, id_prefix="lab2-") == [f"lab2-{i}" for i in drawn]
    # a larger share keeps the anonymous instruments of a smaller one
    assert set(drawn) < set(_anonymous(400, anonymous_share=0.5))


def test_the_share_leaves_the_rest_of_the_fleet_as_it_was() -> None:
    plain, anonymous = build_fleet(60, seed=3, anonymous_share=0), build_fleet(60, seed=3)
    assert plain.users == anonymous.users and plain.institutions == anonymous.institutions
    assert [replace(i, reports_user=True) for i in anonymous.instruments] == plain.instruments


@pytest.mark.parametrize(("share", "reporting"), [(0, 50), (1, 0)])
def test_the_extremes_are_no_instrument_and_every_instrument(share: float, reporting: int) -> None:
    fleet = build_fleet(50, seed=3, anonymous_share=share)
    assert sum(i.reports_user for i in fleet.instruments) == reporting


@pytest.mark.parametrize("share", [-0.01, 1.01, math.nan, math.inf])
def test_a_share_outside_0_to_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="anonymous_share must be between 0 and 1"):
        SimulationSpec(anonymous_share=share)


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "a quarter"])
def test_the_cli_refuses_a_share_outside_0_to_1(tmp_path: Path, value: str) -> None:
    result = CliRunner().invoke(
        app,
        ["sim", "--anonymous-share", value, "--no-register",
         "--truth", str(tmp_path / "truth.json"), "--state-dir", str(tmp_path / "outbox")],
        env={"MQTT_URL": "mqtt://127.0.0.1:1", "COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--anonymous-share'" in result.output, result.output
    assert not (tmp_path / "truth.json").exists()


def test_power_only_gateways_read_no_user_and_the_truth_keeps_who_ran(tmp_path: Path) -> None:
    simulation = Simulation(
        SimulationSpec(instruments=20, days=1, seed=3, start=MONDAY, anonymous_share=0.5),
        mqtt_url="mqtt://127.0.0.1:1", topic_prefix="unused", state_dir=tmp_path,
    )
    truth = simulation.truth()
    reports = {i["id"]: i["reports_user"] for i in truth["instruments"]}
    assert reports == {i.id: i.reports_user for i in simulation.fleet.instruments}
    running = 0
    for tl in simulation.timelines:
        for seg in tl.segments:
            if seg.state is State.RUNNING:
                running += 1
                reading = reading_for(seg, tl.instrument, random.Random(0))
                assert seg.user is not None
                assert reading.user == (seg.user if tl.instrument.reports_user else None)
    assert running == len(truth["sessions"])
    by_reporting = {True: 0, False: 0}
    for s in truth["sessions"]:
        by_reporting[reports[s["instrument"]]] += 1
        assert s["user"] is not None
        assert s["reported_user"] == (s["user"] if reports[s["instrument"]] else None)
    assert min(by_reporting.values()) > 10, by_reporting
