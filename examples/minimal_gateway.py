"""A minimal instrushare gateway written from docs/protocol.md alone, with bare paho-mqtt 2.x.

Readings come as JSON lines on stdin from whatever talks to the instruments:

    {"instrument": "xrd-1", "state": "running", "user": "u-1", "power_w": 1200.5, "ts": "..."}
    {"instrument": "xrd-1", "event": "fault", "detail": "vacuum lost"}

(``ts`` optional: now). Whatever writes them must report every instrument at least once a
minute, in every state, and at once on a change (docs/protocol.md, "Sending data"). Each line
becomes one data message; the gateway adds session_start and session_end events when a
running instrument's user changes. End of input stops it cleanly. The outbox, ``seq`` and
``bd_seq`` live in one SQLite file (``--state``). For TLS, add ``client.tls_set()``.

    python minimal_gateway.py --gateway gw-1 --instrument xrd-1 --state gw-1.sqlite \\
        --broker mqtt://gw-1:secret@127.0.0.1:1883 < readings.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # ids, users, topic levels (fullmatch)
STATES = {"off", "idle", "running", "fault", "maintenance"}
EVENTS = {"session_start", "session_end", "fault", "fault_cleared", "maintenance_start",
          "maintenance_end"}
START_WAIT_S = 10.0  # for a live ingest announcement before the first message (rule 6)
CONFIRM_TIMEOUT_S = 300.0  # publish the outbox again once confirmations stop this long
STOP_WAIT_S = 10.0  # at a clean stop, for the outbox to be confirmed
OUTBOX_MAX, OUTBOX_MAX_AGE_S = 100_000, 29 * 86400.0  # the platform takes 30 days at most
log = logging.getLogger("minimal_gateway")


def now() -> str:
    return datetime.now(UTC).isoformat()


class Gateway:
    """Outbox, MQTT session and confirmations; one lock guards what paho's thread touches."""

    def __init__(self, gateway: str, instruments: list[str], state: str, broker: str,
                 prefix: str) -> None:
        self.id, self.instruments, self.prefix = gateway, instruments, prefix
        self.lock = threading.RLock()
        self.db = sqlite3.connect(state, check_same_thread=False, isolation_level=None)
        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
            " payload BLOB NOT NULL, created REAL NOT NULL);")
        self.bd_seq = 0  # data created before the first connection attempt carries 0
        self.workers: set[str] = set()  # ingest workers announced live on this connection
        self.connected = False
        self.published: set[int] = set()  # since start: only these may a confirmation delete
        self.waiting_since: float | None = None  # monotonic; None: nothing awaits confirmation
        self.state_topic = f"{prefix}/gw/{gateway}/state"
        url = urlsplit(broker)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gateway,
                                  protocol=mqtt.MQTTv311, clean_session=True)
        self.client.username_pw_set(url.username or gateway, url.password)
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_pre_connect = self._on_pre_connect
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.connect_async(url.hostname or "127.0.0.1", url.port or 1883, keepalive=30)

    def _meta(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _state(self, status: str, ts: str | None, **extra: Any) -> bytes:
        return json.dumps({"v": 1, "gateway": self.id, "status": status,
                           "bd_seq": self.bd_seq, "ts": ts, **extra}).encode()

    @property
    def deliverable(self) -> bool:
        return self.connected and bool(self.workers)

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        """Every attempt, paho's reconnects included, takes a higher bd_seq and its own will."""
        with self.lock:
            self.bd_seq = max(self._meta("bd_seq") + 1, time.time_ns() // 1_000_000)
            self._set_meta("bd_seq", self.bd_seq)
            client.will_set(self.state_topic, self._state("offline", None), qos=1, retain=True)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        with self.lock:
            self.connected = True
            client.subscribe([(f"{self.prefix}/ingest/+/state", 1),
                              (f"{self.prefix}/gw/{self.id}/stored", 1)])
            client.publish(self.state_topic, self._state(
                "online", now(), instruments=self.instruments, software="minimal-gateway/1",
                dropped=self._meta("dropped")), qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        with self.lock:
            self.connected = False
            self.workers.clear()  # the next connection needs a live announcement again

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            doc = None
        doc = doc if isinstance(doc, dict) else {}
        with self.lock:
            if msg.topic.endswith("/stored"):
                self._confirmed(doc)
                return
            worker, was_deliverable = msg.topic.split("/")[-2], self.deliverable
            if doc.get("status") != "online":  # offline, cleared or unreadable, retained or not
                self.workers.discard(worker)
            elif not msg.retain:  # a retained "online" may predate a broker restart
                self.workers.add(worker)
            if self.deliverable and not was_deliverable:
                self._publish_outbox()

    def _confirmed(self, doc: dict[str, Any]) -> None:
        if doc.get("gateway") != self.id or not isinstance(doc.get("seqs"), list):
            log.warning("ignored a confirmation that is not this gateway's: %s", doc)
            return
        mine = self.published.intersection(doc["seqs"])
        self.db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in mine])
        self.published -= mine
        self.waiting_since = time.monotonic() if self.published else None

    def _publish(self, seq: int, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)
        self.published.add(seq)
        self.waiting_since = self.waiting_since or time.monotonic()

    def _publish_outbox(self) -> None:
        """From the oldest unconfirmed message, in seq order, byte for byte as stored."""
        for seq, topic, payload in self.db.execute(
                "SELECT seq, topic, payload FROM outbox ORDER BY seq").fetchall():
            self._publish(seq, topic, payload)
        self.waiting_since = time.monotonic() if self.published else None

    def send(self, instrument: str, samples: list[Any], events: list[Any]) -> None:
        """Write one data message to the outbox, then publish it if an ingest listens."""
        with self.lock:
            seq = self._meta("seq")
            payload = json.dumps({
                "v": 1, "gateway": self.id, "instrument": instrument, "seq": seq,
                "bd_seq": self.bd_seq, "created_at": now(), "historical": not self.deliverable,
                "samples": samples, "events": events}, allow_nan=False).encode()
            topic = f"{self.prefix}/gw/{self.id}/data/{instrument}"
            self.db.execute("BEGIN")
            self._set_meta("seq", seq + 1)  # never reused, not even for dropped messages
            self.db.execute("INSERT INTO outbox VALUES (?, ?, ?, ?)",
                            (seq, topic, payload, time.time()))
            dropped = self.db.execute(
                "DELETE FROM outbox WHERE created < ? OR seq < (SELECT seq FROM outbox"
                " ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (time.time() - OUTBOX_MAX_AGE_S, OUTBOX_MAX - 1)).rowcount
            self._set_meta("dropped", self._meta("dropped") + dropped)
            self.db.execute("COMMIT")
            if self.deliverable:
                self._publish(seq, topic, payload)

    def tick(self) -> None:
        """Publish the outbox again when the platform has confirmed nothing for a while."""
        with self.lock:
            since = self.waiting_since
            if self.deliverable and since and time.monotonic() - since > CONFIRM_TIMEOUT_S:
                self._publish_outbox()

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if condition():
                    return True
            time.sleep(0.05)
        return False

    def start(self) -> None:
        self.client.loop_start()
        if not self.wait(lambda: self.deliverable, START_WAIT_S):
            log.warning("no ingest worker announced itself; messages wait in the outbox")

    def stop(self) -> None:
        """Leave time for confirmations, then publish the offline state before DISCONNECT
        (a clean DISCONNECT discards the will)."""
        if self.deliverable and not self.wait(
                lambda: not self.db.execute("SELECT 1 FROM outbox").fetchone(), STOP_WAIT_S):
            log.warning("unconfirmed messages stay in the outbox for the next start")
        with self.lock:
            connected = self.connected
            info = self.client.publish(self.state_topic, self._state("offline", now()),
                                       qos=1, retain=True)
        if connected:
            info.wait_for_publish(10)
        self.client.disconnect()
        self.client.loop_stop()
        self.db.close()


def reading(line: str, last: dict[str, dict[str, Any]]) -> tuple[str, list[Any], list[Any]]:
    """One input line as (instrument, samples, events), checked before it reaches the outbox:
    the platform dead-letters a whole message for one bad field."""
    doc = json.loads(line)
    instrument, user, detail = doc["instrument"], doc.get("user"), doc.get("detail")
    ts = datetime.fromisoformat(doc.get("ts") or now())
    if not ID.fullmatch(instrument) or (user is not None and not ID.fullmatch(user)) or (
            ts.tzinfo is None):
        raise ValueError("bad instrument, user or ts")
    at = ts.astimezone(UTC).isoformat()
    if "event" in doc:
        if doc["event"] not in EVENTS or (detail is not None and (
                len(detail) > 1000 or "\0" in detail)):
            raise ValueError("bad event or detail")
        return instrument, [], [{"ts": at, "type": doc["event"], "user": user,
                                 "detail": detail}]
    power = doc.get("power_w")
    if doc["state"] not in STATES or (power is not None and not (
            type(power) in (int, float) and math.isfinite(power) and 0 <= power <= 1e7)):
        raise ValueError("bad state or power_w")
    sample = {"ts": at, "state": doc["state"], "power_w": power, "user": user}
    before = last.get(instrument, {})
    old, events = (before.get("state"), before.get("user")), []
    if old[0] == "running" and old != ("running", user):
        events.append({"ts": at, "type": "session_end", "user": old[1]})
    if doc["state"] == "running" and old != ("running", user):
        events.append({"ts": at, "type": "session_start", "user": user})
    last[instrument] = sample
    return instrument, [sample], events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True, help="gateway id = client id = user")
    parser.add_argument("--instrument", action="append", default=[], help="listed in births")
    parser.add_argument("--state", required=True, help="SQLite file: outbox, seq, bd_seq")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--prefix", default="isv1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    gateway = Gateway(args.gateway, args.instrument, args.state, args.broker, args.prefix)
    gateway.start()
    last: dict[str, dict[str, Any]] = {}  # latest sample per instrument
    for line in sys.stdin:
        try:
            gateway.send(*reading(line, last))
        except (ValueError, KeyError, TypeError) as err:
            log.error("skipped input %r: %s", line.strip(), err)
        gateway.tick()
    gateway.stop()


if __name__ == "__main__":
    main()
