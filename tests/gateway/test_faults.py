"""The gateway under the failures a lab PC meets besides outages: a full disk, a damaged
outbox, a second agent on one outbox, clock steps, probes that hang or break, signals."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from gateway import GatewayAgent
from gateway.outbox import Builder, Entry, Outbox
from gateway.probes import Reading, SimulatedProbe
from instrushare.signals import REPEAT_WINDOW_S
from tests.gateway.helpers import (
    T0,
    FastClock,
    Recorder,
    Sent,
    assert_delivered,
    drive,
    fill,
    make_config,
    set_ingest,
    wait_confirmed,
    wait_ready,
)
from tests.services import Mosquitto, free_port

pytestmark = pytest.mark.usefixtures("fast_reconnect")


def _until(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the timeout"
        time.sleep(0.02)


def test_a_full_disk_keeps_new_messages_in_memory_until_space_returns(
    small_disk: Path, mqtt_url: str, topic_prefix: str, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Polls go on, the outbox's messages are still delivered (their deletes wait), the log
    says it once; with space back, everything arrives once, in seq order, none dropped."""
    caplog.set_level("DEBUG", logger="gateway")
    monkeypatch.setattr(GatewayAgent, "STORE_RETRY_S", 3600)  # only flush stores them
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/+/data/+")
    clock = FastClock()
    agent = GatewayAgent(make_config(small_disk, mqtt_url, topic_prefix,
                                     max_samples_per_message=1), clock=clock)
    agent.start()
    sent: Sent = []
    drive(agent, clock, 10, sent=sent)  # no ingest online: stored, held
    stored = agent.stats.outbox_depth
    filler = fill(small_disk)
    drive(agent, clock, 30, sent=sent)
    assert agent.stats.enqueued == stored
    set_ingest(mqtt_url, topic_prefix, "online")  # delivers and confirms what is stored
    rec.wait_for(lambda r: len(r.first_arrivals()) == stored)
    # every confirmation has arrived, and every delete failed
    _until(lambda: any(f"{stored} confirmed one(s) not deleted yet" in r.getMessage()
                       for r in list(caplog.records)))
    assert agent.stats.acked == stored
    assert agent.stats.outbox_depth == stored and agent.stats.confirmed == 0
    filler.unlink()
    drive(agent, clock, 5, sent=sent)  # deleted now, with no new confirmation
    assert (agent.stats.confirmed, agent.stats.outbox_depth) == (stored, 0)
    agent.flush()  # stores them at once
    assert agent.wait_drained(15), agent.stats
    agent.stop()
    rec.wait_for(lambda r: len(r.first_arrivals()) == agent.stats.enqueued)
    assert_delivered(rec, sent, agent.config.gateway_id)
    assert (agent.stats.dropped_full, agent.stats.outbox_depth) == (0, 0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "cannot write the outbox" in w]) == 1, warnings
    assert "the outbox can be written again" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    rec.close()


def test_messages_in_memory_are_tried_again_every_few_seconds_and_while_waiting_to_drain(
    small_disk: Path, mqtt_url: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not at every poll (each try encodes them all); ``wait_drained`` tries too, so a caller
    that only waits (the fleet simulator, after one flush) sees them delivered."""
    monkeypatch.setattr(GatewayAgent, "STORE_RETRY_S", 0.2)
    tries: list[float] = []
    append = Outbox.append

    def timed(self: Outbox, builders: Sequence[Builder], *, now: float) -> list[int]:
        tries.append(time.monotonic())
        return append(self, builders, now=now)

    monkeypatch.setattr(Outbox, "append", timed)
    set_ingest(mqtt_url, topic_prefix, "online")
    clock = FastClock()
    agent = GatewayAgent(make_config(small_disk, mqtt_url, topic_prefix,
                                     max_samples_per_message=1), clock=clock)
    agent.start()
    wait_ready(agent)
    filler = fill(small_disk)
    polls, began = 0, time.monotonic()
    while time.monotonic() - began < 1:  # few messages: each delete grows the WAL file
        agent.poll(clock.tick())
        polls += 1
        time.sleep(0.05)
    gaps = [later - earlier for earlier, later in pairwise(tries)]
    assert len(tries) >= 2 and min(gaps) >= 0.2, (polls, gaps)
    assert agent.stats.enqueued == 0
    filler.unlink()
    wait_confirmed(agent, polls, timeout=15)  # no poll, no flush
    assert (agent.stats.enqueued, agent.stats.dropped_full) == (polls, 0)
    agent.stop()


def test_messages_still_in_memory_at_stop_are_counted_as_dropped(
    small_disk: Path, mqtt_url: str, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """In memory, and in the outbox if it can be written by then (a full disk: not)."""
    clock = FastClock()
    config = make_config(small_disk, mqtt_url, topic_prefix, max_samples_per_message=1)
    agent = GatewayAgent(config, clock=clock)
    agent.start()
    for _ in range(2):
        agent.poll(clock.tick())
    filler = fill(small_disk)
    for _ in range(7):
        agent.poll(clock.tick())
    agent.stop()
    assert (agent.stats.enqueued, agent.stats.dropped_full) == (2, 7)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and re.fullmatch(
        rf"gateway {config.gateway_id}: 7 message\(s\) lost: the outbox could not be written"
        r" \(7 dropped when full in all; count (not )?saved\)", errors[0]), errors
    filler.unlink()
    with Outbox(config.outbox_path, max_messages=100, max_age_s=3600) as box:
        assert box.dropped_full == (0 if "not saved" in errors[0] else 7)


def test_messages_beyond_what_memory_keeps_are_dropped_and_counted(
    small_disk: Path, mqtt_url: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GatewayAgent, "UNSTORED_MAX", 5)
    clock = FastClock()
    monkeypatch.setattr(GatewayAgent, "STORE_RETRY_S", 0)  # tried again at every poll
    config = make_config(small_disk, mqtt_url, topic_prefix, max_samples_per_message=1)
    agent = GatewayAgent(config, clock=clock)
    agent.start()
    filler = fill(small_disk)
    drive(agent, clock, 12)
    filler.unlink()
    drive(agent, clock, 1)
    agent.stop()
    stats = agent.stats  # 13 messages: the 5 kept in memory and the new one stored
    assert stats.enqueued + stats.dropped_full == 13 and stats.dropped_full >= 6
    assert stats.seq == stats.enqueued - 1  # no gap in seq
    again = GatewayAgent(config, clock=clock)
    again.start()
    assert again.stats.dropped_full == stats.dropped_full  # saved, for the births
    again.stop()


class HangingProbe:
    """A meter that stops answering in the middle of a read; ``close`` would wait for it too."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.reads = 0

    def read(self) -> Reading:
        self.reads += 1
        self.release.wait()
        return Reading(power_w=100.0)

    def close(self) -> None:
        self.release.wait()


class BrokenProbe:
    """A probe with a bug: raises something other than ProbeError at every read."""

    def read(self) -> Reading:
        raise KeyError("register map")


@pytest.fixture
def hanging() -> Iterator[HangingProbe]:
    probe = HangingProbe()
    yield probe
    probe.release.set()


def _in_thread(fn: Callable[[], object], timeout: float) -> None:
    """Run ``fn`` and fail, rather than hang the tests, if it does not return in time."""
    runner = threading.Thread(target=fn, daemon=True)
    runner.start()
    runner.join(timeout)
    assert not runner.is_alive(), "still running: held up"


def test_a_probe_that_hangs_or_breaks_holds_up_no_other_instrument(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, hanging: HangingProbe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="gateway")
    clock = FastClock()
    config = make_config(tmp_path, mqtt_url, topic_prefix, instruments=("xrd1", "hung", "bug"),
                         sample_interval_s=0.3, max_samples_per_message=1)
    agent = GatewayAgent(config, clock=clock, probes={
        "xrd1": SimulatedProbe(Reading(power_w=10.0)), "hung": hanging, "bug": BrokenProbe()})
    agent.start()
    began = time.monotonic()

    def polls() -> None:
        for _ in range(20):
            agent.poll(clock.tick())

    _in_thread(polls, timeout=10)
    assert time.monotonic() - began < 4  # only the first poll waited for it, 0.3 s (not 6 s)
    assert hanging.reads == 1  # not read again while it hangs
    assert agent.stats.enqueued == 20  # one message per poll, all of xrd1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    gateway = agent.config.gateway_id
    assert len(warnings) == 2, warnings  # once each, not at every poll
    assert re.fullmatch(rf"gateway {gateway}: instrument hung cannot be read: {hanging!r}: no"
                        r" answer for \d+ s; not read again until it answers", warnings[0])
    assert warnings[1].startswith(f"gateway {gateway}: instrument bug cannot be read: ")
    assert warnings[1].endswith(" failed: KeyError: 'register map'")
    hanging.release.set()  # it answers at last: that late reading is dropped, the next is used

    def read_again() -> bool:
        agent.poll(clock.tick())
        return f"gateway {gateway}: instrument hung readable again" in caplog.text

    _until(read_again)  # the late read ends in its own time, then a poll reads it again
    assert hanging.reads >= 2
    agent.stop()


class AnsweringProbe:
    """A probe read in a thread of its own (it is no SimulatedProbe) that always answers."""

    def read(self) -> Reading:
        return Reading(power_w=10.0)


def test_a_read_whose_thread_cannot_start_fails_alone_and_is_tried_again(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Out of threads (or memory) at one poll: that instrument is skipped, the others are
    read, and it is read again at the next poll."""
    caplog.set_level("INFO", logger="gateway")
    start = threading.Thread.start
    refused: list[str] = []

    def start_but_once(thread: threading.Thread) -> None:
        if thread.name == "probe-xrd1" and not refused:
            refused.append(thread.name)
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_but_once)
    clock = FastClock()
    probes = {"xrd1": AnsweringProbe(), "xrd2": AnsweringProbe()}
    config = make_config(tmp_path, mqtt_url, topic_prefix, instruments=tuple(probes),
                         max_samples_per_message=1)
    agent = GatewayAgent(config, clock=clock, probes=probes)
    agent.start()
    agent.poll(clock.tick())
    assert (refused, agent.stats.enqueued) == (["probe-xrd1"], 1)  # xrd2's message
    gateway = config.gateway_id
    assert (f"gateway {gateway}: instrument xrd1 cannot be read: {probes['xrd1']!r}: cannot"
            " start a thread to read it: can't start new thread") in caplog.text
    agent.poll(clock.tick())
    assert agent.stats.enqueued == 3
    assert f"gateway {gateway}: instrument xrd1 readable again" in caplog.text
    agent.stop()


def test_stop_is_prompt_while_probes_hang(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The poll's wait for them ends when told to stop, however many hang, and their close,
    which would hang too, is not called."""
    monkeypatch.setattr(GatewayAgent, "START_WAIT_S", 0)  # no ingest online: poll at once
    hung = {f"hung{i}": HangingProbe() for i in range(40)}
    config = make_config(tmp_path, mqtt_url, topic_prefix, instruments=("xrd1", *hung),
                         sample_interval_s=60)
    agent = GatewayAgent(config, probes={"xrd1": SimulatedProbe(), **hung})
    agent.start()
    try:
        stop = threading.Event()
        runner = threading.Thread(target=agent.run_forever, args=(stop,), daemon=True)
        runner.start()
        _until(lambda: all(probe.reads for probe in hung.values()))
        time.sleep(0.2)
        stopping = time.monotonic()
        stop.set()
        runner.join(10)
        assert not runner.is_alive()
        assert time.monotonic() - stopping < 2  # not 0.1 s for each probe left (4 s)
        _in_thread(agent.stop, timeout=10)
        assert time.monotonic() - stopping < 10  # with the offline state's publish
    finally:
        for probe in hung.values():
            probe.release.set()


def test_a_clock_set_back_keeps_messages_flowing_in_seq_order(
    tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    """An NTP correction of an hour back: the open message still closes after
    publish_interval_s of polls, seq keeps rising, and samples carry the corrected time."""
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/+/data/+")
    set_ingest(mqtt_url, topic_prefix, "online")
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, mqtt_url, topic_prefix), clock=clock)
    agent.start()
    wait_ready(agent)
    probe = agent.probes["xrd1"]
    assert isinstance(probe, SimulatedProbe)
    probe.set(Reading(power_w=100.0, user="alice"))
    agent.poll(clock.tick())  # the state at start: a message of its own
    for _ in range(2):
        agent.poll(clock.tick())
    clock.now -= timedelta(hours=1)
    for _ in range(4):
        agent.poll(clock.tick())
    assert agent.stats.enqueued == 2  # 300 s of polls: closed, as without the step
    assert agent.wait_drained(10), agent.stats
    rec.wait_for(lambda r: len(r.first_arrivals()) == 2)
    messages = rec.first_arrivals()
    assert [m.seq for m in messages] == [0, 1]
    assert [s.ts - T0 for s in messages[1].samples] == [
        timedelta(seconds=s) for s in (120, 180, 240 - 3600, 300 - 3600, 360 - 3600, 420 - 3600)]
    agent.stop()
    rec.close()


CONFIG = """gateway_id = "{gateway}"
mqtt_url = "{url}"
topic_prefix = "{prefix}"
outbox_path = "box.sqlite"
sample_interval_s = 0.05
publish_interval_s = 0.05
{extra}
[[instruments]]
id = "xrd1"
probe = {{ kind = "simulated" }}
"""


def _gateway(config: Path, *, runner: Sequence[str] = (),
             own_group: bool = False) -> subprocess.Popen[str]:
    """The CLI, logging at DEBUG, its first poll not waiting for the broker (START_WAIT_S);
    started by ``runner`` (a command taking the command to run), in a process group of its
    own if ``own_group``."""
    code = ("import logging, typer; from gateway.cli import gateway; from gateway import"
            " GatewayAgent; logging.basicConfig(level=logging.DEBUG); GatewayAgent.START_WAIT_S"
            " = 0; typer.run(gateway)")
    return subprocess.Popen([*runner, sys.executable, "-c", code, "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=own_group)


def _logged(proc: subprocess.Popen[str], text: str) -> None:
    """Once the gateway has logged a line containing ``text``."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if text in line:
            return
    raise AssertionError(f"the gateway ended (exit code {proc.wait()})")


def _polling(proc: subprocess.Popen[str]) -> None:
    """Once the gateway has started, and polled for a while (20 polls)."""
    _logged(proc, " watching 1 instrument(s)")
    time.sleep(1)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _write_config(tmp_path: Path, url: str, prefix: str, extra: str = "") -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG.format(gateway=f"gw-{prefix}", url=url, prefix=prefix, extra=extra))
    return path


def _kept(outbox: Path) -> tuple[set[int], int]:
    """The seqs in the outbox file, and the next seq it would hand out."""
    with closing(sqlite3.connect(outbox)) as db:
        kept = {seq for (seq,) in db.execute("SELECT seq FROM message")}
        (next_seq,) = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return kept, int(next_seq)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_broker_is_unreachable_stops_at_once_keeping_the_outbox(
    tmp_path: Path, topic_prefix: str, sig: signal.Signals,
    processes: list[subprocess.Popen[str]],
) -> None:
    proc = _gateway(_write_config(tmp_path, f"mqtt://127.0.0.1:{free_port()}", topic_prefix))
    processes.append(proc)
    _polling(proc)
    stopping = time.monotonic()
    proc.send_signal(sig)
    assert proc.wait(10) == 0, proc.communicate()[0]
    assert time.monotonic() - stopping < 3
    kept, next_seq = _kept(tmp_path / "box.sqlite")
    assert kept == set(range(next_seq)) and next_seq > 0  # every message, pending ones too


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_exits_at_once_while_the_stop_waits_for_the_broker(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto], topic_prefix: str,
    sig: signal.Signals, processes: list[subprocess.Popen[str]],
) -> None:
    """The broker, connected, stops answering (a stopped process): the stop would wait
    STOP_TIMEOUT_S (5 s) for it to take the offline state; a second signal ends that wait."""
    broker = mosquitto_factory()
    assert broker.proc is not None
    proc = _gateway(_write_config(tmp_path, broker.url, topic_prefix))
    processes.append(proc)
    _logged(proc, f" connected to 127.0.0.1:{broker.port}")  # before or after it says watching
    time.sleep(1)  # polling
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        stopping = time.monotonic()
        proc.send_signal(sig)
        _logged(proc, f"received {sig.name}, stopping")
        time.sleep(REPEAT_WINDOW_S + 0.2)  # into the wait for the broker, not a repeat
        proc.send_signal(sig)
        assert proc.wait(10) == 128 + sig
        assert time.monotonic() - stopping < 4
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    assert (f"received {sig.name} again, exiting at once: messages not yet delivered stay in"
            f" the outbox {tmp_path / 'box.sqlite'}") in proc.communicate()[0]
    kept, next_seq = _kept(tmp_path / "box.sqlite")
    assert kept == set(range(next_seq)) and next_seq > 0  # no ingest online: none was sent


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_sent_to_the_gateway_and_then_its_group_is_one_request_to_stop(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto], topic_prefix: str,
    sig: signal.Signals, processes: list[subprocess.Popen[str]],
) -> None:
    """As ``timeout`` and supervisors send it, the copy arriving once the stop has begun (it
    waits for a broker that stopped answering): the stop is clean all the same."""
    broker = mosquitto_factory()
    assert broker.proc is not None
    proc = _gateway(_write_config(tmp_path, broker.url, topic_prefix), own_group=True)
    processes.append(proc)
    _logged(proc, f" connected to 127.0.0.1:{broker.port}")
    time.sleep(1)  # polling
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        proc.send_signal(sig)
        _logged(proc, f"received {sig.name}, stopping")
        os.killpg(proc.pid, sig)
        assert proc.wait(15) == 0, proc.communicate()[0]
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    out = proc.communicate()[0]
    assert f"received {sig.name} again " in out and "s later: the same request" in out
    assert f"gateway gw-{topic_prefix} stopped (" in out


def test_a_gateway_run_by_timeout_stops_cleanly(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, processes: list[subprocess.Popen[str]],
) -> None:
    """``timeout`` signals the gateway and then its process group: one request to stop.
    ``--preserve-status``: its exit code is the gateway's, not 124."""
    proc = _gateway(_write_config(tmp_path, mqtt_url, topic_prefix),
                    runner=("timeout", "--preserve-status", "-s", "TERM", "3"))
    processes.append(proc)
    assert proc.wait(20) == 0, proc.communicate()[0]
    out = proc.communicate()[0]
    assert "received SIGTERM, stopping" in out and "exiting at once" not in out
    assert f"gateway gw-{topic_prefix} stopped (" in out


def test_a_signal_during_replay_stops_at_once_and_what_is_unconfirmed_stays(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, processes: list[subprocess.Popen[str]],
) -> None:
    """A backlog is replaying, one message at a time, when the signal comes: the gateway
    stops within its offline-state wait, and no message the platform did not confirm (here:
    none) has left the outbox."""
    config = _write_config(tmp_path, mqtt_url, topic_prefix, extra="inflight_window = 1")
    backlog = 20_000
    gateway = f"gw-{topic_prefix}"
    with Outbox(tmp_path / "box.sqlite", max_messages=backlog, max_age_s=3600) as box:
        entry = Entry(f"{topic_prefix}/gw/{gateway}/data/xrd1", b"{}", time.time())
        box.append([lambda seq: entry] * backlog, now=time.time())
    set_ingest(mqtt_url, topic_prefix, "online", confirm=False)
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/+/data/+")
    proc = _gateway(config)
    processes.append(proc)
    rec.wait_for(lambda r: len(r.snapshot()) > 100)
    stopping = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, proc.communicate()[0]
    assert time.monotonic() - stopping < 6
    assert len(rec.snapshot()) < backlog  # it was replaying
    kept, next_seq = _kept(tmp_path / "box.sqlite")
    assert kept == set(range(next_seq)) and next_seq > backlog
    rec.close()


def test_a_second_gateway_on_one_outbox_is_refused(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, processes: list[subprocess.Popen[str]],
) -> None:
    """Before it connects: its client id would take the first one's connection over."""
    config = _write_config(tmp_path, mqtt_url, topic_prefix)
    first = _gateway(config)
    processes.append(first)
    _polling(first)
    second = _gateway(config)
    processes.append(second)
    assert second.wait(15) == 2
    assert second.communicate()[0].endswith(
        f"error: cannot open outbox {tmp_path / 'box.sqlite'}: another gateway agent has it"
        f" open (outbox_path in {config})\n")
    assert first.poll() is None


def test_a_damaged_outbox_stops_the_gateway_at_start_naming_the_file(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, processes: list[subprocess.Popen[str]],
) -> None:
    config = _write_config(tmp_path, mqtt_url, topic_prefix)
    outbox = tmp_path / "box.sqlite"
    outbox.write_bytes(b"\x00garbage" * 1000)
    proc = _gateway(config)
    processes.append(proc)
    assert proc.wait(15) == 2
    output = proc.communicate()[0]
    assert output.startswith(f"error: cannot open outbox {outbox}: file is not a database: it"
                             " is damaged or not an outbox. It is left as it is: move it")
    assert output.endswith(f"(outbox_path in {config})\n")
    assert outbox.read_bytes() == b"\x00garbage" * 1000


def test_a_port_that_is_no_mqtt_broker_is_said_so(
    tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """A web server, or a TLS listener given mqtt://, takes the connection and never answers
    as a broker: the warning says to check the port and the scheme, not a keep-alive."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def hang_up() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = server.accept()
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                    conn.close()

        threading.Thread(target=hang_up, daemon=True).start()
        caplog.set_level("WARNING", logger="gateway")
        agent = GatewayAgent(make_config(tmp_path, f"mqtt://127.0.0.1:{port}", topic_prefix))
        agent.start()
        try:
            deadline = time.monotonic() + 10
            while "no MQTT answer" not in caplog.text:
                assert time.monotonic() < deadline, caplog.text
                time.sleep(0.05)
        finally:
            agent.stop()
    assert (f"no MQTT answer from 127.0.0.1:{port} (" in caplog.text
            and "check that this port is the broker's MQTT listener" in caplog.text)
