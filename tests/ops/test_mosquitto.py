"""The production broker config (deploy/mosquitto) on a real mosquitto: the password file script
works and the ACL confines each gateway to its own topics while ingest sees them all."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.ops.grafana import ROOT
from tests.services import free_port, wait_for_port

DEPLOY = ROOT / "deploy" / "mosquitto"
PASSWORDS = {"ingest": "ingest-secret-1", "gw-1": "gw1-secret-pass", "gw-2": "gw2-secret-pass"}


@pytest.fixture
def broker() -> Iterator[int]:
    """mosquitto running deploy/mosquitto/mosquitto.conf with only paths and port rewritten."""
    # Not under pytest's tmp_path: run as root, mosquitto drops to the mosquitto user, which
    # cannot enter pytest's private (0700) temporary root.
    with tempfile.TemporaryDirectory(prefix="instrushare-mosquitto-") as name:
        yield from _run_broker(Path(name))


def _run_broker(work: Path) -> Iterator[int]:
    users = work / "users"
    users.write_text("# test accounts\n" + "".join(
        f"{name}:{password}\n" for name, password in PASSWORDS.items() if name != "ingest")
        + "ingest:ignored\n")
    passwd = work / "passwd"
    result = _make_passwd(users, passwd, PASSWORDS["ingest"])
    assert result.returncode == 0, result.stderr
    assert PASSWORDS["gw-1"] not in passwd.read_text(), "passwords must be stored hashed"
    shutil.copy(DEPLOY / "acl", work / "acl")
    port = free_port()
    rewrite = {
        "listener": f"listener {port} 127.0.0.1",
        "password_file": f"password_file {passwd}",
        "acl_file": f"acl_file {work / 'acl'}",
        "persistence_location": f"persistence_location {work}/",
        "log_dest": f"log_dest file {work / 'mosquitto.log'}",
    }
    lines = []
    for line in (DEPLOY / "mosquitto.conf").read_text().splitlines():
        key = line.split(" ", 1)[0]
        lines.append(rewrite.get(key, line))
    config = work / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    if os.geteuid() == 0:
        for path in (work, *work.iterdir()):
            shutil.chown(path, "mosquitto", "mosquitto")
    proc = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)



def _make_passwd(users: Path, passwd: Path, ingest_password: str, **secrets: str
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(DEPLOY / "make-passwd.sh")], capture_output=True, text=True,
                          check=False,
                          env={**os.environ, "USERS_FILE": str(users),
                               "PASSWD_FILE": str(passwd), "INGEST_MQTT_PASSWORD": ingest_password,
                               "OTHER_SECRETS": " ".join(secrets), **secrets})


def test_password_script_refuses_example_and_short_passwords(tmp_path: Path) -> None:
    users, passwd = tmp_path / "users", tmp_path / "passwd"
    example = (DEPLOY / "users.example").read_text()
    n = len(example.splitlines())  # its last line is the example gateway
    users.write_text(example + "gw-2:short\ngw 3:long-enough-x\ningest-3:long-enough-x\n"
                     "gw-4:long-enough-ok\n")
    result = _make_passwd(users, passwd, "change-me-ingest")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"make-passwd: gw-dlut-analysis-01 ({users} line {n}): still the example password;"
        " set a random one (openssl rand -hex 16)",
        f"make-passwd: gw-2 ({users} line {n + 1}): password shorter than 12 characters",
        f"make-passwd: {users} line {n + 2}: user name 'gw 3' is not a gateway id"
        " (letters, digits, _ . -; at most 64)",
        f"make-passwd: {users} line {n + 3}: user name 'ingest-3': ingest- starts the ingest"
        " workers' client ids",
        "make-passwd: ingest (INGEST_MQTT_PASSWORD): still the example password; set a random"
        " one (openssl rand -hex 16)",
        "make-passwd: password file not written",
    ]
    assert not passwd.exists() and not (tmp_path / "passwd.tmp").exists()
    assert "long-enough" not in result.stdout + result.stderr  # never a password

    users.write_text("gw-4:long-enough-ok\r\n  # indented comment\n\n")
    result = _make_passwd(users, passwd, "x" * 11)
    assert result.returncode == 1
    assert "ingest (INGEST_MQTT_PASSWORD): password shorter than 12" in result.stderr
    result = _make_passwd(users, passwd, "x" * 12)
    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in passwd.read_text().splitlines()] == ["gw-4", "ingest"]


def test_the_other_secrets_of_env_are_checked_as_passwords(tmp_path: Path) -> None:
    users, passwd = tmp_path / "users", tmp_path / "passwd"
    users.write_text("gw-4:long-enough-ok\n")
    result = _make_passwd(users, passwd, "x" * 12, POSTGRES_PASSWORD="change-me-postgres",
                          GRAFANA_ADMIN_PASSWORD="short-one", GRAFANA_DB_PASSWORD="",
                          INSTRUSHARE_SHARE_GROUP="0123456789abcdef")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "make-passwd: POSTGRES_PASSWORD (.env): still the example password; set a random one"
        " (openssl rand -hex 16)",
        "make-passwd: GRAFANA_ADMIN_PASSWORD (.env): password shorter than 12 characters",
        "make-passwd: GRAFANA_DB_PASSWORD (.env): password shorter than 12 characters",
        "make-passwd: password file not written",
    ]
    assert not passwd.exists() and "short-one" not in result.stdout + result.stderr


class Client:
    """A connected MQTT 5 client that records what it receives."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.mqtt = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{time.time_ns()}",
                                protocol=mqtt.MQTTv5)
        self.mqtt.username_pw_set(user, password)
        self.mqtt.on_message = self._on_message
        self.acks: dict[int, int] = {}  # PUBACK reason code by message id
        self.mqtt.on_publish = self._on_publish
        answered = threading.Event()
        codes: list[bool] = []

        def on_connect(_c: object, _u: object, _f: object, rc: Any, _p: object) -> None:
            codes.append(not rc.is_failure)
            answered.set()

        self.mqtt.on_connect = on_connect
        self.mqtt.connect("127.0.0.1", port)
        self.mqtt.loop_start()
        ok = answered.wait(5) and codes[0]
        if not ok:
            self.close()
        assert ok, f"{user} could not log in"

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def _on_publish(self, _c: object, _u: object, mid: int, rc: Any, _p: object) -> None:
        with self.lock:
            self.acks[mid] = rc.value

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.mqtt.on_subscribe = lambda *_args: done.set()
        self.mqtt.subscribe(topic, qos=1)
        assert done.wait(5)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """QoS 1; the broker's PUBACK reason code (0 success, 0x87 not authorized)."""
        info = self.mqtt.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        with self.lock:
            return self.acks[info.mid]

    def topics(self) -> set[str]:
        with self.lock:
            return {t for t, _ in self.received}

    def close(self) -> None:
        self.mqtt.loop_stop()
        self.mqtt.disconnect()


def _wait_for(client: Client, topic: str) -> None:
    deadline = time.monotonic() + 5
    while topic not in client.topics():
        assert time.monotonic() < deadline, f"{topic} never arrived"
        time.sleep(0.02)
    time.sleep(0.2)  # anything the broker would have forwarded before it has arrived too


def test_wrong_password_is_refused(broker: int) -> None:
    with pytest.raises(AssertionError, match="could not log in"):
        Client(broker, "gw-1", "wrong")


def test_acl_confines_gateways_and_lets_ingest_read(broker: int) -> None:
    ingest = Client(broker, "ingest", PASSWORDS["ingest"])
    gw1 = Client(broker, "gw-1", PASSWORDS["gw-1"])
    gw2 = Client(broker, "gw-2", PASSWORDS["gw-2"])
    try:
        ingest.subscribe("$share/ingest/isv1/gw/+/data/+")
        ingest.subscribe("$share/ingest/isv1/gw/+/state")
        ingest.publish("isv1/ingest/ingest-1/state", b"online", retain=True)
        gw1.subscribe("isv1/ingest/+/state")  # gateways learn whether ingest is online
        gw2.subscribe("isv1/gw/#")  # may not read other gateways' data: gets nothing
        _wait_for(gw1, "isv1/ingest/ingest-1/state")

        gw1.publish("isv1/gw/gw-2/data/i-1", b"forged")  # another gateway's topic: dropped
        gw1.publish("isv1/ingest/ingest-1/state", b"offline")  # ingest's topic: dropped
        gw1.publish("isv1/gw/gw-1/state", b"birth")
        gw1.publish("isv1/gw/gw-1/data/i-1", b"data")
        _wait_for(ingest, "isv1/gw/gw-1/data/i-1")

        assert ingest.topics() == {"isv1/gw/gw-1/state", "isv1/gw/gw-1/data/i-1"}
        assert ("isv1/gw/gw-2/data/i-1", b"forged") not in ingest.received
        assert gw1.received == [("isv1/ingest/ingest-1/state", b"online")]
        assert gw2.received == []
    finally:
        for client in (ingest, gw1, gw2):
            client.close()


NOT_AUTHORIZED = 0x87


def test_gateway_writes_only_its_state_and_data(broker: int) -> None:
    """A gateway cannot confirm its own messages (stored) nor leave retained messages anywhere
    else in its tree: the broker answers not authorized and drops them. Only ingest's
    confirmations reach it."""
    ingest = Client(broker, "ingest", PASSWORDS["ingest"])
    gw1 = Client(broker, "gw-1", PASSWORDS["gw-1"])
    gw2 = Client(broker, "gw-2", PASSWORDS["gw-2"])
    try:
        gw1.subscribe("isv1/gw/gw-1/#")  # reads nothing of its own tree but stored
        gw2.subscribe("isv1/gw/gw-1/stored")  # another gateway's confirmations: nothing
        ingest.subscribe("$share/ingest/isv1/gw/+/data/+")
        ingest.subscribe("$share/ingest/isv1/gw/+/state")

        for topic, retain in [("isv1/gw/gw-1/stored", False), ("isv1/gw/gw-1/stored", True),
                              ("isv1/gw/gw-1/extra", True), ("isv1/gw/gw-1/data/i-1/x", False),
                              ("isv1/gw/gw-1", True), ("isv1/ingest/gw-1/state", True)]:
            assert gw1.publish(topic, b"forged", retain=retain) == NOT_AUTHORIZED, topic
        assert gw1.publish("isv1/gw/gw-1/state", b"birth", retain=True) == 0
        assert gw1.publish("isv1/gw/gw-1/data/i-1", b"data") == 0
        assert ingest.publish("isv1/gw/gw-1/stored", b"confirmed") == 0
        _wait_for(gw1, "isv1/gw/gw-1/stored")
        _wait_for(ingest, "isv1/gw/gw-1/data/i-1")

        assert gw1.received == [("isv1/gw/gw-1/stored", b"confirmed")]
        assert gw2.received == []
        assert sorted(ingest.received) == [("isv1/gw/gw-1/data/i-1", b"data"),
                                           ("isv1/gw/gw-1/state", b"birth")]
    finally:
        for client in (ingest, gw1, gw2):
            client.close()
