"""ModbusPowerProbe against pymodbus's own TCP server, on a free port in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Literal

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway import ModbusPowerProbe, ProbeError
from tests.services import free_port, wait_for_port

UNIT = 3
ADDRESS = 10


class MeterServer:
    """A Modbus TCP device whose float32 power register the test sets."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.words: dict[int, list[int]] = {3: [0, 0], 4: [0, 0]}  # function code -> registers
        self.device = SimDevice(
            id=UNIT,
            simdata=[SimData(address=0, count=100, values=0, datatype=DataType.REGISTERS)],
            action=self._serve_power,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusTcpServer | None = None
        self._thread: threading.Thread | None = None

    async def _serve_power(self, function_code: int, start: int, address: int, count: int,
                           registers: list[int], set_values: object) -> None:
        for offset, word in enumerate(self.words.get(function_code, [])):
            index = ADDRESS + offset - start
            if 0 <= index < len(registers):
                registers[index] = word

    def set_power(self, value: float, *, word_order: Literal["big", "little"] = "big",
                  register: Literal["holding", "input"] = "holding") -> None:
        self.words[3 if register == "holding" else 4] = ModbusTcpClient.convert_to_registers(
            value, ModbusTcpClient.DATATYPE.FLOAT32, word_order=word_order
        )

    def start(self) -> None:
        ready = threading.Event()

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._server = ModbusTcpServer(self.device, address=("127.0.0.1", self.port))
            ready.set()
            await self._server.serve_forever()

        def run() -> None:
            asyncio.run(serve())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(5)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._loop and self._server and self._thread:
            stopping = self._server.shutdown()  # type: ignore[no-untyped-call]
            asyncio.run_coroutine_threadsafe(stopping, self._loop).result(5)
            self._thread.join(5)
        self._thread = None


@pytest.fixture
def meter() -> Iterator[MeterServer]:
    server = MeterServer(free_port())
    server.start()
    yield server
    server.stop()


def test_reads_exact_values(meter: MeterServer) -> None:
    probe = ModbusPowerProbe(host="127.0.0.1", port=meter.port, unit=UNIT, address=ADDRESS)
    for value in (0.0, 41.5, 1234.25, 0.125):
        meter.set_power(value)
        assert probe.read().power_w == value
    probe.close()


def test_word_order_input_registers_and_scale(meter: MeterServer) -> None:
    probe = ModbusPowerProbe(host="127.0.0.1", port=meter.port, unit=UNIT, address=ADDRESS,
                             register="input", word_order="little", scale=1000.0)
    meter.set_power(1.5, word_order="little", register="input")
    meter.set_power(9.0, word_order="little", register="holding")
    assert probe.read().power_w == 1500.0
    probe.close()


def test_stopped_meter_gives_a_clear_error_then_recovers(meter: MeterServer) -> None:
    probe = ModbusPowerProbe(host="127.0.0.1", port=meter.port, unit=UNIT, address=ADDRESS,
                             timeout_s=5.0)
    meter.set_power(77.0)
    assert probe.read().power_w == 77.0
    meter.stop()
    with pytest.raises(ProbeError, match=f"127.0.0.1:{meter.port}"):
        probe.read()
    with pytest.raises(ProbeError):
        probe.read()
    meter.start()
    meter.set_power(88.0)
    assert probe.read().power_w == 88.0
    probe.close()


def test_a_connection_the_meter_closed_between_polls_is_opened_again_in_the_same_read(
    meter: MeterServer,
) -> None:
    """Meters close idle connections (many after 10 to 60 s, less than a poll interval):
    the next poll still reads, on a new connection, instead of failing to find it closed."""
    probe = ModbusPowerProbe(host="127.0.0.1", port=meter.port, unit=UNIT, address=ADDRESS,
                             timeout_s=5.0)
    meter.set_power(50.0)
    assert probe.read().power_w == 50.0
    meter.stop()  # closes every connection
    meter.start()
    meter.set_power(60.0)
    assert probe.read().power_w == 60.0
    probe.close()


def test_unknown_unit_is_an_error(meter: MeterServer) -> None:
    probe = ModbusPowerProbe(host="127.0.0.1", port=meter.port, unit=UNIT + 1, address=ADDRESS,
                             timeout_s=0.5)
    with pytest.raises(ProbeError):
        probe.read()
    probe.close()


def test_a_silent_device_says_to_check_the_unit() -> None:
    """A Modbus TCP-to-RTU gateway takes the connection and stays silent for a unit no meter
    on its line answers."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        probe = ModbusPowerProbe(host="127.0.0.1", port=silent.getsockname()[1], unit=UNIT,
                                 address=ADDRESS, timeout_s=0.5)
        with pytest.raises(ProbeError, match=r"no answer within 0.5 s \(check unit"):
            probe.read()
        probe.close()


def test_an_exception_reply_says_what_to_check(meter: MeterServer) -> None:
    probe = ModbusPowerProbe(host="127.0.0.1", port=meter.port, unit=UNIT, address=500,
                             timeout_s=5.0)
    with pytest.raises(ProbeError, match=r"exception 2: illegal data address \(check register,"
                                         r" and address: counted from 0"):
        probe.read()
    probe.close()


def test_an_unreachable_meter_is_one_probe_error_naming_the_cause_not_library_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = ModbusPowerProbe(host="127.0.0.1", port=free_port(), unit=UNIT, address=ADDRESS,
                             timeout_s=0.5)
    caplog.set_level("DEBUG")
    with pytest.raises(ProbeError, match="cannot connect: connection refused: nothing listens"
                                         " on that port"):
        probe.read()
    probe.close()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("pymodbus")] == []
