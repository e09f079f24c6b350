"""OpcUaProbe against asyncua's own OPC UA server, on a free port in a thread."""

from __future__ import annotations

import contextlib
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.node import Node
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_server import InternalServer
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.sync import ThreadLoop
from pydantic import ValidationError

from gateway import (
    MACHINERY_ITEM_STATES,
    ConfigError,
    GatewayAgent,
    GatewayConfig,
    OpcUaProbe,
    ProbeError,
    Reading,
    load_config,
)
from gateway.agent import build_probe
from gateway.config import InstrumentConfig, ProbeConfig
from instrushare.protocol import EventType, State
from tests.gateway.helpers import FastClock, Recorder, set_ingest
from tests.services import free_port

VARIABLES: dict[str, tuple[Any, ua.VariantType]] = {
    "State": (2, ua.VariantType.Int32),  # a MachineryItemState StateNumber
    "CurrentState": (ua.LocalizedText("NotExecuting"), ua.VariantType.LocalizedText),
    "Mode": ("Standby", ua.VariantType.String),
    "Busy": (False, ua.VariantType.Boolean),
    "Power": (0.0, ua.VariantType.Double),
    "User": ("", ua.VariantType.String),
    "ColumnTemp": (30.0, ua.VariantType.Double),
    "Injections": (0, ua.VariantType.UInt32),
}
"""The instrument's variables: name -> (initial value, OPC UA type)."""
INSTRUMENT_NS = "urn:instrushare:test-instrument"
OTHER_NS = "urn:instrushare:other-instrument;v2"
"""Another instrument's namespace on the same server, with the same NodeIds and its variables
at their initial values; its ';' is written %3B in a NodeId."""


def by_uri(name: str, namespace: str = INSTRUMENT_NS) -> str:
    """A variable's NodeId with the namespace given by URI."""
    return f"nsu={namespace.replace(';', '%3B')};s=Instrument.{name}"


class OneOperator(UserManager):
    """Anonymous sessions, and the user ``operator`` with the password ``s3cret``."""

    def get_user(self, iserver: InternalServer, username: str | None = None,
                 password: str | None = None, certificate: Any = None) -> User | None:
        if username is None or (username, password) == ("operator", "s3cret"):
            return User(role=UserRole.User, name=username)
        return None


class InstrumentServer:
    """An instrument's OPC UA server whose variables the test writes; stop() and start() keep
    its address space and port. OTHER_NS is registered after the instrument's namespace or,
    with ``other_first``, before it: the instrument's namespace index then differs, as after
    reconfiguring a real server."""

    def __init__(self, port: int | None = None, *, other_first: bool = False) -> None:
        self.port = free_port() if port is None else port
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}"
        self.loop = ThreadLoop(timeout=10)
        self.loop.daemon = True
        self.loop.start()
        self.server = Server(user_manager=OneOperator())
        self.variables: dict[str, Node] = {}
        self.namespace = 0
        self.loop.post(self._build(other_first))

    async def _build(self, other_first: bool) -> None:
        await self.server.init()
        self.server.disable_clock()  # its one-second tick would make every stop() wait for it
        self.server.set_endpoint(self.endpoint)
        for uri in (OTHER_NS, INSTRUMENT_NS) if other_first else (INSTRUMENT_NS, OTHER_NS):
            index = await self.server.register_namespace(uri)
            instrument = await self.server.nodes.objects.add_object(
                f"ns={index};s=Instrument", "Instrument")
            variables = {name: await instrument.add_variable(
                f"ns={index};s=Instrument.{name}", name, value, vtype)
                for name, (value, vtype) in VARIABLES.items()}
            if uri == INSTRUMENT_NS:
                self.namespace, self.variables = index, variables

    def node(self, name: str) -> str:
        return f"ns={self.namespace};s=Instrument.{name}"

    def set(self, **values: Any) -> None:
        for name, value in values.items():
            self.loop.post(self.variables[name].write_value(value, VARIABLES[name][1]))

    def reset(self) -> None:
        self.set(**{name: value for name, (value, _) in VARIABLES.items()})

    def start(self) -> None:
        self.loop.post(self.server.start())

    def stop(self) -> None:
        self.loop.post(self.server.stop())


@pytest.fixture(scope="module")
def instrument() -> Iterator[InstrumentServer]:
    server = InstrumentServer()  # building the address space takes about a second: shared
    server.start()
    yield server
    server.stop()
    server.loop.stop()


@pytest.fixture
def server(instrument: InstrumentServer) -> InstrumentServer:
    instrument.reset()
    return instrument


@pytest.fixture
def make_probe(server: InstrumentServer) -> Iterator[Callable[..., OpcUaProbe]]:
    """Probes of the test's server, closed after the test."""
    probes: list[OpcUaProbe] = []

    def make(**fields: Any) -> OpcUaProbe:
        probes.append(OpcUaProbe(endpoint=server.endpoint, timeout_s=0.5, **fields))
        return probes[-1]

    yield make
    for probe in probes:
        probe.close()


def test_default_mapping_is_machinery_item_state(
    server: InstrumentServer, make_probe: Callable[..., OpcUaProbe]
) -> None:
    by_number = make_probe(state_node=server.node("State"))
    by_name = make_probe(state_node=server.node("CurrentState"))
    for number, name, state in [(0, "NotAvailable", State.OFF), (1, "OutOfService", State.FAULT),
                                (2, "NotExecuting", State.IDLE), (3, "Executing", State.RUNNING)]:
        server.set(State=number, CurrentState=ua.LocalizedText(name))
        assert by_number.read() == by_name.read() == Reading(state=state)
    assert by_number.states == MACHINERY_ITEM_STATES


def test_custom_mappings_of_text_and_booleans(
    server: InstrumentServer, make_probe: Callable[..., OpcUaProbe]
) -> None:
    mode = make_probe(state_node=server.node("Mode"), states={
        "Measuring": State.RUNNING, "Standby": State.IDLE, "Service": State.MAINTENANCE})
    busy = make_probe(state_node=server.node("Busy"),
                      states={"true": State.RUNNING, "false": State.IDLE})
    assert (mode.read().state, busy.read().state) == (State.IDLE, State.IDLE)
    server.set(Mode="Service", Busy=True)
    assert (mode.read().state, busy.read().state) == (State.MAINTENANCE, State.RUNNING)


def test_power_user_and_metrics_follow_the_server(
    server: InstrumentServer, make_probe: Callable[..., OpcUaProbe]
) -> None:
    probe = make_probe(
        state_node=server.node("State"), power_node=server.node("Power"), scale=1000.0,
        user_node=server.node("User"),
        metrics={"column_temp_c": server.node("ColumnTemp"),
                 "injections": server.node("Injections")},
    )
    first = probe.read()
    assert (first.state, first.power_w, first.user) == (State.IDLE, 0.0, None)  # "" is no user
    assert first.metrics == {"column_temp_c": 30.0, "injections": 0.0}
    server.set(State=3, Power=1.25, User="u-li", ColumnTemp=35.5, Injections=12)
    second = probe.read()
    assert (second.state, second.power_w, second.user) == (State.RUNNING, 1250.0, "u-li")
    assert second.metrics == {"column_temp_c": 35.5, "injections": 12.0}
    server.set(Power=-0.002, User="not a platform id")
    third = probe.read()
    assert (third.power_w, third.user) == (0.0, None)  # negative noise is no power


def test_power_alone_leaves_the_state_to_the_detector(
    server: InstrumentServer, make_probe: Callable[..., OpcUaProbe]
) -> None:
    server.set(Power=450.0)
    reading = make_probe(power_node=server.node("Power")).read()
    assert (reading.state, reading.power_w, reading.metrics) == (None, 450.0, {})


def test_an_unmapped_state_is_an_error_naming_value_and_node(
    server: InstrumentServer, make_probe: Callable[..., OpcUaProbe]
) -> None:
    probe = make_probe(state_node=server.node("State"))
    server.set(State=7)
    with pytest.raises(ProbeError, match=re.escape(f"{server.node('State')} reads '7', a value "
                                                   "not in states")):
        probe.read()
    server.set(State=3)
    assert probe.read().state == State.RUNNING


@pytest.mark.parametrize(
    ("fields", "value", "message"),
    [
        ({"power_node": "Power"}, {"Power": math.nan}, r"Instrument\.Power reads nan"),
        ({"power_node": "Mode"}, {}, "'Standby', not a number"),
        ({"power_node": "Busy"}, {}, "False, not a number"),
        ({"power_node": "Power", "metrics": {"t": "ColumnTemp"}}, {"ColumnTemp": math.inf},
         "ColumnTemp reads inf"),
        ({"state_node": "Nowhere"}, {}, r"Instrument\.Nowhere: BadNodeIdUnknown"),
    ],
)
def test_values_that_cannot_be_used_are_errors(
    server: InstrumentServer, make_probe: Callable[..., OpcUaProbe], fields: dict[str, Any],
    value: dict[str, Any], message: str,
) -> None:
    metrics = {name: server.node(node) for name, node in fields.pop("metrics", {}).items()}
    probe = make_probe(metrics=metrics, **{key: server.node(node) for key, node in fields.items()})
    server.set(**value)
    with pytest.raises(ProbeError, match=message):
        probe.read()


def test_user_authentication(
    server: InstrumentServer, make_probe: Callable[..., OpcUaProbe]
) -> None:
    right = make_probe(state_node=server.node("State"), username="operator", password="s3cret")
    assert right.read().state == State.IDLE
    wrong = make_probe(state_node=server.node("State"), username="operator", password="guess")
    with pytest.raises(ProbeError, match="BadUserAccessDenied"):
        wrong.read()


def test_stopped_server_is_an_error_then_the_same_probe_reads_again(
    server: InstrumentServer, make_probe: Callable[..., OpcUaProbe]
) -> None:
    probe = make_probe(state_node=server.node("State"), power_node=server.node("Power"))
    server.set(State=3, Power=90.0)
    assert probe.read().power_w == 90.0
    server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(ProbeError, match=f"OpcUaProbe\\(127.0.0.1:{server.port}\\)"):
            probe.read()
        with pytest.raises(ProbeError):  # refused: nothing listens
            probe.read()
        assert time.monotonic() - started < 1.0
    finally:
        server.start()
    server.set(State=1, Power=5.0)
    reading = probe.read()
    assert (reading.state, reading.power_w) == (State.FAULT, 5.0)


def test_node_ids_may_give_the_namespace_by_uri(
    server: InstrumentServer, make_probe: Callable[..., OpcUaProbe]
) -> None:
    probe = make_probe(state_node=by_uri("State"), power_node=by_uri("Power"), metrics={
        "other_power": by_uri("Power", OTHER_NS), "column_temp_c": server.node("ColumnTemp")})
    server.set(State=3, Power=850.0, ColumnTemp=41.5)
    assert probe.read() == Reading(state=State.RUNNING, power_w=850.0,
                                   metrics={"other_power": 0.0, "column_temp_c": 41.5})
    server.set(State=7)
    with pytest.raises(ProbeError, match=re.escape(f"{by_uri('State')} reads '7', a value not "
                                                   "in states")):  # written as configured
        probe.read()


def test_an_unknown_namespace_uri_is_an_error_naming_it_and_the_node(
    server: InstrumentServer, make_probe: Callable[..., OpcUaProbe]
) -> None:
    probe = make_probe(state_node=server.node("State"),
                       power_node="nsu=urn:vendor:nowhere;s=Instrument.Power")
    message = re.escape("nsu=urn:vendor:nowhere;s=Instrument.Power: the server has no "
                        "namespace 'urn:vendor:nowhere'")
    for _ in range(2):  # looked up again on the next connection
        with pytest.raises(ProbeError, match=message):
            probe.read()


def test_a_namespace_renumbered_by_a_restart_is_followed(
    server: InstrumentServer, make_probe: Callable[..., OpcUaProbe]
) -> None:
    probe = make_probe(state_node=by_uri("State"), power_node=by_uri("Power"))
    server.set(State=3, Power=90.0)
    assert probe.read() == Reading(state=State.RUNNING, power_w=90.0)
    renumbered = InstrumentServer(server.port, other_first=True)  # not listening until start()
    assert renumbered.namespace != server.namespace
    server.stop()
    try:
        renumbered.start()
        renumbered.set(State=1, Power=5.0)  # the old index now holds OTHER_NS: 2 and 0.0
        with contextlib.suppress(ProbeError):  # unless the lost connection was noticed already
            probe.read()
        assert probe.read() == Reading(state=State.FAULT, power_w=5.0)
    finally:
        renumbered.stop()
        renumbered.loop.stop()
        server.start()


def test_a_server_that_never_answers_fails_within_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog does), answers nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        probe = OpcUaProbe(endpoint=f"opc.tcp://127.0.0.1:{silent.getsockname()[1]}",
                           power_node="ns=2;i=1", timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(ProbeError, match="TimeoutError"):
            probe.read()
        assert time.monotonic() - started < 1.5
        probe.close()


def test_probe_from_configuration_reads_with_its_credentials(server: InstrumentServer) -> None:
    config = InstrumentConfig.model_validate({"id": "hplc1", "probe": {
        "kind": "opcua", "endpoint": server.endpoint, "state_node": server.node("Mode"),
        "states": {"Standby": "idle", "Run": "running"}, "power_node": server.node("Power"),
        "scale": 2.0, "user_node": server.node("User"),
        "metrics": {"temp_c": server.node("ColumnTemp")},
        "username": "operator", "password": "s3cret", "timeout_s": 0.5,
    }})
    assert "s3cret" not in repr(config)
    probe = build_probe(config)
    assert isinstance(probe, OpcUaProbe)
    try:
        server.set(Mode="Run", Power=21.0, User="u-wang")
        reading = probe.read()
    finally:
        probe.close()
    assert (reading.state, reading.power_w, reading.user, reading.metrics) == (
        State.RUNNING, 42.0, "u-wang", {"temp_c": 30.0})
    default = build_probe(InstrumentConfig(id="hplc2", probe=ProbeConfig(
        kind="opcua", endpoint=server.endpoint, state_node=server.node("State"))))
    assert isinstance(default, OpcUaProbe) and default.states == MACHINERY_ITEM_STATES


def opcua(**fields: Any) -> dict[str, Any]:
    return {"kind": "opcua", "endpoint": "opc.tcp://10.0.0.5:4840", **fields}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "opcua", "state_node": "ns=2;i=7"}, "an opcua probe needs endpoint"),
        (opcua(), "needs state_node or power_node"),
        (opcua(state_node="ns=2;i=7", power_node="Instrument.Power"),
         r"power_node\n.*'Instrument.Power' is not an OPC UA NodeId"),
        (opcua(state_node="nsu=urn:lab:hplc;q=State"), "is not an OPC UA NodeId"),
        (opcua(state_node="ns=3;nsu=urn:lab:hplc;s=State"), "either by index .* or by URI"),
        (opcua(state_node="nsu=;s=State"), "either by index"),
        (opcua(state_node="srv=1;ns=3;s=State"), "either by index"),
        (opcua(state_node="ns=2;i=7", metrics={"temp": "ns=two;i=8"}), r"metrics\.temp\n"),
        (opcua(state_node="ns=2;i=7", metrics={"column temp": "ns=2;i=8"}), "metrics"),
        (opcua(power_node="ns=2;i=7", states={"3": "running"}), "states needs state_node"),
        (opcua(state_node="ns=2;i=7", states={"3": "offline"}), r"states\.3\n"),
        (opcua(state_node="ns=2;i=7", states={}), "states"),
        (opcua(state_node="ns=2;i=7", password="pw"), "password needs username"),
        (opcua(endpoint="10.0.0.5:4840", state_node="ns=2;i=7"), "endpoint"),
        (opcua(state_node="ns=2;i=7", host="10.0.0.5", users={"a": "b"}),
         "host applies to modbus probes only; users applies to process probes only"),
        ({"kind": "modbus", "host": "10.0.0.5", "address": 0, "state_node": "ns=2;i=7",
          "metrics": {"t": "ns=2;i=8"}}, "state_node and metrics apply to opcua probes only"),
        ({"kind": "simulated", "endpoint": "opc.tcp://10.0.0.5:4840"},
         "endpoint applies to opcua probes only"),
    ],
)
def test_bad_opcua_configuration_names_the_problem(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ProbeConfig.model_validate(fields)


def test_node_ids_by_namespace_uri_are_valid_and_kept_as_written() -> None:
    config = ProbeConfig.model_validate(opcua(
        state_node="nsu=http://opcfoundation.org/UA/LADS/;i=5001",
        power_node="nsu=urn:vendor:hplc;s=Pump.State", metrics={"t": "ns=3;s=Oven.Temp"}))
    assert (config.state_node, config.power_node, config.metrics) == (
        "nsu=http://opcfoundation.org/UA/LADS/;i=5001", "nsu=urn:vendor:hplc;s=Pump.State",
        {"t": "ns=3;s=Oven.Temp"})


@pytest.mark.parametrize("node", ["ns=3;q=Run", "nsu=urn:vendor:hplc;q=Run"])
def test_a_bad_node_id_in_a_file_names_the_key(tmp_path: Path, node: str) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('gateway_id = "gw1"\noutbox_path = "box.sqlite"\n[[instruments]]\n'
                    'id = "hplc1"\nprobe = { kind = "opcua", endpoint = "opc.tcp://h:4840", '
                    f'state_node = "{node}" }}\n')
    with pytest.raises(ConfigError,
                       match=rf"instruments\.0\.probe\.state_node: .*{re.escape(repr(node))}"):
        load_config(path)


def test_agent_samples_what_the_server_says_and_closes_the_probe(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, server: InstrumentServer
) -> None:
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/#")
    set_ingest(mqtt_url, topic_prefix, "online")
    config = GatewayConfig.model_validate({
        "gateway_id": "gw1", "mqtt_url": mqtt_url, "topic_prefix": topic_prefix,
        "outbox_path": tmp_path / "gw1.sqlite",
        "instruments": [{
            "id": "hplc1",
            "probe": {"kind": "opcua", "endpoint": server.endpoint, "timeout_s": 0.5,
                      "state_node": server.node("CurrentState"),
                      "power_node": server.node("Power"), "user_node": server.node("User"),
                      "metrics": {"column_temp_c": server.node("ColumnTemp")}},
            "detector": {"debounce": 1},
        }],
    })
    clock = FastClock()
    agent = GatewayAgent(config, clock=clock)
    agent.start()
    server.set(CurrentState=ua.LocalizedText("Executing"), Power=850.0, User="u-li",
               ColumnTemp=40.0)
    agent.poll(clock.tick())
    server.set(CurrentState=ua.LocalizedText("NotExecuting"), Power=120.0, User="")
    agent.poll(clock.tick())
    agent.flush()
    assert agent.wait_drained(10), agent.stats
    agent.stop()
    assert not [t for t in threading.enumerate()
                if isinstance(t, ThreadLoop) and t is not server.loop]  # the probe's loop ended
    rec.wait_for(lambda r: sum(len(m.samples) for m in r.first_arrivals()) >= 2)
    messages = rec.first_arrivals()
    samples = [s for m in messages for s in m.samples]
    assert [(s.state, s.power_w, s.user, s.metrics) for s in samples] == [
        (State.RUNNING, 850.0, "u-li", {"column_temp_c": 40.0}),
        (State.IDLE, 120.0, None, {"column_temp_c": 40.0}),
    ]
    events = [(e.type, e.user) for m in messages for e in m.events]
    assert events == [(EventType.SESSION_START, "u-li"), (EventType.SESSION_END, "u-li")]
    rec.close()
