"""MQTT over TLS (``mqtts://``): a gateway and an ingest worker reach a TLS-only broker,
checking its certificate against a private CA; a client that cannot check it gets nowhere."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import GatewayAgent
from ingest import IngestConfig, IngestWorker
from instrushare.settings import MqttAddress
from tests.gateway.helpers import FastClock, drive, make_config
from tests.ingest.conftest import count, register, wait_until
from tests.services import Mosquitto


def test_gateway_and_ingest_over_tls(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto], database_url: str,
    topic_prefix: str,
) -> None:
    broker = mosquitto_factory(tls=True)
    assert broker.url.startswith("mqtts://")
    register(database_url, {"xrd1": "gw1"})
    worker = IngestWorker(IngestConfig(  # type: ignore[call-arg]  # aliases are the env names
        DATABASE_URL=database_url, MQTT_URL=broker.url, topic_prefix=topic_prefix,
        worker_id=f"tls-{topic_prefix}", batch_max_delay_s=0.05))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert worker.online.wait(10), "the worker came online over TLS"
        clock = FastClock()
        agent = GatewayAgent(make_config(tmp_path, broker.url, topic_prefix, gateway_id="gw1"),
                             clock=clock)
        agent.start()
        try:
            drive(agent, clock, 30)
            agent.flush()
            assert agent.wait_drained(15), agent.stats
        finally:
            agent.stop()
        wait_until(lambda: count(database_url, "ingested_message") == agent.stats.enqueued,
                   what="every message stored")
        assert count(database_url, "state_sample") == 30
    finally:
        stop.set()
        thread.join(30)


def test_a_broker_certificate_nobody_vouches_for_is_refused(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto], topic_prefix: str,
) -> None:
    broker = mosquitto_factory(tls=True)
    # the system's CAs do not know the private one: the gateway never connects
    untrusted = broker.url.split("?")[0]
    clock = FastClock()
    agent = GatewayAgent(make_config(tmp_path, untrusted, topic_prefix), clock=clock)
    agent.start()
    try:
        drive(agent, clock, 3)
        agent.flush()
        assert not agent.wait_drained(3)
        assert agent.stats.published == 0
    finally:
        agent.stop()


@pytest.mark.parametrize(("url", "message"), [
    ("mqtt://h:1883?ca=/etc/hostname", "needs mqtts://"),
    ("mqtts://h?ca=/no/such/ca.pem", "no CA certificate file"),
    ("mqtts://h?cafile=/etc/hostname", "unknown parameter 'cafile'"),
    ("mqtts://h?ca=/etc/hostname", "holds no PEM certificate"),
    ("https://h", "must start with mqtt:// or mqtts://"),
])
def test_bad_mqtt_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MqttAddress.from_url(url)


def test_mqtts_defaults_to_port_8883() -> None:
    address = MqttAddress.from_url("mqtts://gw1:pw@broker.example.org")
    assert (address.tls, address.port, address.ca_file, address.username) == (
        True, 8883, None, "gw1")
