"""Probes read an instrument once per poll: a power meter, instrument software or a simulator."""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pymodbus import ModbusException
from pymodbus.client import ModbusTcpClient

from gateway.errors import ProbeError
from instrushare.protocol import State

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
