"""Ingest settings: read once from the environment (``INSTRUSHARE_*``) at the command's edge."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from instrushare.protocol import HEARTBEAT_TIMEOUT_S, INGEST_CLIENT_ID_PREFIX, Identifier
from instrushare.settings import ServiceSettings

_MQTT_MAX_RECEIVE = 65_535
# MQTT sends the keep-alive in two bytes and the session expiry in four: a larger value cannot
# go out, and paho's network thread would die on the CONNECT it cannot build.
_MQTT_MAX_KEEPALIVE_S = 2**16 - 1
_MQTT_MAX_SESSION_EXPIRY_S = 2**32 - 1


def _default_worker_id() -> str:
    host = "".join(c if c.isalnum() or c in "_.-" else "-" for c in socket.gethostname())
    return f"{host or 'ingest'}-1"[:64]


class IngestConfig(ServiceSettings):
    """How one ingest worker connects, batches and derives sessions."""

    model_config = SettingsConfigDict(populate_by_name=True)
    """``database_url=`` / ``mqtt_url=`` work as well as the environment names."""

    worker_id: Identifier = Field(default_factory=_default_worker_id)
    """Stable per worker: names its MQTT client (``ingest-<worker_id>``) and persistent session."""
    share_group: Identifier = "ingest"
    """Workers in one share group split the data between them."""
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    """MQTT 5 (default) or 3.1.1, for brokers that speak only that (the demo's embedded amqtt)."""
    shared_subscription: bool = True
    """Subscribe as ``$share/<share_group>/...``; off for brokers without shared subscriptions
    (then run a single worker: each would receive everything)."""
    batch_max_messages: int = Field(default=1000, ge=1)
    batch_max_samples: int = Field(default=20_000, ge=1)
    """A batch closes once its messages carry this many samples and events."""
    batch_max_delay_s: float = Field(default=0.2, gt=0)
    writers: int = Field(default=2, ge=1, le=16)
    """Batches written at once, each on its own connection: while one waits for the
    database, another is copied. Each holds a batch, so memory grows with the count."""
    receive_maximum: int = Field(default=5000, ge=1, le=_MQTT_MAX_RECEIVE)
    """MQTT 5 Receive Maximum: unacknowledged messages the broker may have in flight to us.

    Under MQTT 3.1.1 the broker's own limit applies (Mosquitto ``max_inflight_messages``)."""
    session_max_gap_s: float = Field(default=HEARTBEAT_TIMEOUT_S, gt=0)
    """Two running samples further apart than this belong to different usage sessions: the
    API's heartbeat timeout, past which the gap is offline time, not running."""
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=60, le=_MQTT_MAX_SESSION_EXPIRY_S)
    """How long the broker keeps our session (and queues for us) while we are away."""
    keepalive_s: int = Field(default=30, ge=5, le=_MQTT_MAX_KEEPALIVE_S)
    announce_interval_s: float = Field(default=10.0, gt=0, le=300)
    """How often the worker re-announces itself online. Gateways trust only announcements made
    while they are connected, so a gateway that connects waits at most this long to publish."""
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    @model_validator(mode="after")
    def _window_holds_a_batch(self) -> IngestConfig:
        if self.receive_maximum < self.batch_max_messages:
            raise ValueError(
                f"receive_maximum ({self.receive_maximum}) must be >= batch_max_messages "
                f"({self.batch_max_messages}): the broker stops sending at that many unacked"
                " messages, so a larger batch could never fill"
            )
        return self

    @property
    def client_id(self) -> str:
        return INGEST_CLIENT_ID_PREFIX + self.worker_id
