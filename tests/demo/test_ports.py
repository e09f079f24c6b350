"""The demo's message when the API's port cannot be had says why, from the bind's errno."""

from __future__ import annotations

import multiprocessing
import os
import socket
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from instrushare.demo.stack import DemoOptions, _listen
from instrushare.errors import DemoError

NOBODY = 65534


def _refusal(options: DemoOptions) -> str:
    with pytest.raises(DemoError) as refused:
        _listen(options).close()
    return str(refused.value)


def test_a_port_in_use(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert _refusal(DemoOptions(data_dir=tmp_path, port=port)) == (
            f"cannot listen on 127.0.0.1:{port}: Address already in use; another program is"
            " using the port: choose another with --port")


def test_an_address_not_of_this_machine(tmp_path: Path) -> None:
    """192.0.2.1 is for documentation only: no machine has it."""
    assert _refusal(DemoOptions(data_dir=tmp_path, host="192.0.2.1", port=8000)) == (
        "cannot listen on 192.0.2.1:8000: Cannot assign requested address; the address is not"
        " one of this machine's")


def _listen_unprivileged(options: DemoOptions, answer: Connection) -> None:
    """In a child: as a user without root (nobody), what the demo says."""
    if os.geteuid() == 0:
        os.setuid(NOBODY)
    try:
        _listen(options).close()
        answer.send("bound")
    except DemoError as exc:
        answer.send(str(exc))


def test_a_port_below_1024_without_root(tmp_path: Path) -> None:
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as limit:
        assert int(limit.read()) > 80, "every user may listen on port 80 here"
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("fork").Process(
        target=_listen_unprivileged, args=(DemoOptions(data_dir=tmp_path, port=80), theirs))
    child.start()
    child.join(30)
    assert ours.recv() == (
        "cannot listen on 127.0.0.1:80: Permission denied; this user may not listen on it"
        " (ports below 1024 need root): choose another with --port")
