"""Every stand-in ingest worker a test started stops announcing when the test ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.helpers import IngestStandIn


@pytest.fixture(autouse=True)
def _stop_stand_in_ingest() -> Iterator[None]:
    yield
    IngestStandIn.stop_all()
