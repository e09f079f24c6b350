"""``instrushare demo`` run as a user would: no environment, embedded services, Ctrl-C to stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.services import free_port


def _start_demo(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "MQTT_URL") and not k.startswith("INSTRUSHARE_")
    }
    log = (workdir / "demo.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "instrushare", "demo", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_ready(proc: subprocess.Popen[bytes], base: str, login: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the demo exited early"
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200 and login.exists():
                return dict(
                    line.split("=", 1) for line in login.read_text().splitlines()
                )["admin"]
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("the demo did not become ready")


def _board(base: str, token: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{base}/status", params={"limit": 500}, headers={"Authorization": f"Bearer {token}"}
    )
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _latest(board: list[dict[str, Any]]) -> datetime | None:
    """The newest sample time on the board (None before the first data arrives)."""
    times = [datetime.fromisoformat(item["last_ts"]) for item in board if item["last_ts"]]
    return max(times, default=None)


def _wait_newer(base: str, token: str, than: datetime | None, timeout: float) -> datetime:
    deadline = time.monotonic() + timeout
    while True:
        latest = _latest(_board(base, token))
        if latest is not None and (than is None or latest > than):
            return latest
        assert time.monotonic() < deadline, "no new samples reached the API"
        time.sleep(1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(90) == 0


def _leftovers(workdir: Path) -> list[str]:
    """Processes still using the demo's directory (e.g. the embedded PostgreSQL)."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(workdir) in cmdline or str(process.info.get("cwd") or "").startswith(str(workdir)):
            found.append(cmdline)
    return found


def test_demo_runs_live_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    login = tmp_path / "var" / "demo" / "login.txt"
    proc = _start_demo(tmp_path, port)
    try:
        token = _wait_ready(proc, base, login, timeout=240)
        board = _board(base, token)
        assert len(board) == 30
        first = _wait_newer(base, token, None, timeout=90)
        _wait_newer(base, token, first, timeout=90)  # live data keeps flowing
    finally:
        if proc.poll() is None:
            _stop(proc)
    assert _leftovers(tmp_path) == []
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the API's port is free again

    # a second run reuses the data: the same login works at once, the history is there
    proc = _start_demo(tmp_path, port)
    try:
        assert _wait_ready(proc, base, login, timeout=120) == token
        latest = _latest(_board(base, token))
        assert latest is not None and latest >= first
    finally:
        if proc.poll() is None:
            _stop(proc)
    assert _leftovers(tmp_path) == []
