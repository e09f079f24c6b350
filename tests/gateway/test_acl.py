"""Broker ACLs confine each gateway to its own topics; the agent works within them, and says
what to check when the broker refuses its log-in or one of its topics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import GatewayAgent
from gateway.publisher import MqttLink
from tests.gateway.helpers import FastClock, Recorder, drive, make_config, set_ingest
from tests.services import Mosquitto


def acl(prefix: str) -> str:
    return (
        f"pattern write {prefix}/gw/%u/state\n"
        f"pattern write {prefix}/gw/%u/data/+\n"
        f"pattern read {prefix}/ingest/+/state\n"
        f"pattern read {prefix}/gw/%u/stored\n"
        "user reader\n"
        f"topic read {prefix}/#\n"
        "user ingest\n"
        f"topic readwrite {prefix}/#\n"
    )


def publish_as(url: str, user: str, password: str, topic: str, payload: bytes) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"{user}-{uuid.uuid4().hex[:6]}")
    client.username_pw_set(user, password)
    client.connect(host, int(port))
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_gateway_cannot_publish_into_another_gateways_topics(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto], topic_prefix: str,
    protocol: str,
) -> None:
    users = {"gwA": "pa", "gwB": "pb", "reader": "pr", "ingest": "pi"}
    broker = mosquitto_factory(users=users, acl=acl(topic_prefix))
    rec = Recorder(broker.url, f"{topic_prefix}/gw/#", username="reader", password="pr")
    set_ingest(broker.url, topic_prefix, "online", username="ingest", password="pi")

    # forged messages into gwB's tree, and one into gwA's own tree outside its state and
    # data topics, all sent as gwA
    publish_as(broker.url, "gwA", "pa", f"{topic_prefix}/gw/gwB/data/xrd1", b"forged")
    publish_as(broker.url, "gwA", "pa", f"{topic_prefix}/gw/gwB/note", b"forged")
    publish_as(broker.url, "gwA", "pa", f"{topic_prefix}/gw/gwA/note", b"stray")

    # the real agent, logged in as its gateway id, delivers its data and its states
    url = broker.url.replace("mqtt://", "mqtt://gwA:pa@")
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, url, topic_prefix, gateway_id="gwA",
                                     mqtt_protocol=protocol), clock=clock)
    agent.start()
    drive(agent, clock, 20)
    agent.flush()
    assert agent.wait_drained(10), agent.stats
    agent.stop()
    rec.wait_for(lambda r: len(r.data()) == agent.stats.enqueued
                 and r.states()[-1]["status"] == "offline")

    topics = [m.topic for m in rec.snapshot()]
    assert not [t for t in topics if "/gwB/" in t]
    payloads = [m.payload for m in rec.snapshot()]
    assert b"forged" not in payloads and b"stray" not in payloads
    assert {s["gateway"] for s in rec.states()} == {"gwA"}
    rec.close()


def test_a_refused_log_in_is_one_error_saying_what_to_check_then_debug(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto], topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(MqttLink, "RECONNECT_MIN_DELAY", 0.05)
    monkeypatch.setattr(MqttLink, "RECONNECT_MAX_DELAY", 0.2)
    caplog.set_level("DEBUG", logger="gateway")
    broker = mosquitto_factory(users={"gwA": "pa"})
    url = broker.url.replace("mqtt://", "mqtt://gwA:wrong@")
    agent = GatewayAgent(make_config(tmp_path, url, topic_prefix, gateway_id="gwA"))
    agent.start()
    time.sleep(2)
    agent.stop()
    refusals = [r for r in caplog.records if "refused the log-in (Not authorized)" in r.message]
    assert len(refusals) > 3  # retried all along
    assert [r.levelname for r in refusals].count("ERROR") == 1
    assert {r.levelname for r in refusals} == {"ERROR", "DEBUG"}
    assert "check the user name and password in mqtt_url" in refusals[0].message
    assert "Unspecified error" not in caplog.text and "wrong" not in caplog.text


def refusals(caplog: pytest.LogCaptureFixture, text: str, count: int) -> list[str]:
    """The levels of the log lines containing ``text``, once there are ``count`` of them."""
    deadline = time.monotonic() + 10
    while True:
        levels = [r.levelname for r in caplog.records if text in r.getMessage()]
        if len(levels) >= count:
            return levels
        assert time.monotonic() < deadline, caplog.text
        time.sleep(0.02)


def test_a_topic_the_acl_refuses_is_one_error_naming_it_and_its_messages_stay(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto], topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """MQTT 5: the PUBACK says "not authorized"; Mosquitto then closes the connection, and every
    reconnect is refused alike: one ERROR for the cause, not one per message or attempt."""
    monkeypatch.setattr(MqttLink, "RECONNECT_MIN_DELAY", 0.05)
    monkeypatch.setattr(MqttLink, "RECONNECT_MAX_DELAY", 0.2)
    caplog.set_level("DEBUG", logger="gateway")
    no_data = "\n".join(line for line in acl(topic_prefix).splitlines() if "/data/" not in line)
    broker = mosquitto_factory(users={"gwA": "pa", "reader": "pr", "ingest": "pi"}, acl=no_data)
    rec = Recorder(broker.url, f"{topic_prefix}/gw/#", username="reader", password="pr")
    set_ingest(broker.url, topic_prefix, "online", username="ingest", password="pi")
    url = broker.url.replace("mqtt://", "mqtt://gwA:pa@")
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, url, topic_prefix, gateway_id="gwA",
                                     mqtt_protocol="5"), clock=clock)
    agent.start()
    try:
        drive(agent, clock, 20)
        agent.flush()
        topic = f"{topic_prefix}/gw/gwA/data/xrd1"
        levels = refusals(caplog, f"the broker refused a message on {topic} (Not authorized)", 4)
        assert (levels.count("ERROR"), set(levels)) == (1, {"ERROR", "DEBUG"})
        error = next(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
        assert "check that the broker's ACL lets user 'gwA' publish there" in error
        stats = agent.stats
        assert stats.enqueued > 1 and stats.published > 1
        assert (stats.outbox_depth, stats.acked, stats.confirmed) == (stats.enqueued, 0, 0)
        assert rec.data() == []
    finally:
        agent.stop()
        rec.close()


@pytest.mark.parametrize(("protocol", "level", "says"), [
    ("5", "ERROR", "the broker refused a message on {prefix}-other/gw/gwA/state (Not authorized)"),
    ("3.1.1", "WARNING", "or the broker's ACL refuses one of its topics (with mqtt_protocol"),
], ids=["5", "3.1.1"])
def test_a_topic_prefix_the_acl_does_not_know_is_named_or_hinted_at(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto], topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    protocol: str, level: str, says: str,
) -> None:
    """The birth goes out first on every connection: it is what the broker refuses. MQTT 3.1.1
    does not say why Mosquitto closed the connection; the warning names the likely causes."""
    monkeypatch.setattr(MqttLink, "RECONNECT_MIN_DELAY", 0.05)
    monkeypatch.setattr(MqttLink, "RECONNECT_MAX_DELAY", 0.2)
    caplog.set_level("DEBUG", logger="gateway")
    broker = mosquitto_factory(users={"gwA": "pa"}, acl=acl(topic_prefix))
    url = broker.url.replace("mqtt://", "mqtt://gwA:pa@")
    agent = GatewayAgent(make_config(tmp_path, url, f"{topic_prefix}-other", gateway_id="gwA",
                                     mqtt_protocol=protocol))
    agent.start()
    try:
        levels = refusals(caplog, says.format(prefix=topic_prefix), 3)
        assert levels.count(level) == 1 and set(levels) == {level, "DEBUG"}
    finally:
        agent.stop()
