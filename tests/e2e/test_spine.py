"""Simulator -> real gateways -> Mosquitto -> ingest -> PostgreSQL, checked against ground truth."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict, Unpack

import chinese_calendar
import httpx
import psycopg
import pytest
from psycopg import conninfo

from device_sim.registry import register_bookings, register_certifications, register_fleet
from device_sim.runner import Simulation, SimulationResult, SimulationSpec
from device_sim.schedule import LOCAL_TZ, Segment
from device_sim.truth import TruthSession, load_sessions, write_truth
from ingest import IngestWorker
from instrushare.protocol import State
from monitor_api.auth import Role
from monitor_api.cli import create_token
from tests.api.conftest import make_settings
from tests.api_server import serve
from tests.e2e.helpers import (
    compare_sessions,
    count,
    hours_by_instrument,
    ingest_process,
    ingest_thread,
    sample_times,
    session_booking,
    stop_process,
    stored_sessions,
    wait_until,
)
from tests.services import Mosquitto, TcpProxy


def _last_full_workday_start() -> datetime:
    """Local midnight of the latest working day that is over, so the simulated day is busy."""
    day = datetime.now(LOCAL_TZ).date() - timedelta(days=1)
    while not chinese_calendar.is_workday(day):
        day -= timedelta(days=1)
    return datetime.combine(day, datetime.min.time(), LOCAL_TZ)


class SpecFields(TypedDict, total=False):
    """The fields of a SimulationSpec the tests choose."""

    instruments: int
    days: float
    speed: float | None
    no_show_rate: float
    fault_rate: float
    anonymous_share: float


def _simulation(
    tmp_path: Path, database_url: str, mqtt_url: str, topic_prefix: str,
    **spec: Unpack[SpecFields],
) -> Simulation:
    simulation = Simulation(
        SimulationSpec(
            id_prefix=f"{topic_prefix}-",
            start=_last_full_workday_start(),
            **spec,
        ),
        mqtt_url=mqtt_url,
        topic_prefix=topic_prefix,
        state_dir=tmp_path / "outbox",
    )
    register_fleet(database_url, simulation.fleet)
    return simulation


def _truth_sessions(simulation: Simulation, tmp_path: Path) -> list[TruthSession]:
    path = tmp_path / "truth.json"
    write_truth(path, simulation.truth())
    return load_sessions(path)


def _all_committed(database_url: str, simulation: Simulation, expected_messages: int) -> None:
    wait_until(
        lambda: count(database_url, "SELECT count(*) FROM ingested_message") >= expected_messages,
        120,
        f"{expected_messages} messages in the database",
    )


def _assert_every_sample_once(database_url: str, simulation: Simulation) -> None:
    """Each instrument has exactly one sample per tick, at the tick's original time."""
    expected = [
        simulation.start + timedelta(seconds=tick * simulation.spec.tick_s)
        for tick in range(simulation.ticks + 1)
    ]
    stored = sample_times(database_url)
    assert sorted(stored) == sorted(i.id for i in simulation.fleet.instruments)
    for instrument, times in stored.items():
        assert times == expected, f"{instrument}: samples differ from the simulated ticks"


def test_simulated_day_matches_ground_truth(
    tmp_path: Path, database_url: str, mqtt_url: str, topic_prefix: str
) -> None:
    # a fifth of the instruments miss a booking and a fifth have a fault: at the default
    # rates (5% and 3% a day) one day in 13, or in 5, had none at all; the gateways of 17 of
    # them (drawn at a quarter) see power only
    simulation = _simulation(tmp_path, database_url, mqtt_url, topic_prefix, instruments=50,
                             days=1, no_show_rate=0.2, fault_rate=0.2, anonymous_share=0.25)
    truth = _truth_sessions(simulation, tmp_path)
    assert len(truth) > 100, "a simulated working day has many sessions"
    with ingest_thread(database_url=database_url, mqtt_url=mqtt_url, topic_prefix=topic_prefix):
        result = simulation.run(drain_timeout=180)
        assert result.drained and result.dropped == 0
        _all_committed(database_url, simulation, result.messages)

    assert count(database_url, "SELECT count(*) FROM ingested_message") == result.messages
    assert count(database_url, "SELECT count(*) FROM dead_letter") == 0
    _assert_every_sample_once(database_url, simulation)
    stored = stored_sessions(database_url)
    tolerance = timedelta(seconds=simulation.spec.tick_s)
    assert compare_sessions(truth, stored, tolerance) == []
    want, got = hours_by_instrument(truth), hours_by_instrument(stored)
    for instrument, hours in want.items():
        assert got[instrument] == pytest.approx(hours, rel=0.005), instrument
    _assert_bookings_and_certifications_match_truth(database_url, simulation, truth)
    _assert_faults_match_truth(database_url, simulation)


def _assert_faults_match_truth(database_url: str, simulation: Simulation) -> None:
    """Every fault the simulator planned is counted once, on its instrument."""
    want = {}
    for tl in simulation.timelines:
        before_each: list[Segment | None] = [None, *tl.segments]
        want[tl.instrument.id] = sum(
            1 for before, seg in zip(before_each, tl.segments, strict=False)
            if seg.state is State.FAULT and seg.start < simulation.ticks
            and (before is None or before.state is not State.FAULT))
    assert sum(want.values()) > 0
    report = _report(database_url, simulation, availability=True)
    assert {i: report[i]["faults"] for i in want} == want


@contextmanager
def _evaluator(database_url: str) -> Iterator[httpx.Client]:
    """A client of a running API, with an evaluator's token."""
    settings = make_settings(database_url)
    token = asyncio.run(create_token(settings, role=Role.EVALUATOR))
    with serve(settings) as url, httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        yield client


def _report(
    database_url: str, simulation: Simulation, *, availability: bool = False
) -> dict[str, dict[str, Any]]:
    """The API's utilisation report of the simulated day, per instrument."""
    day = simulation.start.astimezone(LOCAL_TZ).date().isoformat()
    with _evaluator(database_url) as client:
        r = client.get("/reports/utilisation", params={
            "start": day, "end": day, "availability": str(availability).lower(),
            "limit": 1000})
    assert r.status_code == 200, r.text
    return {row["key"]: row for row in r.json()["items"]}


def _session_logs(database_url: str, simulation: Simulation) -> list[tuple[Any, ...]]:
    """Every instrument's session log of the simulated span: (instrument, user, where the
    user comes from, outside, uncertified) per session, in start order per instrument."""
    span: dict[str, str | int] = {
        "start": (simulation.start - timedelta(days=1)).isoformat(),
        "end": (simulation.start + timedelta(days=2)).isoformat(), "limit": 1000}
    logs = []
    with _evaluator(database_url) as client:
        for instrument in sorted(i.id for i in simulation.fleet.instruments):
            r = client.get(f"/instruments/{instrument}/sessions", params=span)
            assert r.status_code == 200, r.text
            logs += [(instrument, s["user_id"], s["user_from"], s["outside"], s["uncertified"])
                     for s in r.json()["items"]]
    return logs


def _assert_bookings_and_certifications_match_truth(
    database_url: str, simulation: Simulation, truth: list[TruthSession]
) -> None:
    """No-shows exactly, unbooked hours to two samples a session (the detected bounds); then
    the figures of the sessions' users."""
    assert register_bookings(database_url, simulation.bookings) == len(simulation.bookings)
    certified = {(c.user, c.instrument) for c in simulation.certifications}
    assert register_certifications(database_url, simulation.certifications) == len(certified)
    windows = defaultdict(list)
    for bk in simulation.bookings:
        windows[bk.instrument].append((bk.start, bk.end))
    unbooked: dict[str, float] = defaultdict(float)
    sessions: dict[str, int] = defaultdict(int)
    for s in truth:
        inside = sum((max(timedelta(0), min(s.end, b) - max(s.start, a))
                      for a, b in windows[s.instrument]), timedelta()).total_seconds()
        unbooked[s.instrument] += s.hours - inside / 3600
        sessions[s.instrument] += 1
    report = _report(database_url, simulation)
    no_shows = sum(not bk.used for bk in simulation.bookings)
    assert no_shows > 0 and sum(r["no_shows"] for r in report.values()) == no_shows
    for bk in simulation.bookings:
        row = report[bk.instrument]
        assert row["no_shows"] == sum(not b.used for b in simulation.bookings
                                      if b.instrument == bk.instrument), bk.instrument
    tick_h = simulation.spec.tick_s / 3600
    for instrument, hours in unbooked.items():
        got = report[instrument]["unbooked_hours"]
        assert abs(got - hours) <= 2 * tick_h * sessions[instrument] + 1e-6, instrument
    assert sum(unbooked.values()) > 0  # half the inside users' sessions were not booked
    logged = _assert_users_match_truth(report, simulation, truth, certified,
                                       make_settings(database_url).no_show_grace)
    assert _session_logs(database_url, simulation) == logged


@dataclass(slots=True)
class _Users:
    """What one instrument's report says of its sessions' users: hours per session."""

    external: list[float] = field(default_factory=list)
    outside: set[str] = field(default_factory=set)
    unknown: list[float] = field(default_factory=list)
    uncertified: list[float] = field(default_factory=list)


def _assert_users_match_truth(
    report: dict[str, dict[str, Any]], simulation: Simulation, truth: list[TruthSession],
    certified: set[tuple[str, str]], grace: timedelta,
) -> list[tuple[Any, ...]]:
    """External hours, outside users, hours of unknown users and uncertified use of every
    instrument, from the ground truth: a session's user is the one its gateway reported, else
    that of the booking it started in (docs/metrics.md, "Users by booking"), else unknown; it
    is uncertified when that user operated the instrument (reported, or a `self` booking)
    uncertified. Sessions and users exactly, hours to two samples a session. Returns what
    the session logs should say of each session, as ``_session_logs`` reads them."""
    outside = {u.id for u in simulation.fleet.external_users}
    want: dict[str, _Users] = defaultdict(_Users)
    anonymous = {"booked": 0, "unbooked": 0}
    logged = []
    for s in sorted(truth, key=lambda s: (s.instrument, s.start)):
        user, operated = s.reported_user, s.reported
        source: str | None = "reported"
        if not s.reported:
            booking = session_booking(simulation.bookings, s.instrument, s.start, grace)
            anonymous["booked" if booking else "unbooked"] += 1
            user = booking.user if booking else None
            operated = booking is not None and booking.kind == "self"
            source = "booking" if booking else None
        users = want[s.instrument]
        if user is None:
            users.unknown.append(s.hours)
        elif user in outside:
            users.external.append(s.hours)
            users.outside.add(user)
        uncertified = operated and (user, s.instrument) not in certified
        if uncertified:
            users.uncertified.append(s.hours)
        logged.append((s.instrument, user, source, user in outside, uncertified))
    assert min(anonymous.values()) > 0, anonymous
    assert any(u.uncertified for u in want.values()), "a tenth of the pairs is uncertified"
    tick_h = simulation.spec.tick_s / 3600

    def close(got: float, hours: list[float]) -> bool:
        return abs(got - sum(hours)) <= 2 * tick_h * len(hours) + 1e-6

    assert set(want) <= set(report)
    for instrument, row in report.items():
        users = want[instrument]
        assert row["outside_users"] == len(users.outside), instrument
        assert close(row["external_hours"], users.external), instrument
        assert close(row["unattributed_hours"], users.unknown), instrument
        assert row["uncertified_sessions"] == len(users.uncertified), instrument
        assert close(row["uncertified_hours"], users.uncertified), instrument
    return logged


def test_ingest_killed_mid_load_loses_and_duplicates_nothing(
    tmp_path: Path,
    make_database: Callable[[], str],
    mosquitto_factory: Callable[..., Mosquitto],
    topic_prefix: str,
) -> None:
    database_url = make_database()
    broker: Mosquitto = mosquitto_factory()
    simulation = _simulation(
        tmp_path, database_url, broker.url, topic_prefix, instruments=20, days=1, speed=8640
    )
    log = tmp_path / "ingest.log"
    worker = ingest_process(
        database_url=database_url,
        mqtt_url=broker.url,
        topic_prefix=topic_prefix,
        worker_id="w1",
        log=log,
    )
    result_box: list[SimulationResult] = []
    sim_thread = threading.Thread(
        target=lambda: result_box.append(simulation.run(drain_timeout=180)), name="sim"
    )
    sim_thread.start()
    try:
        wait_until(
            lambda: count(database_url, "SELECT count(*) FROM ingested_message") > 300,
            60,
            "ingest under load",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        killed_at = count(database_url, "SELECT count(*) FROM ingested_message")
        worker = ingest_process(
            database_url=database_url,
            mqtt_url=broker.url,
            topic_prefix=topic_prefix,
            worker_id="w1",
            log=log,
        )
        sim_thread.join(240)
        assert not sim_thread.is_alive()
        result = result_box[0]
        assert result.drained
        _all_committed(database_url, simulation, result.messages)
    finally:
        stop_process(worker)
    assert killed_at < result.messages
    assert count(database_url, "SELECT count(*) FROM ingested_message") == result.messages
    _assert_every_sample_once(database_url, simulation)
    truth = _truth_sessions(simulation, tmp_path)
    assert compare_sessions(truth, stored_sessions(database_url), timedelta(minutes=1)) == []


def test_a_broker_crash_loses_nothing_the_gateways_sent(
    tmp_path: Path,
    database_url: str,
    mosquitto_factory: Callable[..., Mosquitto],
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kill -9 of the broker while it holds messages the ingest cannot take yet (its database
    unreachable, its window of unacknowledged deliveries full): they die with the broker,
    which saves its state only now and then, after it acknowledged them to the gateways. The
    gateways keep every message until the platform confirms it stored it, and send it again
    after the crash: nothing is lost."""
    monkeypatch.setattr(IngestWorker, "MAX_BACKOFF_S", 0.5)
    broker: Mosquitto = mosquitto_factory()
    simulation = _simulation(
        tmp_path, database_url, broker.url, topic_prefix, instruments=10, days=0.5, speed=4320
    )
    proxy = TcpProxy(int(conninfo.conninfo_to_dict(database_url).get("port") or 5432))
    proxy.up()
    via_proxy = conninfo.make_conninfo(database_url, host="127.0.0.1", port=proxy.port)
    quarter = simulation.ticks // 4

    def fail(tick: int, _total: int) -> None:
        if tick == quarter:
            proxy.down()
        elif tick == 2 * quarter:
            broker.stop(signal.SIGKILL)
            broker.start()
        elif tick == 3 * quarter:
            proxy.up()

    try:
        with ingest_thread(database_url=via_proxy, mqtt_url=broker.url,
                           topic_prefix=topic_prefix, receive_maximum=20,
                           batch_max_messages=20):
            result = simulation.run(on_tick=fail, drain_timeout=120)
            assert result.drained
            _all_committed(database_url, simulation, result.messages)
    finally:
        proxy.down()
    assert count(database_url, "SELECT count(*) FROM ingested_message") == result.messages
    _assert_every_sample_once(database_url, simulation)


def test_broker_outage_delivers_everything_in_order_with_original_timestamps(
    tmp_path: Path,
    database_url: str,
    mosquitto_factory: Callable[..., Mosquitto],
    topic_prefix: str,
) -> None:
    broker: Mosquitto = mosquitto_factory()
    simulation = _simulation(
        tmp_path, database_url, broker.url, topic_prefix, instruments=10, days=0.5, speed=4320
    )
    outage = (simulation.ticks // 4, simulation.ticks // 2)  # ~2.5 s of real time

    def toggle_broker(tick: int, _total: int) -> None:
        if tick == outage[0]:
            broker.stop()
        elif tick == outage[1]:
            broker.start()

    with ingest_thread(database_url=database_url, mqtt_url=broker.url, topic_prefix=topic_prefix):
        result = simulation.run(on_tick=toggle_broker, drain_timeout=120)
        assert result.drained
        _all_committed(database_url, simulation, result.messages)
    assert count(database_url, "SELECT count(*) FROM ingested_message") == result.messages
    assert count(database_url, "SELECT count(*) FROM ingested_message WHERE historical") > 0
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT gateway_id, array_agg(seq ORDER BY arrival) FROM ingested_message GROUP BY 1"
        ).fetchall()
    for gateway, seqs in rows:
        assert seqs == sorted(seqs), f"{gateway} delivered out of order"
    _assert_every_sample_once(database_url, simulation)
