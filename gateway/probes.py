"""Probes read an instrument once per poll: a power meter, instrument software or a simulator."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

import psutil
from asyncua import ua
from asyncua.client.client import Client as OpcUaClient
from asyncua.client.ua_client import UaClientState
from asyncua.sync import ThreadLoop
from asyncua.ua.uaerrors import UaError
from pymodbus import ModbusException
from pymodbus.client import ModbusTcpClient

from gateway.errors import ProbeError
from instrushare.protocol import IDENTIFIER_PATTERN, State

logger = logging.getLogger("gateway")


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

    Words are big-endian inside; ``word_order`` says which word comes first. The value read is
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
        self._client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ModbusPowerProbe({self.host}:{self.port} unit {self.unit} @{self.address})"

    def read(self) -> Reading:
        with self._lock:
            return Reading(power_w=self._read_power())

    def close(self) -> None:
        with self._lock:
            self._client.close()  # type: ignore[no-untyped-call]

    def _read_power(self) -> float:
        try:
            if not self._client.connected and not self._client.connect():  # type: ignore[no-untyped-call]
                raise ProbeError(f"{self!r}: cannot connect")
            read = (
                self._client.read_holding_registers
                if self.register == "holding"
                else self._client.read_input_registers
            )
            response = read(self.address, count=2, device_id=self.unit)
            if response.isError():
                raise ProbeError(f"{self!r}: device answered {response}")
            value = self._client.convert_from_registers(
                response.registers, ModbusTcpClient.DATATYPE.FLOAT32, word_order=self.word_order
            )
        except ProbeError:
            self._client.close()  # type: ignore[no-untyped-call]
            raise
        except (ModbusException, OSError) as exc:
            self._client.close()  # type: ignore[no-untyped-call]
            raise ProbeError(f"{self!r}: {exc}") from exc
        assert isinstance(value, float)
        if not math.isfinite(value):
            raise ProbeError(f"{self!r}: meter returned {value}")
        return max(0.0, value * self.scale)


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

    def read(self) -> Reading:
        try:
            matched = self._matching()
            cpu = sum(proc.cpu_percent(None) for proc in matched)
            login = matched[0].username() if matched else None
        except psutil.Error as exc:  # e.g. a process that ended while read
            raise ProbeError(f"{self!r}: {exc}") from exc
        busy = bool(matched) and (self.busy_cpu_percent is None or cpu >= self.busy_cpu_percent)
        user = self.users.get(login.rsplit("\\", 1)[-1]) if busy and login else None
        return Reading(state=State.RUNNING if busy else State.IDLE, user=user,
                       metrics={"cpu_percent": round(cpu, 1)})

    def _matching(self) -> list[psutil.Process]:
        me = os.getpid()
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["name", "cmdline"]):
            name, cmdline = proc.info["name"], proc.info["cmdline"] or []
            if proc.pid != me and (name == self.process
                                   or any(self.process in arg for arg in cmdline)):
                before = self._seen.get(proc.pid)
                found[proc.pid] = before if before == proc else proc  # == : same pid and start
        self._seen = found
        return sorted(found.values(), key=lambda p: p.pid)


MACHINERY_ITEM_STATES: Mapping[str, State] = {
    "0": State.OFF, "NotAvailable": State.OFF,
    "1": State.FAULT, "OutOfService": State.FAULT,
    "2": State.IDLE, "NotExecuting": State.IDLE,
    "3": State.RUNNING, "Executing": State.RUNNING,
}
"""OPC UA for Machinery's MachineryItemState (OPC 40001-1), which LADS devices (OPC 30500)
report: a state's StateNumber, or its name as the CurrentState text -> protocol state."""

_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_ASYNCUA_LOG = logging.getLogger("asyncua")


def node_id(text: str) -> ua.NodeId:
    """Parse a NodeId written like ``ns=2;s=Instrument.State``; ValueError if it is not one."""
    try:
        parsed = ua.NodeId.from_string(text)
    except UaError as exc:
        raise ValueError(
            f"{text!r} is not an OPC UA NodeId (such as ns=2;s=Instrument.State or ns=3;i=6013)"
        ) from exc
    if isinstance(parsed, ua.ExpandedNodeId) and parsed.NamespaceUri:
        # reading it would need the server's index for that URI: ns=0 would be read instead
        raise ValueError(f"{text!r}: give the namespace by index (ns=2;...), not by URI")
    return parsed


class OpcUaProbe:
    """An instrument's own OPC UA server, such as a LADS device: state, power, user and
    metrics read from its variables, all in one Read request per poll.

    The state node's value, as text (``3``, ``Executing``, ``true``), is looked up in
    ``states`` (MACHINERY_ITEM_STATES by default). Power is multiplied by ``scale``. The user
    node's text is the user id when it is a valid platform id. A value that is not Good, not a
    number where one is needed or not in ``states`` fails the read rather than be guessed at.
    asyncua is asynchronous, so the probe runs it on an event loop thread of its own. The
    connection is reopened on the next read after any failure, so a server that comes back is
    used again without a restart.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        state_node: str | None = None,
        states: Mapping[str, State] | None = None,
        power_node: str | None = None,
        scale: float = 1.0,
        user_node: str | None = None,
        metrics: Mapping[str, str] | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        if state_node is None and power_node is None:
            raise ValueError("an OPC UA probe needs state_node or power_node")
        self.endpoint = endpoint
        self.state_node = None if state_node is None else node_id(state_node)
        self.states = dict(MACHINERY_ITEM_STATES if states is None else states)
        self.power_node = None if power_node is None else node_id(power_node)
        self.scale = scale
        self.user_node = None if user_node is None else node_id(user_node)
        self.metrics = {name: node_id(text) for name, text in (metrics or {}).items()}
        self.username = username
        self._password = password
        self.timeout_s = timeout_s
        self._nodes = [node for node in (self.state_node, self.power_node, self.user_node,
                                         *self.metrics.values()) if node is not None]
        self._loop: ThreadLoop | None = None
        self._client: OpcUaClient | None = None
        self._lock = threading.Lock()
        if _ASYNCUA_LOG.level == logging.NOTSET:  # unless configured: it logs each read at INFO
            _ASYNCUA_LOG.setLevel(logging.WARNING)

    def __repr__(self) -> str:
        where = urlsplit(self.endpoint).netloc.rpartition("@")[2]  # a password in it stays out
        return f"OpcUaProbe({where})"

    def read(self) -> Reading:
        with self._lock:
            if self._loop is None:
                self._loop = ThreadLoop(timeout=None)  # asyncua's requests time out themselves
                self._loop.daemon = True  # a probe never closed must not keep the process alive
                self._loop.start()
            results = self._loop.post(self._read_nodes())
        values = {node: self._good(node, result)
                  for node, result in zip(self._nodes, results, strict=True)}
        power = None if self.power_node is None else self._number(self.power_node, values)
        user = None if self.user_node is None else values[self.user_node]
        return Reading(
            state=None if self.state_node is None else self._state(values),
            power_w=None if power is None else max(0.0, power * self.scale),
            user=user if isinstance(user, str) and _IDENTIFIER.fullmatch(user) else None,
            metrics={name: self._number(node, values) for name, node in self.metrics.items()},
        )

    def close(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
            if loop is not None:
                try:
                    loop.post(self._disconnect())
                finally:
                    loop.stop()

    async def _read_nodes(self) -> list[ua.DataValue]:
        try:
            if self._client is not None and self._client.state is not UaClientState.CONNECTED:
                await self._disconnect()  # lost since the last read: connect again right away
            if self._client is None:
                self._client = await self._connect()
            client = self._client
            return await client.read_attributes([client.get_node(node) for node in self._nodes])
        except Exception as exc:  # not only UaError and OSError: asyncua raises plain ones too
            await self._disconnect()
            raise ProbeError(f"{self!r}: {str(exc) or type(exc).__name__}") from exc

    async def _connect(self) -> OpcUaClient:
        client = OpcUaClient(self.endpoint, timeout=self.timeout_s)
        if self.username is not None:
            client.set_user(self.username)
        if self._password is not None:
            client.set_password(self._password)
        await client.connect()
        return client

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # the server may be gone already
                await client.disconnect()

    def _good(self, node: ua.NodeId, result: ua.DataValue) -> object:
        status = result.StatusCode  # absent means Good
        if status is not None and not status.is_good():
            raise ProbeError(f"{self!r}: {node.to_string()}: {status.name}")
        return None if result.Value is None else result.Value.Value

    def _state(self, values: Mapping[ua.NodeId, object]) -> State:
        assert self.state_node is not None
        value = values[self.state_node]
        if isinstance(value, bool):
            text: str | None = "true" if value else "false"
        elif isinstance(value, int):
            text = str(int(value))
        elif isinstance(value, ua.LocalizedText):
            text = value.Text
        else:
            text = value if isinstance(value, str) else None
        state = None if text is None else self.states.get(text)
        if state is None:
            shown = value if text is None else text
            raise ProbeError(f"{self!r}: {self.state_node.to_string()} reads {shown!r}, "
                             "a value not in states")
        return state

    def _number(self, node: ua.NodeId, values: Mapping[ua.NodeId, object]) -> float:
        value = values[node]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProbeError(f"{self!r}: {node.to_string()} reads {value!r}, not a number")
        if not math.isfinite(value):
            raise ProbeError(f"{self!r}: {node.to_string()} reads {value}")
        return float(value)
