"""Probes read an instrument once per poll: a power meter, instrument software or a simulator
(the instrument's own OPC UA server: ``opcua_probe``)."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

import psutil
from pydantic import ValidationError
from pymodbus import ModbusException
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from gateway.errors import ProbeError
from instrushare.protocol import Sample, State

logger = logging.getLogger("gateway")
_PYMODBUS_LOG = logging.getLogger("pymodbus")

MODBUS_EXCEPTIONS = {
    1: "illegal function (the device does not support reading this register type)",
    2: "illegal data address (check register, and address: counted from 0, a manual's"
       " register 40001 is holding address 0)",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge (busy with a long request)",
    6: "device busy",
    8: "memory parity error",
    10: "gateway path unavailable (check unit)",
    11: "gateway target device failed to respond (check unit)",
}
"""Modbus exception codes (Modbus Application Protocol v1.1b3, section 7) and what to check."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What a probe saw at one instant; every field is optional."""

    power_w: float | None = None
    """Measured electrical power in watts."""
    state: State | None = None
    """Explicit state from the instrument software (fault, maintenance, ...); wins over power."""
    user: str | None = None
    """User id when known (card reader, login)."""
    metrics: dict[str, float] = field(default_factory=dict)


def check_reading(reading: Reading) -> Reading:
    """The reading if the protocol takes it as a sample; a ProbeError naming what it refuses
    otherwise (NaN, negative power, a user that is not an id, ...), so that it is dropped here
    and not with the whole message at the ingest."""
    try:
        Sample(ts=datetime.now(UTC), state=State.OFF if reading.state is None else reading.state,
               power_w=reading.power_w, user=reading.user, metrics=reading.metrics)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, error['loc']))} {error['input']!r}: "
                             f"{error['msg']}" for error in exc.errors(include_url=False))
        raise ProbeError(f"reading ignored: {problems}") from None
    return reading


class Probe(Protocol):
    def read(self) -> Reading:
        """Return the current reading; raise ProbeError when the instrument cannot be read."""
        ...


@runtime_checkable
class Closeable(Protocol):
    """A probe holding a connection, closed when the gateway stops."""

    def close(self) -> None: ...


class SimulatedProbe:
    """Returns whatever reading a simulator last ``set``; starts with an instrument that is off."""

    __slots__ = ("_reading",)

    def __init__(self, reading: Reading | None = None) -> None:
        self._reading = reading if reading is not None else Reading(power_w=0.0)

    def set(self, reading: Reading) -> None:
        self._reading = reading

    def read(self) -> Reading:
        return self._reading


class ModbusPowerProbe:
    """A Modbus TCP power meter holding power as a float32 in two registers.

    Words are big-endian inside; ``word_order`` says which word comes first. ``address`` is the
    protocol address, counted from 0 (a manual's holding register 40001 is 0). The value read is
    multiplied by ``scale`` (e.g. 1000 for a meter reporting kW). The connection is reopened on
    the next read after any failure, so a meter that comes back is used again without a restart.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int = 502,
        unit: int = 1,
        address: int,
        register: Literal["holding", "input"] = "holding",
        word_order: Literal["big", "little"] = "big",
        scale: float = 1.0,
        timeout_s: float = 2.0,
    ) -> None:
        if register not in ("holding", "input"):
            raise ValueError(f"register must be 'holding' or 'input', not {register!r}")
        if word_order not in ("big", "little"):
            raise ValueError(f"word_order must be 'big' or 'little', not {word_order!r}")
        self.host = host
        self.port = port
        self.unit = unit
        self.address = address
        self.register = register
        self.word_order: Literal["big", "little"] = word_order
        self.scale = scale
        self.timeout_s = timeout_s
        self._client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)
        self._lock = threading.Lock()
        if _PYMODBUS_LOG.level == logging.NOTSET:  # unless configured: ProbeError says it all
            _PYMODBUS_LOG.setLevel(logging.CRITICAL)

    def __repr__(self) -> str:
        return f"ModbusPowerProbe({self.host}:{self.port} unit {self.unit} @{self.address})"

    def read(self) -> Reading:
        with self._lock:
            return Reading(power_w=self._read_power())

    def close(self) -> None:
        with self._lock:
            self._client.close()  # type: ignore[no-untyped-call]

    def _read_power(self) -> float:
        """One reading. A connection kept from the last poll that the meter has closed since
        (many close idle ones after 10 to 60 s) shows only when read: the read is then tried
        once more on a new connection before it counts as a failure."""
        reused = self._client.connected
        try:
            try:
                value = self._read_value()
            except (ConnectionException, OSError) as exc:
                if not reused or isinstance(exc, TimeoutError):
                    raise
                self._client.close()  # type: ignore[no-untyped-call]
                value = self._read_value()
        except ProbeError:
            self._client.close()  # type: ignore[no-untyped-call]
            raise
        except (ModbusException, OSError) as exc:
            self._client.close()  # type: ignore[no-untyped-call]
            raise ProbeError(f"{self!r}: {_read_failure(exc, self.timeout_s)}") from exc
        if not math.isfinite(value):
            raise ProbeError(f"{self!r}: meter returned {value}")
        return max(0.0, value * self.scale)

    def _read_value(self) -> float:
        if not self._client.connected:
            self._connect()
        read = (
            self._client.read_holding_registers
            if self.register == "holding"
            else self._client.read_input_registers
        )
        response = read(self.address, count=2, device_id=self.unit)
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            raise ProbeError(f"{self!r}: device answered exception {code}: "
                             + MODBUS_EXCEPTIONS.get(code, "unknown"))
        value = self._client.convert_from_registers(
            response.registers, ModbusTcpClient.DATATYPE.FLOAT32, word_order=self.word_order
        )
        assert isinstance(value, float)
        return value

    def _connect(self) -> None:
        """Open the client's socket here: its own ``connect()`` returns False and logs why
        on pymodbus's logger, silenced by ``__init__``, where no operator sees it."""
        try:
            self._client.socket = socket.create_connection((self.host, self.port),
                                                           timeout=self.timeout_s)
        except OSError as exc:
            why = connect_failure(exc, self.timeout_s, "the meter's Modbus TCP server")
            raise ProbeError(f"{self!r}: cannot connect: {why}") from exc


def _read_failure(exc: ModbusException | OSError, timeout_s: float) -> str:
    """Why a read on an open connection failed, and what to check."""
    if isinstance(exc, ModbusIOException):
        return (f"no answer within {timeout_s:g} s (check unit: a Modbus TCP-to-RTU gateway"
                " stays silent for a unit no meter answers; and that port is the meter's"
                f" Modbus TCP server) [{exc}]")
    if isinstance(exc, ConnectionException | ConnectionResetError):
        return ("the connection was closed or reset on reading (check that port is a Modbus"
                f" TCP server, and that the meter takes one more client) [{exc}]")
    return str(exc)


def connect_failure(exc: OSError, timeout_s: float, server: str) -> str:
    """Why a TCP connection to an instrument's ``server`` failed, and what to check."""
    if isinstance(exc, socket.gaierror):
        return f"host name not resolved ({exc.strerror}): check host"
    if isinstance(exc, ConnectionRefusedError):
        return (f"connection refused: nothing listens on that port (check port, and that"
                f" {server} is enabled)")
    if isinstance(exc, TimeoutError):
        return (f"timed out after {timeout_s:g} s: no answer (check host, that the instrument"
                " is on, and that no firewall drops the traffic)")
    return f"{(exc.strerror or str(exc)).lower()} (check host and the network)"


class ProcessProbe:
    """The instrument's acquisition software on the gateway's own computer: ``running`` while
    a process named ``process`` (or whose command line contains it) runs and, with
    ``busy_cpu_percent``, uses at least that much CPU in total, so software left open between
    measurements counts as idle; ``idle`` otherwise. A process cannot tell an instrument that
    is switched off from an idle one. The user is the process owner's login mapped through
    ``users`` (login -> platform user id); a login not in it is reported as unknown, since a
    raw login need not be a valid platform id.
    """

    def __init__(
        self, *, process: str, busy_cpu_percent: float | None = None,
        users: Mapping[str, str] | None = None,
    ) -> None:
        if not process:
            raise ValueError("process must name the acquisition software")
        self.process = process
        self.busy_cpu_percent = busy_cpu_percent
        self.users = dict(users or {})
        self._seen: dict[int, psutil.Process] = {}
        """Processes read before, by pid: CPU use is measured between two reads of one."""

    def __repr__(self) -> str:
        return f"ProcessProbe({self.process!r})"

    FIRST_SAMPLE_S = 0.2
    """A process seen for the first time (at start, or started since the last poll) has no
    CPU use to compare with yet: it is measured over this long instead of read as 0 %."""

    def read(self) -> Reading:
        try:
            matched, fresh = self._matching()
            if fresh and self.busy_cpu_percent is not None:
                for proc in fresh:
                    proc.cpu_percent(None)
                time.sleep(self.FIRST_SAMPLE_S)
            cpu = sum(proc.cpu_percent(None) for proc in matched)
            login = matched[0].username() if matched else None
        except psutil.Error as exc:  # e.g. a process that ended while read
            raise ProbeError(f"{self!r}: {exc}") from exc
        busy = bool(matched) and (self.busy_cpu_percent is None or cpu >= self.busy_cpu_percent)
        user = self.users.get(login.rsplit("\\", 1)[-1]) if busy and login else None
        return Reading(state=State.RUNNING if busy else State.IDLE, user=user,
                       metrics={"cpu_percent": round(cpu, 1)})

    def _matching(self) -> tuple[list[psutil.Process], list[psutil.Process]]:
        """The processes running the software, and those of them not seen at the last read."""
        me = os.getpid()
        found: dict[int, psutil.Process] = {}
        fresh = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            name, cmdline = proc.info["name"], proc.info["cmdline"] or []
            if proc.pid != me and (name == self.process
                                   or any(self.process in arg for arg in cmdline)):
                before = self._seen.get(proc.pid)
                if before == proc:  # same pid and start time
                    found[proc.pid] = before
                else:
                    found[proc.pid] = proc
                    fresh.append(proc)
        self._seen = found
        return sorted(found.values(), key=lambda p: p.pid), fresh

