"""Every stand-in ingest worker a test started stops announcing when the test ends; a small
disk of its own for the tests that fill one; quick reconnects for the tests that ask."""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.publisher import MqttLink
from tests.gateway.helpers import IngestStandIn


@pytest.fixture(autouse=True)
def _stop_stand_in_ingest() -> Iterator[None]:
    yield
    IngestStandIn.stop_all()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """The folder of a 1 MiB file system (tmpfs), unmounted after the test. Mounting needs
    root, as .ci/run has: elsewhere the test fails and says so, it is never skipped."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.fail(f"cannot mount a tmpfs (run the tests as root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        # lazy: a test that failed before closing its outbox keeps the file system busy, and
        # an error here would hide that failure
        unmounted = subprocess.run(["umount", "--lazy", str(folder)], capture_output=True,
                                   text=True)
        if unmounted.returncode:
            warnings.warn(f"cannot unmount {folder}: {unmounted.stderr.strip()}", stacklevel=1)


@pytest.fixture
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnect after 0.1 to 0.3 s (not 1 to 60 s): for tests that cut the connection."""
    monkeypatch.setattr(MqttLink, "RECONNECT_MIN_DELAY", 0.1)
    monkeypatch.setattr(MqttLink, "RECONNECT_MAX_DELAY", 0.3)
