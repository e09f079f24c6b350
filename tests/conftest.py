"""Fixtures giving each test real services: a fresh PostgreSQL database and a unique topic prefix.

Addresses come from TEST_PG_ADMIN_URL and TEST_MQTT_URL (defaults: the local services).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.databases import DatabaseStock
from tests.services import Mosquitto

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MQTT_URL = os.environ.get("TEST_MQTT_URL", "mqtt://127.0.0.1:1883")


@pytest.fixture(scope="session")
def database_stock() -> Iterator[DatabaseStock]:
    stock = DatabaseStock(PG_ADMIN_URL)
    yield stock
    stock.close()


@pytest.fixture
def make_database(database_stock: DatabaseStock) -> Iterator[Callable[[], str]]:
    """Factory of migrated, empty databases, dropped after the test."""
    taken: list[str] = []

    def make() -> str:
        taken.append(database_stock.take())
        return database_stock.url(taken[-1])

    yield make
    database_stock.give_back(taken)


@pytest.fixture
def database_url(make_database: Callable[[], str]) -> str:
    return make_database()


@pytest.fixture
def mqtt_url() -> str:
    return MQTT_URL


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, so tests can share the broker."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def mosquitto_factory() -> Iterator[Callable[..., Mosquitto]]:
    """Start private mosquitto brokers (password files, ACLs, restarts); all stopped after.

    Their directories are made under /tmp, not tmp_path: run as root, mosquitto drops to its
    own user, which cannot enter pytest's 0700 tmp_path (no persistence file, no log).
    """
    brokers: list[Mosquitto] = []
    base = Path(tempfile.mkdtemp(prefix="instrushare-mosquitto-"))
    base.chmod(0o755)

    def make(**kwargs: object) -> Mosquitto:
        broker = Mosquitto(base / f"mosquitto{len(brokers)}", **kwargs)  # type: ignore[arg-type]
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()
    shutil.rmtree(base, ignore_errors=True)
