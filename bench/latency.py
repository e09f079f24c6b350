"""Publish-to-visible latency at a steady message rate, and the ingest worker's memory;
prints one JSON line.

Setup, private to the run and removed afterwards: a fresh migrated database holding a
simulated fleet of ``--instruments`` (device_sim's fleet: one gateway per instrument),
mosquitto on a free port, and ``instrushare ingest`` and ``instrushare api`` as subprocesses
configured from the environment, as in production. Data is published only once the ingest's
retained state says ``online``, as gateways do.

Load: one paho publisher (MQTT 3.1.1, QoS 1, no in-flight limit, as the gateway agent) sends
single-sample live messages round robin over the instruments at ``--rate`` for
``--duration`` seconds, paced on a clock (message k is due at t0 + k / rate), each sample
stamped with the time it is sent, so every instrument's samples increase and its gateway's
``seq`` counts its messages. The achieved rate and the publisher's lag behind its schedule
are reported; at the end every message must be stored exactly once (else the run fails).

Probes: after ``--warmup`` seconds, every ``--probe-interval`` one scheduled message carries
a unique ``power_w`` instead (its slot, so the rate is unchanged). A poller asks
``GET /instruments/{id}/detail`` (keep-alive, one request in flight) about the oldest probe
not yet seen, every ``--poll-interval``, until the status shows that power or a sample at or
after the probe's time; latency = response received - publish. Polling only the oldest keeps
the API's extra load at one request per interval: one worker commits batches in arrival
order, so a newer probe is not visible before an older one, and were it so it would be
measured late, never early. The figure includes up to one poll interval of resolution.

Baselines in the same run: a bare paho subscriber to the probed instruments' topics receives
the very same probe messages from the same broker (publish -> delivery latency), and the
ingest's resident memory (psutil RSS) while idle before the load; during the load RSS is
sampled every 0.5 s until everything is stored. Also reported, to tell where the time goes:
publish -> the worker's receive time of each probe (``ingested_message.received_at``), the
worker's mean batch size and write time (its Prometheus metrics), its CPU use, the API's
request time and the machine's load average.

    python bench/latency.py [--instruments 3000] [--rate 3000] [--duration 30]

The services inherit the environment, so ``INSTRUSHARE_BATCH_MAX_DELAY_S=0.05 python
bench/latency.py`` measures another ingest setting.

Bars (docs/ingest.md): p99 < 1 s at 3,000 messages/s; ingest RSS < 200 MB. Missing a bar is
reported, not an error. Needs mosquitto on PATH and PostgreSQL at TEST_PG_ADMIN_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psutil
import psycopg
from _args import positive
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families
from psycopg import conninfo, sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_sim.fleet import build_fleet
from device_sim.registry import register_fleet
from instrushare.db import migrate
from instrushare.protocol import Topics
from monitor_api import ApiSettings
from monitor_api.auth import Role
from monitor_api.cli import create_token
from tests.services import Mosquitto, free_port

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LATENCY_BAR_MS = 1000.0
MEMORY_BAR_MB = 200.0
PROBE_POWER = 100_000.0
"""Probe j reports PROBE_POWER + j watts; the load stays far below."""
PROBE_TIMEOUT_S = 15.0
RSS_EVERY_S = 0.5
MB = 1024 * 1024


@dataclass(slots=True)
class Probe:
    slot: int
    instrument: str
    gateway: str
    seq: int
    power: float
    sent: float = math.nan
    ts: datetime | None = None
    delivered: float = math.nan
    """When the bare subscriber got it (broker baseline)."""
    visible: float = math.nan
    superseded: bool = False
    """Seen through a later sample of the instrument (the probe's own power was overwritten)."""


@dataclass(frozen=True, slots=True)
class Target:
    instrument: str
    gateway: str
    state_running: bool
    power: float
    user: str


def _payload(t: Target, seq: int, now: float, *,
             power: float | None = None) -> tuple[bytes, datetime]:
    """A protocol v1 DataMessage as compact JSON, built by hand: pydantic costs ~20 us each."""
    ts = datetime.fromtimestamp(now, UTC)
    text = ts.isoformat(timespec="microseconds").replace("+00:00", "Z")
    run = t.state_running
    user = f'"{t.user}"' if run else "null"
    watts = (t.power + seq % 7) if power is None else power
    body = (
        f'{{"v":1,"gateway":"{t.gateway}","instrument":"{t.instrument}","seq":{seq},'
        f'"bd_seq":1,"created_at":"{text}","historical":false,"samples":[{{"ts":"{text}",'
        f'"state":"{"running" if run else "idle"}","power_w":{watts!r},"user":{user},'
        f'"metrics":{{}}}}],"events":[]}}'
    )
    return body.encode(), ts


def _client(role: str) -> mqtt.Client:
    """A plain MQTT 3.1.1 client, as the gateway agent uses."""
    return mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                       client_id=f"bench-{role}-{uuid.uuid4().hex[:6]}")


class Publisher:
    """Sends the paced load and the probes in their slots (one thread, one connection)."""

    def __init__(self, *, port: int, topics: Topics, targets: list[Target],
                 probes: dict[int, Probe], rate: float, duration: float) -> None:
        self._topics, self._targets, self._probes = topics, targets, probes
        self._rate, self._total = rate, int(rate * duration)
        self.sent = 0
        self.acked = 0
        self.started = self.finished = math.nan
        self.lags: list[float] = []
        self._client = _client("pub")
        self._client.max_inflight_messages_set(0)
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _on_publish(self, *_args: Any) -> None:
        self.acked += 1

    def run(self) -> None:
        publish, data = self._client.publish, self._topics.data
        targets, n, probes = self._targets, len(self._targets), self._probes
        self.started = t0 = time.time()
        for k in range(self._total):
            due = t0 + k / self._rate
            now = time.time()
            if now < due:
                time.sleep(due - now)
                now = time.time()
            self.lags.append(now - due)
            target, seq = targets[k % n], k // n + 1
            probe = probes.get(k)
            if probe is None:
                payload, _ = _payload(target, seq, now)
            else:
                payload, probe.ts = _payload(target, seq, now, power=probe.power)
                probe.sent = now
            publish(data(target.gateway, target.instrument), payload, qos=1)
            self.sent += 1
        self.finished = time.time()

    def close(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.acked < self.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        self._client.disconnect()
        self._client.loop_stop()


class BrokerWatcher:
    """Bare paho subscriber to the probed topics: the broker-only latency of the same probes."""

    def __init__(self, *, port: int, topics: Topics, probes: list[Probe]) -> None:
        self._by_key = {(p.gateway, p.seq): p for p in probes}
        wanted = sorted({topics.data(p.gateway, p.instrument) for p in probes})
        ready = threading.Event()
        self._client = _client("sub")
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_a: ready.set()
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        if wanted:
            self._client.subscribe([(t, 1) for t in wanted])
            if not ready.wait(10):
                raise TimeoutError("the baseline subscriber was not subscribed within 10 s")

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        doc = json.loads(msg.payload)
        probe = self._by_key.get((doc["gateway"], doc["seq"]))
        if probe is not None:
            probe.delivered = now

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def poll_probes(*, api: httpx.Client, probes: list[Probe], interval: float,
                stop: threading.Event, requests: list[float],
                errors: list[BaseException]) -> None:
    """Poll the oldest probe not yet visible until the API shows it (or gives up); the
    duration of every request goes to ``requests``, a failure to ``errors``."""
    try:
        _poll(api, probes, interval, stop, requests)
    except Exception as exc:  # handed to the main thread, which fails the run
        errors.append(exc)


def _poll(api: httpx.Client, probes: list[Probe], interval: float, stop: threading.Event,
          requests: list[float]) -> None:
    for probe in probes:
        while math.isnan(probe.sent):  # not published yet
            if stop.wait(0.002):
                return
        while time.time() - probe.sent < PROBE_TIMEOUT_S:
            asked = time.time()
            r = api.get(f"/instruments/{probe.instrument}/detail")
            now = time.time()
            requests.append(now - asked)
            r.raise_for_status()
            status = r.json()["status"]
            last = status["last_ts"]
            if status["power_w"] == probe.power:
                probe.visible = now
                break
            if last is not None and probe.ts and datetime.fromisoformat(last) >= probe.ts:
                probe.visible, probe.superseded = now, True
                break
            time.sleep(interval)


class RssSampler:
    """The ingest process's resident memory every ``RSS_EVERY_S`` in a thread."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._cpu0 = self._cpu()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _cpu(self) -> float:
        t = self._proc.cpu_times()
        return float(t.user + t.system)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._proc.memory_info().rss)
            self._stop.wait(RSS_EVERY_S)

    def stop(self) -> float:
        """Stop sampling; return the process's mean CPU use (share of one core) meanwhile."""
        self._stop.set()
        self._thread.join()
        self.samples.append(self._proc.memory_info().rss)
        return (self._cpu() - self._cpu0) / (time.monotonic() - self._t0)


@contextmanager
def service(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m instrushare <args>`` until the block ends (SIGTERM, then SIGKILL)."""
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "instrushare", *args],
                                env=os.environ | env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _alive(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is not None:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{log.stem} exited with {proc.returncode}:\n{tail}")


def wait_online(port: int, topic: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for the ingest's retained ``online`` state, as a gateway would."""
    online = threading.Event()
    client = _client("wait")
    client.on_message = lambda _c, _u, m: (
        online.set() if json.loads(m.payload).get("status") == "online" else None)
    client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        deadline = time.monotonic() + 60
        while not online.wait(0.1):
            _alive(proc, log)
            if time.monotonic() > deadline:
                raise TimeoutError("the ingest did not come online within 60 s")
    finally:
        client.disconnect()
        client.loop_stop()


def wait_ready(api: httpx.Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        _alive(proc, log)
        try:
            if api.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the API was not ready within 60 s")
        time.sleep(0.1)


def wait_stored(db: str, expected: int, proc: subprocess.Popen[bytes], log: Path) -> int:
    """Wait until the ingest stored ``expected`` messages; fail on dead letters or a stall."""
    deadline = time.monotonic() + 120
    with psycopg.connect(db, autocommit=True) as conn:
        while True:
            stored, dead = conn.execute("SELECT (SELECT count(*) FROM ingested_message),"
                                        " (SELECT count(*) FROM dead_letter)").fetchone() or (0, 0)
            if dead:
                reasons = conn.execute("SELECT reason, detail FROM dead_letter LIMIT 3").fetchall()
                raise RuntimeError(f"{dead} messages dead-lettered, e.g. {reasons}")
            if stored >= expected:
                return int(stored)
            _alive(proc, log)
            if time.monotonic() > deadline:
                raise TimeoutError(f"the ingest stored {stored} of {expected} messages")
            time.sleep(0.2)


def _received_lags(db: str, probes: list[Probe]) -> list[float]:
    """Publish -> the worker's receive time (``ingested_message.received_at``) of each probe:
    the part of the latency before batching, writing and the API."""
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM m.received_at - m.created_at)::float8"
            " FROM ingested_message m JOIN unnest(%s::text[], %s::bigint[]) AS k(gw, seq)"
            " ON m.gateway_id = k.gw AND m.seq = k.seq",
            ([p.gateway for p in probes], [p.seq for p in probes]),
        ).fetchall()
    return [float(r[0]) for r in rows]


def batch_figures(metrics_port: int) -> dict[str, float | None]:
    """Mean batch size and write + commit time per batch, from the worker's own metrics."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                sums[sample.name] = sample.value
    size_n = sums.get("instrushare_ingest_batch_size_count", 0.0)
    write_n = sums.get("instrushare_ingest_write_seconds_count", 0.0)
    return {
        "batches": int(size_n),
        "mean_messages": round(sums["instrushare_ingest_batch_size_sum"] / size_n, 1)
        if size_n else None,
        "mean_write_ms": round(sums["instrushare_ingest_write_seconds_sum"] / write_n * 1000, 1)
        if write_n else None,
    }


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    if not ms:
        return {"count": 0}
    return {"count": len(ms), "p50_ms": round(pct(ms, 0.5), 1), "p95_ms": round(pct(ms, 0.95), 1),
            "p99_ms": round(pct(ms, 0.99), 1), "max_ms": round(max(ms), 1)}


def plan(args: argparse.Namespace, targets: list[Target]) -> dict[int, Probe]:
    """Probe slots, known in advance so the baseline subscriber can subscribe beforehand."""
    total = int(args.rate * args.duration)
    probes: dict[int, Probe] = {}
    t = args.warmup
    while (slot := int(t * args.rate)) < total:
        target = targets[slot % len(targets)]
        probes[slot] = Probe(slot, target.instrument, target.gateway, slot // len(targets) + 1,
                             PROBE_POWER + len(probes))
        t += args.probe_interval
    return probes


def run(args: argparse.Namespace, db: str, work: Path) -> dict[str, Any]:
    migrate(db)
    fleet = build_fleet(args.instruments, seed=7)
    register_fleet(db, fleet)
    token = asyncio.run(create_token(ApiSettings(database_url=db), role=Role.EVALUATOR,
                                     label="latency bench"))
    targets = []
    for n, inst in enumerate(fleet.instruments):
        users = fleet.internal_users(inst.institution_id)
        running = n % 3 == 0
        targets.append(Target(inst.id, inst.gateway_id, running,
                              inst.profile.run_w if running else inst.profile.idle_w,
                              users[n % len(users)].id))
    probes = plan(args, targets)
    broker = Mosquitto(work / "mosquitto")
    broker.start()
    tag = uuid.uuid4().hex[:8]
    prefix, worker = f"lat{tag}", f"bench-{tag}"
    topics = Topics(prefix)
    api_port, metrics_port = free_port(), free_port()
    ingest_log, api_log = work / "ingest.log", work / "api.log"
    try:
        with service(["ingest"], {"DATABASE_URL": db, "MQTT_URL": broker.url,
                                  "INSTRUSHARE_TOPIC_PREFIX": prefix,
                                  "INSTRUSHARE_WORKER_ID": worker,
                                  "INSTRUSHARE_SHARE_GROUP": f"g{tag}",
                                  "INSTRUSHARE_METRICS_PORT": str(metrics_port)},
                     ingest_log) as ingest, \
             service(["api", "--port", str(api_port)], {"DATABASE_URL": db}, api_log) as api_proc, \
             httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10,
                          headers={"Authorization": f"Bearer {token}"}) as api:
            wait_ready(api, api_proc, api_log)
            wait_online(broker.port, topics.ingest_state(worker), ingest, ingest_log)
            time.sleep(args.idle)
            idle_rss = max(psutil.Process(ingest.pid).memory_info().rss for _ in range(3))
            watcher = BrokerWatcher(port=broker.port, topics=topics, probes=list(probes.values()))
            publisher = Publisher(port=broker.port, topics=topics, targets=targets, probes=probes,
                                  rate=args.rate, duration=args.duration)
            sampler = RssSampler(ingest.pid)
            stop = threading.Event()
            requests: list[float] = []
            errors: list[BaseException] = []
            poller = threading.Thread(target=poll_probes, name="probe-poller", kwargs={
                "api": api, "probes": list(probes.values()), "interval": args.poll_interval,
                "stop": stop, "requests": requests, "errors": errors})
            poller.start()
            try:
                publisher.run()
            finally:
                poller.join(PROBE_TIMEOUT_S + 5 if publisher.sent else 0)
                stop.set()
                publisher.close()
                watcher.close()
            if errors:
                raise RuntimeError("polling the API failed") from errors[0]
            stored = wait_stored(db, publisher.sent, ingest, ingest_log)
            received = _received_lags(db, list(probes.values()))
            batches = batch_figures(metrics_port)
            ingest_cpu = sampler.stop()
            _alive(api_proc, api_log)
    finally:
        broker.stop()
    seen = [p for p in probes.values() if not math.isnan(p.visible)]
    delivered = [p for p in probes.values() if not math.isnan(p.delivered)]
    latency = summary_ms([p.visible - p.sent for p in seen])
    baseline = summary_ms([p.delivered - p.sent for p in delivered])
    elapsed = publisher.finished - publisher.started
    p99, broker_p99 = latency.get("p99_ms"), baseline.get("p99_ms")
    rss_max = max(sampler.samples) / MB
    return {
        "bench": "latency",
        "instruments": args.instruments,
        "load": {"target_rate": args.rate, "duration_s": args.duration,
                 "published": publisher.sent, "stored": stored,
                 "achieved_rate": round((publisher.sent - 1) / elapsed, 1) if elapsed else None,
                 "schedule_lag_p99_ms": round(pct(publisher.lags, 0.99) * 1000, 1),
                 "schedule_lag_max_ms": round(max(publisher.lags) * 1000, 1)},
        "latency": {**latency, "lost": len(probes) - len(seen),
                    "superseded": sum(p.superseded for p in seen),
                    "poll_interval_ms": round(args.poll_interval * 1000, 1),
                    "api_requests": len(requests),
                    "api_request_p50_ms": summary_ms(requests).get("p50_ms")},
        "broker_baseline": {**baseline, "lost": len(probes) - len(delivered)},
        "ingest_receive": summary_ms(received),
        "ingest_batches": batches,
        "ratio_p99_vs_broker_p99": round(p99 / broker_p99, 1) if p99 and broker_p99 else None,
        "p99_vs_bar": round(p99 / LATENCY_BAR_MS, 3) if p99 is not None else None,
        "memory": {"ingest_idle_rss_mb": round(idle_rss / MB, 1),
                   "ingest_max_rss_mb": round(rss_max, 1),
                   "ratio_max_vs_idle": round(rss_max / (idle_rss / MB), 2),
                   "ratio_vs_bar": round(rss_max / MEMORY_BAR_MB, 3),
                   "samples": len(sampler.samples)},
        "ingest_cpu_cores": round(ingest_cpu, 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "bars": {"p99_ms": LATENCY_BAR_MS, "ingest_rss_mb": MEMORY_BAR_MB},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instruments", type=positive(int), default=3000)
    parser.add_argument("--rate", type=positive(float), default=3000, help="messages per second")
    parser.add_argument("--duration", type=positive(float), default=30, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load before probes")
    parser.add_argument("--probe-interval", type=positive(float), default=0.1)
    parser.add_argument("--poll-interval", type=positive(float), default=0.015)
    parser.add_argument("--idle", type=float, default=2,
                        help="seconds idle before the RSS baseline")
    args = parser.parse_args()
    sys.setswitchinterval(0.001)  # timestamps taken by waiting threads stay close to the event

    name = f"instrushare_latency_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    work.chmod(0o755)  # mosquitto, dropped to its own user, must reach its directory
    try:
        result = run(args, conninfo.make_conninfo(PG_ADMIN_URL, dbname=name), work)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
