"""Ingest throughput against same-run baselines; prints one JSON line.

For single-sample and 100-sample messages: durable ingest rate (messages/s, samples/s) next to
(a) a bare paho client that only receives the same QoS 1 messages (manual ack, acking each at
once), (b) the same bare receive through the worker's own lean receive path (``LeanClient``:
no per-message ``MQTTMessage``, PUBACKs queued in batches of 100), so both sides are equally
optimised, and (c) raw COPY of the same rows into a copy of state_sample, the faster of binary
``write_row`` per row and text COPY from prebuilt buffers (the ingest's own way). The load is
published before each consumer starts (its persistent session queues it on a private broker with
unlimited queues), so the publisher is never the bottleneck. Both MQTT consumers are timed
from their first delivery to their last (ingest: last commit), so connecting is not counted;
the ingest's time includes filling its pipeline (the first batch is decoded before any write).

Each scenario runs ``--rounds`` times, its consumers and baselines side by side in every
round; each figure is the median over the rounds (a ratio: the median of the rounds' ratios,
each against the baseline measured next to it), and ``rounds`` lists the ratios of every
round, so the spread of a short run on a shared machine shows.

    python bench/ingest.py [--messages 30000] [--batched-messages 10000] [--rounds 3]

Needs mosquitto on PATH and PostgreSQL at TEST_PG_ADMIN_URL (default 127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from _args import positive
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from psycopg import conninfo, sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest import IngestConfig, IngestWorker, tune_process
from ingest._mqtt import LeanClient
from ingest._text import CHUNK_ROWS
from instrushare.db import migrate
from instrushare.protocol import DataMessage, Sample, Topics, dumps
from tests.services import Mosquitto

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
INSTRUMENTS = 100
PREFIX = "bench"


def _props() -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 5000
    return props


def _client(client_id: str, **kw: Any) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                       protocol=mqtt.MQTTv5, **kw)


def _make_session(port: int, client_id: str, group: str) -> None:
    """Create a persistent session subscribed like the ingest, so the broker queues for it."""
    done = threading.Event()
    c = _client(client_id, manual_ack=True)
    c.on_subscribe = lambda *a: done.set()
    c.connect("127.0.0.1", port, clean_start=False, properties=_props())
    c.loop_start()
    topics = Topics(PREFIX)
    c.subscribe([(f"$share/{group}/{topics.all_data}", SubscribeOptions(qos=1)),
                 (f"$share/{group}/{topics.all_gateway_states}", SubscribeOptions(qos=1))])
    assert done.wait(10)
    c.disconnect()
    c.loop_stop()


SAMPLE_INTERVAL = timedelta(seconds=10)


def _span(n: int, per_message: int) -> timedelta:
    """How much time each instrument's samples cover in a load of ``n`` messages."""
    return -(-n // INSTRUMENTS) * per_message * SAMPLE_INTERVAL


def _payloads(n: int, per_message: int, seq0: int, base: datetime) -> list[tuple[str, bytes]]:
    """``n`` messages round the instruments, samples every ``SAMPLE_INTERVAL`` from ``base``."""
    topics = Topics(PREFIX)
    out = []
    for k in range(n):
        inst = f"i{k % INSTRUMENTS}"
        seq = seq0 + k
        first = (k // INSTRUMENTS) * per_message
        samples = [
            Sample(ts=base + (first + j) * SAMPLE_INTERVAL,
                   state="running" if (first + j) % 50 < 30 else "idle",  # type: ignore[arg-type]
                   power_w=350.0, user="u1")
            for j in range(per_message)
        ]
        msg = DataMessage(v=1, gateway="gw1", instrument=inst, seq=seq, bd_seq=1,
                          created_at=datetime.now(UTC), samples=samples)
        out.append((topics.data("gw1", inst), dumps(msg)))
    return out


def _publish(port: int, load: list[tuple[str, bytes]]) -> None:
    c = _client(f"pub-{uuid.uuid4().hex[:6]}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for start in range(0, len(load), 5000):
        infos = [c.publish(t, p, qos=1) for t, p in load[start:start + 5000]]
        for info in infos:
            info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


class _Arrivals:
    """Counts the messages a receiver gets from its queued session, timed from the first."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.got = 0
        self.t0 = 0.0
        self.done = threading.Event()

    def arrived(self) -> None:
        if not self.got:
            self.t0 = time.perf_counter()
        self.got += 1
        if self.got >= self.n:
            self.done.set()

    def rate(self, client: mqtt.Client, port: int) -> float:
        """Connect ``client`` to its session, wait for all n messages; messages/s."""
        client.connect("127.0.0.1", port, clean_start=False, properties=_props())
        client.loop_start()
        assert self.done.wait(600), f"received {self.got} of {self.n}"
        elapsed = time.perf_counter() - self.t0
        client.disconnect()
        client.loop_stop()
        return self.n / elapsed


def _bare_receive(port: int, client_id: str, n: int) -> float:
    """Messages/s a bare paho client receives (acking each at once) from its queued session."""
    arrivals = _Arrivals(n)

    def on_message(client: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        client.ack(m.mid, m.qos)
        arrivals.arrived()

    c = _client(client_id, manual_ack=True)
    c.on_message = on_message
    return arrivals.rate(c, port)


def _lean_receive(port: int, client_id: str, n: int) -> float:
    """Messages/s received through the worker's lean path, acked in batches of 100."""
    arrivals = _Arrivals(n)
    mids: list[int] = []

    def deliver(_topic: str, _payload: bytes | bytearray, mid: int, _qos: int) -> None:
        mids.append(mid)
        if len(mids) >= 100 or arrivals.got + 1 >= n:
            c.ack_all(mids)
            mids.clear()
        arrivals.arrived()

    c = LeanClient(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                   manual_ack=True, deliver=deliver)
    return arrivals.rate(c, port)


_SAMPLE_TYPES = ["text", "timestamptz", "text", "float8", "text", "jsonb", "text", "int8"]
_NULL = "\\N"


def _copy_rates(db: str, load: list[tuple[str, bytes]]) -> tuple[float, float]:
    """Rows/s of raw COPY of the same samples into a fresh copy of state_sample, 10,000 rows
    per transaction: (binary ``write_row`` per row, text COPY from one buffer built per
    transaction, written ``CHUNK_ROWS`` at a time like the ingest's). Building the rows or the
    text is timed; parsing the payloads is not."""
    rows = []
    for _topic, payload in load:
        m = DataMessage.model_validate_json(payload)
        rows += [(m.instrument, s.ts, s.state.value, s.power_w, s.user, None, m.gateway, m.seq)
                 for s in m.samples]
    rates = []
    with psycopg.connect(db, autocommit=True) as conn:
        for fmt in ("binary", "text"):
            table = sql.Identifier(f"copy_{uuid.uuid4().hex[:6]}")
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE state_sample INCLUDING ALL)").format(table))
            stmt = sql.SQL("COPY {} FROM STDIN" + (" (FORMAT BINARY)" if fmt == "binary" else ""))
            t0 = time.perf_counter()
            for start in range(0, len(rows), 10_000):
                chunk = rows[start:start + 10_000]
                with conn.transaction(), conn.cursor().copy(stmt.format(table)) as cp:
                    if fmt == "binary":
                        cp.set_types(_SAMPLE_TYPES)
                        for row in chunk:
                            cp.write_row(row)
                    else:  # ids and states need no escaping here; power is never NaN
                        for k in range(0, len(chunk), CHUNK_ROWS):  # overlap, as the ingest
                            cp.write("".join([
                                f"{r[0]}\t{r[1].isoformat()}\t{r[2]}\t"
                                f"{_NULL if r[3] is None else repr(r[3])}\t"
                                f"{_NULL if r[4] is None else r[4]}\t{_NULL}\t{r[6]}\t{r[7]}\n"
                                for r in chunk[k:k + CHUNK_ROWS]]))
            rates.append(len(rows) / (time.perf_counter() - t0))
            conn.execute(sql.SQL("DROP TABLE {}").format(table))
    return rates[0], rates[1]


def _ingest(db: str, port: int, worker_id: str, group: str, n: int) -> float:
    config = IngestConfig(  # type: ignore[call-arg]
        DATABASE_URL=db, MQTT_URL=f"mqtt://127.0.0.1:{port}", topic_prefix=PREFIX,
        worker_id=worker_id, share_group=group,
    )
    worker = IngestWorker(config)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    started = time.perf_counter()
    thread.start()
    while not worker.stats.received:  # both clocks start at the first delivery
        time.sleep(0.0005)
    t0 = time.perf_counter()
    while (stats := worker.stats).written + stats.duplicates < n:
        time.sleep(0.01)  # polling costs the worker GIL time: keep it rare
        if time.perf_counter() - started > 600:
            raise TimeoutError(f"ingest wrote {worker.stats.written}/{n}")
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    return n / elapsed


def _scenario(
    db: str, port: int, n: int, per_message: int, seq0: int, base: datetime
) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    bare_id, lean_id, worker_id = f"bare-{tag}", f"lean-{tag}", f"w{tag}"
    _make_session(port, bare_id, f"bare{tag}")
    _make_session(port, lean_id, f"lean{tag}")
    _make_session(port, f"ingest-{worker_id}", f"ing{tag}")
    load = _payloads(n, per_message, seq0, base)
    _publish(port, load)
    bare = _bare_receive(port, bare_id, n)
    lean = _lean_receive(port, lean_id, n)
    ingest = _ingest(db, port, worker_id, f"ing{tag}", n)
    copy_binary, copy_text = _copy_rates(db, load)
    copy = max(copy_binary, copy_text)
    with psycopg.connect(db) as conn:
        stored = conn.execute("SELECT count(*) FROM ingested_message WHERE seq >= %s AND seq < %s",
                              (seq0, seq0 + n)).fetchone()
    assert stored and stored[0] == n, f"stored {stored} of {n}"
    return {
        "messages_per_s": round(ingest),
        "samples_per_s": round(ingest * per_message),
        "bare_receive_messages_per_s": round(bare),
        "lean_receive_messages_per_s": round(lean),
        "copy_binary_rows_per_s": round(copy_binary),
        "copy_text_rows_per_s": round(copy_text),
        "ratio_vs_bare_receive": round(ingest / bare, 3),
        "ratio_vs_lean_receive": round(ingest / lean, 3),
        "ratio_vs_copy": round(ingest * per_message / copy, 3),
    }


def _medians(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """Each figure's median over the rounds, and the ratios of every round."""
    out: dict[str, Any] = {}
    for name in rounds[0]:
        median = statistics.median(r[name] for r in rounds)
        out[name] = round(median, 3) if name.startswith("ratio") else round(median)
    out["rounds"] = [{k: v for k, v in r.items() if k.startswith("ratio")} for r in rounds]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=positive(int), default=30_000)
    parser.add_argument("--batched-messages", type=positive(int), default=10_000)
    parser.add_argument("--samples-per-message", type=positive(int), default=100)
    parser.add_argument("--rounds", type=positive(int), default=3)
    args = parser.parse_args()
    tune_process()  # as ``instrushare ingest`` does; the baselines run in this process too

    name = f"instrushare_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db = conninfo.make_conninfo(PG_ADMIN_URL, dbname=name)
    broker = Mosquitto(Path(tempfile.mkdtemp(prefix="bench-mosquitto-")))
    try:
        migrate(db)
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("INSERT INTO institution (id, name) VALUES ('b', 'bench')")
            for k in range(INSTRUMENTS):
                conn.execute("INSERT INTO instrument (id, name, institution_id, gateway_id)"
                             " VALUES (%s, %s, 'b', 'gw1')", (f"i{k}", f"i{k}"))
        broker.start()
        single, batched = [], []
        spans = (_span(args.messages, 1), _span(args.batched_messages, args.samples_per_message))
        base = datetime.now(UTC) - timedelta(days=1) - args.rounds * sum(spans, timedelta())
        for r in range(args.rounds):  # each load new and later than the last, as gateways send
            single.append(_scenario(db, broker.port, args.messages, 1, r * 10_000_000, base))
            base += spans[0]
            batched.append(_scenario(db, broker.port, args.batched_messages,
                                     args.samples_per_message, (args.rounds + r) * 10_000_000,
                                     base))
            base += spans[1]
    finally:
        broker.stop()
        shutil.rmtree(broker.workdir, ignore_errors=True)  # its queues, saved when it stopped
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
    print(json.dumps({
        "bench": "ingest",
        "single_sample": _medians(single),
        "batched": {"samples_per_message": args.samples_per_message, **_medians(batched)},
        "targets": {"single_vs_bare_receive": 0.8, "batched_vs_copy": 0.6},
    }))


if __name__ == "__main__":
    main()
