"""Acknowledgements go only to the broker session that knows their packet ids."""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace

from paho.mqtt.enums import MQTTErrorCode

from ingest._config import IngestConfig
from ingest._session import BrokerSession

OK = SimpleNamespace(is_failure=False)


def _session(topic_prefix: str, mqtt_url: str, database_url: str) -> tuple[
        BrokerSession, list[int], list[int]]:
    config = IngestConfig(  # type: ignore[call-arg]  # the aliases are the env names
        DATABASE_URL=database_url, MQTT_URL=mqtt_url, topic_prefix=topic_prefix,
        worker_id=f"acks-{topic_prefix}")
    delivered: list[int] = []
    session = BrokerSession(config, deliver=lambda _t, _p, mid, _q: delivered.append(mid))
    sent: list[int] = []

    def ack_all(mids: Iterable[int]) -> int:  # what would go to the broker
        before = len(sent)
        sent.extend(mids)
        return len(sent) - before

    session._client.ack_all = ack_all  # type: ignore[method-assign]
    session._client.subscribe = lambda *a, **k: (MQTTErrorCode.MQTT_ERR_SUCCESS, 1)  # type: ignore[method-assign]
    return session, delivered, sent


def _connect(session: BrokerSession, *, session_present: bool) -> None:
    session._on_connect(session._client, None, SimpleNamespace(session_present=session_present),
                        OK, None)


def test_acks_of_a_lost_session_are_not_sent_to_the_new_one(
    topic_prefix: str, mqtt_url: str, database_url: str
) -> None:
    session, delivered, sent = _session(topic_prefix, mqtt_url, database_url)
    _connect(session, session_present=False)
    session._deliver("p/gw/g/data/i", b"{}", 1, 1)
    first = delivered[-1]
    session._on_disconnect(session._client, None, None, OK, None)
    assert session.acknowledge([(first, 1)]) == 1 and sent == []  # not while disconnected
    _connect(session, session_present=True)  # the session kept: its packet ids still count
    session._deliver("p/gw/g/data/i", b"{}", 2, 1)
    assert session.acknowledge([(first, 1), (delivered[-1], 1)]) == 2 and sent == [1, 2]
    session._on_disconnect(session._client, None, None, OK, None)
    _connect(session, session_present=False)  # a new session numbers from 1 again
    session._deliver("p/gw/g/data/i", b"{}", 1, 1)
    sent.clear()
    assert session.acknowledge([(first, 1), (delivered[-1], 1)]) == 2
    assert sent == [1]  # the new message 1 only, not the old message 1
