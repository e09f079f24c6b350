"""The agent end to end on a real broker: delivery, order, outages, restarts, last will."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import AgentStats, GatewayAgent
from gateway.probes import Reading, SimulatedProbe
from gateway.publisher import MqttLink, reconnect_delay
from instrushare.protocol import StoredMessages, Topics, dumps
from instrushare.settings import MqttAddress
from tests.conftest import MQTT_URL
from tests.gateway.helpers import (
    FastClock,
    IngestStandIn,
    Recorder,
    Sent,
    assert_delivered,
    drive,
    make_config,
    set_ingest,
    wait_confirmed,
    wait_ready,
)
from tests.services import Mosquitto, TcpProxy, running

pytestmark = pytest.mark.usefixtures("fast_reconnect")


def confirm(agent: GatewayAgent, seqs: list[int]) -> None:
    """Confirm ``seqs`` to the agent as the platform would."""
    address = MqttAddress.from_url(agent.config.mqtt_url)
    platform = mqtt.Client(CallbackAPIVersion.VERSION2)
    platform.connect(address.host, address.port)
    platform.loop_start()
    gateway = agent.config.gateway_id
    platform.publish(Topics(agent.config.topic_prefix).stored(gateway), dumps(StoredMessages(
        v=1, gateway=gateway, seqs=seqs)), qos=1).wait_for_publish(5)
    platform.disconnect()
    platform.loop_stop()


def wait_for_birth(rec: Recorder, timeout: float = 15) -> dict[str, object]:
    rec.wait_for(lambda r: any(s["status"] == "online" for s in r.states()), timeout)
    return next(s for s in rec.states() if s["status"] == "online")


def test_a_message_leaves_the_outbox_only_once_the_platform_confirms_it(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker's PUBACK frees the window; the message stays until a confirmation names it,
    and goes out again when confirmations stall for ``confirm_timeout_s``, the log saying
    what to check (under MQTT 3.1.1 a broker ACL refusing the data looks the same)."""
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/+/data/+")
    set_ingest(mqtt_url, topic_prefix, "online", confirm=False)
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, mqtt_url, topic_prefix, confirm_timeout_s=1.0),
                         clock=clock)
    agent.start()
    try:
        wait_ready(agent)
        drive(agent, clock, 20)
        agent.flush()
        sent = agent.stats.enqueued
        rec.wait_for(lambda r: len(r.data()) == sent)
        deadline = time.monotonic() + 10
        while agent.stats.acked < sent:
            assert time.monotonic() < deadline, agent.stats
            time.sleep(0.01)
        assert (agent.stats.outbox_depth, agent.stats.confirmed) == (sent, 0)
        time.sleep(1.2)  # no confirmation for longer than confirm_timeout_s
        agent.poll(clock.tick())
        rec.wait_for(lambda r: len(r.data()) >= 2 * sent + 1)  # all again, and the new one
        assert [m.seq for m in rec.data()[sent:2 * sent]] == list(range(sent))
        assert (f"{sent} published message(s) unconfirmed for 1 s; publishing again from the"
                f" outbox head (check that an ingest worker runs with topic_prefix"
                f" '{topic_prefix}', and that the broker's ACL lets this gateway write its"
                ' topics: MQTT 3.1.1 does not say when it refuses one, mqtt_protocol = "5"'
                " would)") in caplog.text
        # the platform confirms everything: the outbox empties
        seqs = sorted({m.seq for m in rec.data()})
        confirm(agent, seqs)
        wait_confirmed(agent, len(seqs))
    finally:
        agent.stop()
        rec.close()


def test_a_confirmation_of_a_message_not_sent_deletes_nothing(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    """Another gateway under this id, or an outbox replaced, numbers other messages alike."""
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/+/data/+")
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, mqtt_url, topic_prefix), clock=clock)
    agent.start()
    try:
        wait_ready(agent, ready=False)  # no ingest online: everything is held
        drive(agent, clock, 20)
        agent.flush()
        held = agent.stats.outbox_depth
        confirm(agent, list(range(held)))
        time.sleep(0.5)  # applied as it arrives
        assert (agent.stats.confirmed, agent.stats.outbox_depth) == (0, held)
        set_ingest(mqtt_url, topic_prefix, "online")
        assert agent.wait_drained(10), agent.stats
        rec.wait_for(lambda r: len(r.first_arrivals()) == held)
    finally:
        agent.stop()
        rec.close()


def test_a_birth_tells_the_platform_what_the_outbox_dropped(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/+/state")
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, mqtt_url, topic_prefix, outbox_max_messages=3,
                                     max_samples_per_message=1), clock=clock)
    agent.start()
    try:
        assert wait_for_birth(rec)["dropped"] == 0
        drive(agent, clock, 10)  # no ingest online: all kept, but only three
        agent.flush()
        dropped = agent.stats.dropped_full
        assert dropped > 0
        agent.set_link(False)
        agent.set_link(True)
        rec.wait_for(lambda r: len([s for s in r.states() if s["status"] == "online"]) == 2)
        births = [s for s in rec.states() if s["status"] == "online"]
        assert births[-1]["dropped"] == dropped
        assert all(s.get("dropped") is None for s in rec.states() if s["status"] == "offline")
    finally:
        agent.stop()
        rec.close()


def test_every_message_arrives_in_order_with_original_content(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    rec = Recorder(mqtt_url, f"{topic_prefix}/#")
    set_ingest(mqtt_url, topic_prefix, "online")
    clock = FastClock()
    config = make_config(tmp_path, mqtt_url, topic_prefix, instruments=("xrd1", "nmr2"),
                         max_samples_per_message=7)
    agent = GatewayAgent(config, clock=clock)
    agent.start()
    wait_for_birth(rec)
    wait_ready(agent)
    sent: Sent = []
    drive(agent, clock, 300, sent=sent)
    agent.flush()
    assert agent.wait_drained(20), agent.stats
    stats = agent.stats
    agent.stop()
    rec.wait_for(lambda r: len(r.first_arrivals()) == stats.enqueued)
    firsts = rec.first_arrivals()
    assert [m.seq for m in firsts] == list(range(stats.enqueued))
    assert stats.seq == stats.enqueued - 1 and stats.acked == stats.enqueued
    for instrument in ("xrd1", "nmr2"):
        mine = [m for m in firsts if m.instrument == instrument]
        assert all(len(m.samples) <= 7 for m in mine)
        assert [(s.ts, s.power_w) for m in mine for s in m.samples] == sent
        assert not any(m.historical for m in mine)
        users = {s.user for m in mine for s in m.samples if s.power_w and s.power_w >= 40}
        assert users == {"alice"}
    # birth then offline state, same session number
    states = rec.states()
    assert [s["status"] for s in states] == ["online", "offline"]
    assert states[0]["bd_seq"] == states[1]["bd_seq"]
    assert states[0]["instruments"] == ["xrd1", "nmr2"]
    rec.close()


def test_data_is_held_while_no_ingest_is_online(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/#")
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, mqtt_url, topic_prefix), clock=clock)
    agent.start()
    wait_for_birth(rec)
    sent: Sent = []
    drive(agent, clock, 60, sent=sent)
    assert not agent.wait_drained(0.5)
    assert rec.data() == []
    held = agent.stats.outbox_depth
    assert held == agent.stats.enqueued > 0
    set_ingest(mqtt_url, topic_prefix, "online")
    assert agent.wait_drained(10)
    # data created while no ingest listened is flagged historical; fresh data is not
    drive(agent, clock, 30, sent=sent)
    agent.flush()
    assert agent.wait_drained(10)
    set_ingest(mqtt_url, topic_prefix, "offline")
    rec.wait_for(lambda r: len(r.first_arrivals()) == agent.stats.enqueued)
    wait_ready(agent, ready=False)  # the agent has seen the announcement before it polls again
    drive(agent, clock, 10)
    agent.flush()
    assert not agent.wait_drained(0.5)
    agent.stop()
    firsts = rec.first_arrivals()
    assert [m.historical for m in firsts] == [True] * held + [False] * (len(firsts) - held)
    assert_delivered(rec, sent, agent.config.gateway_id)
    rec.close()


def test_the_log_says_when_data_is_held_and_when_it_flows_again(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(GatewayAgent, "HOLD_QUIET_S", 0.3)
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, mqtt_url, topic_prefix), clock=clock)
    caplog.set_level("INFO", logger="gateway")
    agent.start()
    wait_ready(agent, ready=False)
    drive(agent, clock, 30)
    assert "holding" not in caplog.text  # not for a moment's wait
    time.sleep(0.4)
    drive(agent, clock, 1)
    held = agent.stats.outbox_depth
    assert re.search(r"holding data in the outbox for \d+ s \(no ingest worker online\);"
                     rf" {held} message\(s\) waiting \(check that an ingest worker runs with"
                     rf" topic_prefix '{topic_prefix}', and that the broker's ACL lets this"
                     rf" gateway read {topic_prefix}/ingest/\+/state\)", caplog.text)
    set_ingest(mqtt_url, topic_prefix, "online")
    assert agent.wait_drained(10)
    assert re.search(r"delivering again after \d+ s held", caplog.text)
    caplog.clear()
    agent.set_link(False)  # an outage its owner simulates is no news to it
    drive(agent, clock, 5)
    time.sleep(0.4)
    drive(agent, clock, 1)
    assert "holding" not in caplog.text
    agent.stop()


def test_link_outage_buffers_publishes_will_and_replays(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    rec = Recorder(mqtt_url, f"{topic_prefix}/#")
    set_ingest(mqtt_url, topic_prefix, "online")
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, mqtt_url, topic_prefix), clock=clock)
    agent.start()
    birth = wait_for_birth(rec)
    wait_ready(agent)
    sent: Sent = []
    drive(agent, clock, 40, sent=sent)
    agent.set_link(False)
    rec.wait_for(lambda r: any(s["status"] == "offline" for s in r.states()))
    will = next(s for s in rec.states() if s["status"] == "offline")
    assert will["bd_seq"] == birth["bd_seq"]
    before = len(rec.first_arrivals())
    drive(agent, clock, 40, sent=sent)
    assert agent.stats.outbox_depth > 0
    assert len(rec.first_arrivals()) == before
    agent.set_link(True)
    agent.flush()
    assert agent.wait_drained(15), agent.stats
    agent.stop()
    rec.wait_for(lambda r: len(r.first_arrivals()) == agent.stats.enqueued)
    assert_delivered(rec, sent, agent.config.gateway_id)
    assert any(m.historical for m in rec.first_arrivals())
    assert agent.stats.reconnects == 1
    # the new connection has a newer session number than the will it replaced
    births = [s for s in rec.states() if s["status"] == "online"]
    assert births[-1]["bd_seq"] > will["bd_seq"]
    rec.close()


def test_broker_restart_loses_nothing(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto], topic_prefix: str
) -> None:
    broker = mosquitto_factory()
    rec = Recorder(broker.url, f"{topic_prefix}/gw/#", persistent=True)
    set_ingest(broker.url, topic_prefix, "online")
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, broker.url, topic_prefix), clock=clock)
    agent.start()
    wait_for_birth(rec)
    sent: Sent = []
    drive(agent, clock, 50, sent=sent)
    broker.stop()
    drive(agent, clock, 200, sent=sent)  # polls go on while the broker is away
    assert agent.stats.outbox_depth > 0
    broker.start()
    agent.flush()
    assert agent.wait_drained(20), agent.stats
    stats = agent.stats
    agent.stop()
    rec.wait_for(lambda r: len(r.first_arrivals()) == stats.enqueued, timeout=20)
    assert_delivered(rec, sent, agent.config.gateway_id)
    assert stats.reconnects >= 1 and stats.outbox_depth == 0
    rec.close()


def test_restart_replays_the_outbox_and_continues_seq(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/#")
    clock = FastClock()
    config = make_config(tmp_path, mqtt_url, topic_prefix)
    first = GatewayAgent(config, clock=clock)
    first.start()
    wait_for_birth(rec)
    sent: Sent = []
    drive(first, clock, 100, sent=sent)
    first.stop()
    left = first.stats
    assert left.outbox_depth == left.enqueued > 0 and rec.data() == []
    with pytest.raises(RuntimeError, match="a stopped agent cannot start again"):
        first.start()  # it would never connect: its link has stopped for good

    second = GatewayAgent(config, clock=clock)
    second.start()
    assert second.stats.outbox_depth == left.outbox_depth
    set_ingest(mqtt_url, topic_prefix, "online")
    assert second.wait_drained(10)
    drive(second, clock, 20, sent=sent)
    second.flush()
    assert second.wait_drained(10)
    second.stop()
    assert second.stats.seq == left.seq + second.stats.enqueued
    rec.wait_for(lambda r: len(r.first_arrivals()) == left.enqueued + second.stats.enqueued)
    assert_delivered(rec, sent, config.gateway_id)
    bd = [s["bd_seq"] for s in rec.states() if s["status"] == "online"]
    assert bd == sorted(bd) and len(set(bd)) == len(bd) == 2
    rec.close()


def test_stats_are_one_consistent_snapshot(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    """The network thread acknowledges and deletes while another thread reads: every snapshot
    adds up (nothing is dropped here, so what is not confirmed is in the outbox)."""
    set_ingest(mqtt_url, topic_prefix, "online")
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, mqtt_url, topic_prefix,
                                     max_samples_per_message=1), clock=clock)
    snapshots: list[AgentStats] = []
    reading = threading.Event()

    def read() -> None:
        while not reading.is_set():
            snapshots.append(agent.stats)

    reader = threading.Thread(target=read)
    agent.start()
    try:
        wait_ready(agent)
        reader.start()
        drive(agent, clock, 300)
        wait_confirmed(agent, agent.stats.enqueued)
    finally:
        reading.set()
        agent.stop()
    reader.join()
    torn = [s for s in snapshots
            if s.outbox_depth + s.confirmed != s.enqueued or s.acked > s.published]
    assert len(snapshots) > 100 and torn == []


def test_last_will_marks_the_gateway_offline_when_the_connection_dies(
    tmp_path: Path, topic_prefix: str
) -> None:
    """The will has no ts (written at connect time, the ingest takes its receive time as
    going offline); the birth and the offline state of a clean stop are dated."""
    port = int(MQTT_URL.rsplit(":", 1)[1])
    rec = Recorder(MQTT_URL, f"{topic_prefix}/gw/+/state")
    with running(TcpProxy(port)) as proxy:
        url = f"mqtt://127.0.0.1:{proxy.port}"
        agent = GatewayAgent(make_config(tmp_path, url, topic_prefix))
        agent.start()
        birth = wait_for_birth(rec)
        proxy.down()
        rec.wait_for(lambda r: r.states()[-1]["status"] == "offline")
        will = rec.states()[-1]
        assert will["bd_seq"] == birth["bd_seq"] and will["gateway"] == agent.config.gateway_id
        assert will["ts"] is None and birth["ts"] is not None
        proxy.up()
        rec.wait_for(lambda r: r.states()[-1]["status"] == "online")
        assert rec.states()[-1]["bd_seq"] > will["bd_seq"]
        stopping = datetime.now(UTC)
        agent.stop()
        rec.wait_for(lambda r: r.states()[-1]["status"] == "offline")
        stopped = datetime.fromisoformat(rec.states()[-1]["ts"])
        assert abs(stopped - stopping) < timedelta(seconds=5)
    rec.close()


def test_large_backlog_drains_through_a_small_window(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/+/data/#")
    clock = FastClock()
    config = make_config(tmp_path, mqtt_url, topic_prefix, max_samples_per_message=1,
                         inflight_window=8)
    agent = GatewayAgent(config, clock=clock)
    agent.start()
    sent: Sent = []
    drive(agent, clock, 2000, sent=sent)
    agent.flush()
    backlog = agent.stats.outbox_depth
    assert backlog >= 2000
    peak = 0
    set_ingest(mqtt_url, topic_prefix, "online")
    start = time.monotonic()
    while agent.stats.outbox_depth:
        peak = max(peak, agent.stats.published - agent.stats.acked)
        assert time.monotonic() - start < 30, agent.stats
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    agent.stop()
    assert peak <= 8
    rec.wait_for(lambda r: len(r.first_arrivals()) == backlog)
    assert_delivered(rec, sent, agent.config.gateway_id)
    print(f"drained {backlog} messages through a window of 8 in {elapsed:.2f}s")
    rec.close()


def test_cli_runs_until_sigterm(tmp_path: Path, mqtt_url: str, topic_prefix: str) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        f'gateway_id = "gwcli"\nmqtt_url = "{mqtt_url}"\ntopic_prefix = "{topic_prefix}"\n'
        'outbox_path = "box.sqlite"\nsample_interval_s = 0.05\n'
        '[[instruments]]\nid = "xrd1"\nprobe = { kind = "simulated" }\n'
    )
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/+/state")
    code = "import typer; from gateway.cli import gateway; typer.run(gateway)"
    proc = subprocess.Popen([sys.executable, "-c", code, "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        rec.wait_for(lambda r: bool(r.states()) and r.states()[-1]["status"] == "online")
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    rec.wait_for(lambda r: r.states()[-1]["status"] == "offline")
    assert (tmp_path / "box.sqlite").exists()
    rec.close()


def test_the_state_at_start_goes_out_live(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    """The first poll waits for the connection, so the first message is not historical."""
    set_ingest(mqtt_url, topic_prefix, "online")
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/#")
    agent = GatewayAgent(make_config(tmp_path, mqtt_url, topic_prefix, sample_interval_s=0.05))
    stop = threading.Event()
    agent.start()
    runner = threading.Thread(target=agent.run_forever, args=(stop,))
    runner.start()
    try:
        rec.wait_for(lambda r: bool(r.first_arrivals()))
    finally:
        stop.set()
        runner.join(10)
        agent.stop()
    first = rec.first_arrivals()[0]
    assert (first.seq, first.historical) == (0, False)
    rec.close()


def test_only_a_live_ingest_announcement_opens_publishing(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    """A retained "online" may predate a broker restart that lost the worker's subscription."""
    announcer = IngestStandIn(mqtt_url, topic_prefix, "w1", interval=3600)  # one retained copy
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/+/data/+")
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, mqtt_url, topic_prefix), clock=clock)
    agent.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # connected and subscribed, retained copy received
            drive(agent, clock, 1)
            time.sleep(0.05)
        assert agent.link.connected and not agent.link.can_publish
        assert rec.data() == [] and agent.stats.outbox_depth > 0
        announcer.client.publish(announcer.topic, announcer.payload, qos=1)  # live, not retained
        wait_ready(agent)
        agent.flush()
        assert agent.wait_drained(10)
        rec.wait_for(lambda r: len(r.first_arrivals()) == agent.stats.enqueued)
    finally:
        agent.stop()
        announcer.stop("offline")
        rec.close()


def test_two_gateways_with_one_id_back_off_and_the_log_says_why(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each connection takes the other's session over; without backoff they would reconnect
    in a tight loop forever."""
    monkeypatch.setattr(MqttLink, "RECONNECT_MIN_DELAY", 0.05)
    monkeypatch.setattr(MqttLink, "RECONNECT_MAX_DELAY", 2.0)
    caplog.set_level("WARNING", logger="gateway")
    twins = [GatewayAgent(make_config(tmp_path, mqtt_url, topic_prefix,
                                      outbox_path=tmp_path / f"{name}.sqlite"))
             for name in ("a", "b")]
    for twin in twins:
        twin.start()
    time.sleep(4)
    connects = sum(twin.link.connects for twin in twins)
    for twin in twins:
        twin.stop()
    assert 2 < connects < 25  # at 0.05 s without backoff: well over a hundred
    gateway = twins[0].config.gateway_id
    assert f"another client may be connected with client id '{gateway}'" in caplog.text


def test_readings_the_protocol_refuses_are_dropped_and_the_rest_delivered(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Logged once when they begin, not at every poll, and once when valid ones come back."""
    rec = Recorder(mqtt_url, f"{topic_prefix}/#")
    set_ingest(mqtt_url, topic_prefix, "online")
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, mqtt_url, topic_prefix, instruments=("xrd1",)),
                         clock=clock)
    caplog.set_level("INFO", logger="gateway")
    agent.start()
    wait_ready(agent)
    probe = agent.probes["xrd1"]
    assert isinstance(probe, SimulatedProbe)
    readings = [
        Reading(power_w=100.0, metrics={"temp_c": 21.5}),
        Reading(power_w=100.0, metrics={"temp_c": float("nan")}),
        Reading(power_w=100.0, metrics={"temp_c": float("inf")}),
        Reading(power_w=float("nan")),
        Reading(power_w=float("-inf")),
        Reading(power_w=-3.0),
        Reading(power_w=100.0, user="not an id"),
        Reading(power_w=100.0, metrics={"temp_c": 22.0}),
    ]
    times = []
    for reading in readings:
        probe.set(reading)
        times.append(clock.tick())
        agent.poll(times[-1])
    agent.flush()
    assert agent.wait_drained(20), agent.stats
    agent.stop()
    rec.wait_for(lambda r: sum(len(m.samples) for m in r.first_arrivals()) >= 2)
    samples = [s for m in rec.first_arrivals() for s in m.samples]
    assert [(s.ts, s.metrics) for s in samples] == [
        (times[0], {"temp_c": 21.5}), (times[-1], {"temp_c": 22.0})
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w for w in warnings if "xrd1" in w] == [
        f"gateway {agent.config.gateway_id}: instrument xrd1 cannot be read: reading ignored:"
        " metrics.temp_c nan: Input should be a finite number"]
    assert caplog.text.count("instrument xrd1 readable again") == 1
    rec.close()


def test_reconnect_waits_double_within_their_bounds_and_spread() -> None:
    """From 1 to 60 s, as gateway.md says, however long the broker stays away; drawn, so a
    fleet that lost it together does not knock together."""
    waits = {n: [reconnect_delay(n, 1.0, 60.0) for _ in range(200)] for n in (*range(1, 30), 5000)}
    assert all(1.0 <= w <= 60.0 for drawn in waits.values() for w in drawn)
    assert max(waits[1]) <= 2.0 and min(waits[29] + waits[5000]) >= 30.0
    assert len({round(w, 3) for w in waits[29]}) > 100
