"""OpcUaProbe against asyncua's own OPC UA server, on a free port in a thread, with and
without message security."""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, get_args

import pytest
from asyncua import ua
from asyncua.common.node import Node
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.internal_server import InternalServer
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.sync import ThreadLoop
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
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
from gateway.config import InstrumentConfig, ProbeConfig, SecurityPolicyName
from gateway.opcua_probe import SECURITY_POLICIES
from instrushare.protocol import EventType, State
from tests.gateway.helpers import FastClock, Recorder, gateway_id_for, set_ingest
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
DAY = timedelta(days=1)


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


class KeyPair(NamedTuple):
    certificate: Path
    private_key: Path


def issue(folder: Path, name: str, names: list[x509.GeneralName],
          encoding: Encoding = Encoding.PEM) -> KeyPair:
    """A self-signed application certificate with these subject alternative names, and its
    key (PEM), as ``name.crt`` and ``name.key``: the gateway reads either encoding whatever
    the extension."""
    key = cert_gen.generate_private_key()
    certificate = cert_gen.generate_self_signed_app_certificate(
        key, name, {}, names, [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH])
    pair = KeyPair(folder / f"{name}.crt", folder / f"{name}.key")
    pair.certificate.write_bytes(certificate.public_bytes(encoding))
    pair.private_key.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return pair


def issue_valid(folder: Path, name: str, not_before: datetime, not_after: datetime) -> KeyPair:
    """A certificate like ``issue``'s, valid from ``not_before`` to ``not_after``."""
    key = cert_gen.generate_private_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(application(name)), critical=False)
        .sign(key, hashes.SHA256()))
    pair = KeyPair(folder / f"{name}.crt", folder / f"{name}.key")
    pair.certificate.write_bytes(certificate.public_bytes(Encoding.PEM))
    pair.private_key.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return pair


def application(name: str) -> list[x509.GeneralName]:
    return [x509.UniformResourceIdentifier(f"urn:instrushare:test:{name}"),
            x509.DNSName("localhost")]


class Pki(NamedTuple):
    """The secure server's certificate, the gateway's, which the server trusts, and a
    stranger's, which it does not."""

    server: KeyPair
    gateway: KeyPair
    stranger: KeyPair
    trusted: Path
    """The folder of the certificates the server trusts."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    gateway = issue(folder, "gateway", application("gateway"))
    trusted = folder / "trusted"
    trusted.mkdir()
    shutil.copy(gateway.certificate, trusted / "gateway.pem")  # asyncua reads *.pem, *.der
    return Pki(issue(folder, "server", application("server"), Encoding.DER), gateway,
               issue(folder, "stranger", application("stranger"), Encoding.DER), trusted)


class InstrumentServer:
    """An instrument's OPC UA server whose variables the test writes; stop() and start() keep
    its address space and port. OTHER_NS is registered after the instrument's namespace or,
    with ``other_first``, before it: the instrument's namespace index then differs, as after
    reconfiguring a real server. With ``pki``, it offers only Basic256Sha256 SignAndEncrypt,
    to clients whose certificate it trusts."""

    def __init__(self, port: int | None = None, *, other_first: bool = False,
                 pki: Pki | None = None) -> None:
        self.port = free_port() if port is None else port
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}"
        self.loop = ThreadLoop(timeout=10)
        self.loop.daemon = True
        self.loop.start()
        self.server = Server(user_manager=OneOperator())
        self.variables: dict[str, Node] = {}
        self.namespace = 0
        self.loop.post(self._build(other_first, pki))

    async def _build(self, other_first: bool, pki: Pki | None) -> None:
        await self.server.init()
        self.server.disable_clock()  # its one-second tick would make every stop() wait for it
        self.server.set_endpoint(self.endpoint)
        if pki is not None:
            await self._secure(pki)
        for uri in (OTHER_NS, INSTRUMENT_NS) if other_first else (INSTRUMENT_NS, OTHER_NS):
            index = await self.server.register_namespace(uri)
            instrument = await self.server.nodes.objects.add_object(
                f"ns={index};s=Instrument", "Instrument")
            variables = {name: await instrument.add_variable(
                f"ns={index};s=Instrument.{name}", name, value, vtype)
                for name, (value, vtype) in VARIABLES.items()}
            if uri == INSTRUMENT_NS:
                self.namespace, self.variables = index, variables

    async def _secure(self, pki: Pki) -> None:
        self.server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        await self.server.set_application_uri("urn:instrushare:test:server")
        await self.server.load_certificate(pki.server.certificate, format="der")
        await self.server.load_private_key(pki.server.private_key, format="pem")
        trust = TrustStore([pki.trusted], [])
        await trust.load()
        self.server.set_certificate_validator(CertificateValidator(
            CertificateValidatorOptions.TRUSTED_VALIDATION
            | CertificateValidatorOptions.PEER_CLIENT, trust))

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


@contextlib.contextmanager
def running(server: InstrumentServer) -> Iterator[InstrumentServer]:
    """The server listening until the block ends, then stopped with its thread."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.loop.stop()


@pytest.fixture(scope="module")
def instrument() -> Iterator[InstrumentServer]:
    # building the address space takes about a second: shared by the module's tests
    with running(InstrumentServer()) as server:
        yield server


@pytest.fixture
def server(instrument: InstrumentServer) -> InstrumentServer:
    instrument.reset()
    return instrument


@pytest.fixture(scope="module")
def secure_instrument(pki: Pki) -> Iterator[InstrumentServer]:
    with running(InstrumentServer(pki=pki)) as server:
        yield server


@pytest.fixture
def secure_server(secure_instrument: InstrumentServer) -> InstrumentServer:
    secure_instrument.reset()
    return secure_instrument


@contextlib.contextmanager
def probes_of(server: InstrumentServer) -> Iterator[Callable[..., OpcUaProbe]]:
    """Makes probes of the server, closed at the end."""
    probes: list[OpcUaProbe] = []

    def make(**fields: Any) -> OpcUaProbe:
        probes.append(OpcUaProbe(endpoint=server.endpoint, timeout_s=5.0, **fields))
        return probes[-1]

    try:
        yield make
    finally:
        for probe in probes:
            probe.close()


@pytest.fixture
def make_probe(server: InstrumentServer) -> Iterator[Callable[..., OpcUaProbe]]:
    with probes_of(server) as make:
        yield make


@pytest.fixture
def make_secure_probe(secure_server: InstrumentServer) -> Iterator[Callable[..., OpcUaProbe]]:
    with probes_of(secure_server) as make:
        yield make


def secured_as(pair: KeyPair, **fields: Any) -> dict[str, Any]:
    """A probe's security fields: Basic256Sha256 (SignAndEncrypt by default) with this key pair."""
    return {"security_policy": "Basic256Sha256", "certificate": pair.certificate,
            "private_key": pair.private_key, **fields}


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
        with pytest.raises(ProbeError, match="cannot connect: connection refused: nothing"
                           " listens on that port \\(check port, and that the instrument's"
                           " OPC UA server is enabled\\)"):
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
    server: InstrumentServer, make_probe: Callable[..., OpcUaProbe],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Looked up again on each poll's new connection, without the library warning each time
    that the server granted a shorter session than asked for."""
    probe = make_probe(state_node=server.node("State"),
                       power_node="nsu=urn:vendor:nowhere;s=Instrument.Power")
    message = re.escape("nsu=urn:vendor:nowhere;s=Instrument.Power: the server has no "
                        "namespace 'urn:vendor:nowhere'")
    caplog.set_level("WARNING", logger="asyncua")
    for _ in range(3):
        with pytest.raises(ProbeError, match=message):
            probe.read()
    revised = [r for r in caplog.records if "session timeout" in r.getMessage()]
    assert len(revised) <= 1


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
        with running(renumbered):
            renumbered.set(State=1, Power=5.0)  # the old index now holds OTHER_NS: 2 and 0.0
            with contextlib.suppress(ProbeError):  # unless the lost connection was noticed
                probe.read()
            assert probe.read() == Reading(state=State.FAULT, power_w=5.0)
    finally:
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


def test_reads_with_a_login_over_an_encrypted_channel(
    secure_server: InstrumentServer, pki: Pki, make_secure_probe: Callable[..., OpcUaProbe]
) -> None:
    nodes = {"state_node": secure_server.node("State"), "power_node": secure_server.node("Power")}
    probe = make_secure_probe(**nodes, username="operator", password="s3cret",
                              **secured_as(pki.gateway))
    secure_server.set(State=3, Power=1250.0)
    assert probe.read() == Reading(state=State.RUNNING, power_w=1250.0)
    secure_server.set(State=2, Power=3.5)
    assert probe.read() == Reading(state=State.IDLE, power_w=3.5)
    wrong = make_secure_probe(**nodes, username="operator", password="guess",
                              **secured_as(pki.gateway, security_mode="SignAndEncrypt"))
    with pytest.raises(ProbeError, match="BadUserAccessDenied"):
        wrong.read()


def test_a_pinned_server_certificate_must_be_the_servers(
    secure_server: InstrumentServer, pki: Pki, make_secure_probe: Callable[..., OpcUaProbe]
) -> None:
    pinned = make_secure_probe(power_node=secure_server.node("Power"), **secured_as(
        pki.gateway, server_certificate=pki.server.certificate))
    secure_server.set(Power=75.0)
    assert pinned.read().power_w == 75.0
    impostor = make_secure_probe(power_node=secure_server.node("Power"), **secured_as(
        pki.gateway, server_certificate=pki.stranger.certificate))
    with pytest.raises(ProbeError, match=re.escape(
            "the server's certificate is not the one in server_certificate "
            f"({pki.stranger.certificate})")):
        impostor.read()


@pytest.mark.parametrize(
    ("security", "wanted"),
    [
        ({}, "None"),
        ({"security_mode": "Sign"}, "Basic256Sha256 Sign"),
        ({"security_policy": "Aes256_Sha256_RsaPss"}, "Aes256_Sha256_RsaPss SignAndEncrypt"),
    ],
)
def test_security_the_server_does_not_offer_is_refused_naming_what_it_offers(
    secure_server: InstrumentServer, pki: Pki, make_secure_probe: Callable[..., OpcUaProbe],
    security: dict[str, str], wanted: str,
) -> None:
    fields = secured_as(pki.gateway, **security) if security else {}
    probe = make_secure_probe(state_node=secure_server.node("State"), username="operator",
                              password="s3cret", **fields)
    message = (f"OpcUaProbe(127.0.0.1:{secure_server.port}): the server does not offer "
               f"security {wanted}, only Basic256Sha256 SignAndEncrypt: see security_policy "
               "and security_mode")
    for _ in range(2):  # and again on the next connection
        with pytest.raises(ProbeError, match=f"^{re.escape(message)}$"):
            probe.read()


def test_a_secure_probe_is_refused_by_a_server_without_security(
    server: InstrumentServer, pki: Pki, make_probe: Callable[..., OpcUaProbe]
) -> None:
    probe = make_probe(state_node=server.node("State"), **secured_as(pki.gateway))
    with pytest.raises(ProbeError, match="does not offer security Basic256Sha256 "
                                         "SignAndEncrypt, only None:"):
        probe.read()


def test_a_certificate_the_server_does_not_trust_is_refused(
    secure_server: InstrumentServer, pki: Pki, make_secure_probe: Callable[..., OpcUaProbe]
) -> None:
    probe = make_secure_probe(state_node=secure_server.node("State"),
                              **secured_as(pki.stranger))
    with pytest.raises(ProbeError, match=re.escape(
            f"the server refused the connection secured with {pki.stranger.certificate}: "
            "BadCertificateUntrusted (The certificate is not trusted.)")):
        probe.read()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"security_policy": "Basic256Sha256"}, "needs certificate and private_key"),
        ({"security_policy": "Basic256"}, "security_policy must be one of None, Basic256Sha256, "
                                          "Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss"),
        ({"security_mode": "Sign"}, "security_mode needs security_policy"),
        ({"certificate": Path("gw.crt"), "private_key": Path("gw.key")},
         "certificate and private_key need security_policy"),
        ({"security_mode": "Encrypt", "security_policy": "Basic256Sha256",
          "certificate": Path("gw.crt"), "private_key": Path("gw.key")},
         "security_mode must be one of Sign, SignAndEncrypt, not 'Encrypt'"),
    ],
)
def test_a_probe_refuses_unknown_or_incomplete_security(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        OpcUaProbe(endpoint="opc.tcp://10.0.0.5:4840", power_node="ns=2;i=7", **fields)


def test_probe_from_configuration_reads_with_its_credentials(server: InstrumentServer) -> None:
    config = InstrumentConfig.model_validate({"id": "hplc1", "probe": {
        "kind": "opcua", "endpoint": server.endpoint, "state_node": server.node("Mode"),
        "states": {"Standby": "idle", "Run": "running"}, "power_node": server.node("Power"),
        "scale": 2.0, "user_node": server.node("User"),
        "metrics": {"temp_c": server.node("ColumnTemp")},
        "username": "operator", "password": "s3cret", "timeout_s": 5.0,
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


def test_probe_from_configuration_secures_its_connection(
    secure_server: InstrumentServer, pki: Pki
) -> None:
    probe = build_probe(InstrumentConfig.model_validate({"id": "hplc1", "probe": {
        "kind": "opcua", "endpoint": secure_server.endpoint,
        "power_node": secure_server.node("Power"), "timeout_s": 5.0,
        "security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt",
        "certificate": str(pki.gateway.certificate), "private_key": str(pki.gateway.private_key),
        "server_certificate": str(pki.server.certificate),
    }}))
    assert isinstance(probe, OpcUaProbe)
    try:
        secure_server.set(Power=640.0)  # the server offers nothing else: only secured reads
        assert probe.read().power_w == 640.0
    finally:
        probe.close()


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
        (opcua(state_node="ns=2;i=7", security_policy="Basic256Sha256"),
         "security_policy Basic256Sha256 needs certificate and private_key"),
        (opcua(state_node="ns=2;i=7", security_policy="Basic128Rsa15"),
         r"security_policy\n.*'None', 'Basic256Sha256', 'Aes128_Sha256_RsaOaep' or "
         "'Aes256_Sha256_RsaPss'"),
        (opcua(state_node="ns=2;i=7", security_mode="Sign"), "security_mode needs security_policy"),
        (opcua(state_node="ns=2;i=7", security_policy="None", security_mode="SignAndEncrypt"),
         "security_mode needs security_policy"),
        (opcua(state_node="ns=2;i=7", security_policy="Basic256Sha256",
               certificate="/nonexistent/gw.crt", private_key="/nonexistent/gw.key"),
         r"(?s)certificate\n  Value error, /nonexistent/gw.crt: no such file.*"
         r"\nprivate_key\n  Value error, /nonexistent/gw.key: no such file"),
        ({"kind": "modbus", "host": "10.0.0.5", "address": 0, "security_policy": "Basic256Sha256"},
         "security_policy applies to opcua probes only"),
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
    path = write_config(tmp_path, f'{{ kind = "opcua", endpoint = "opc.tcp://h:4840", '
                                  f'state_node = "{node}" }}')
    with pytest.raises(ConfigError,
                       match=rf"instruments\.hplc1\.probe\.state_node: .*{re.escape(repr(node))}"):
        load_config(path)


def test_config_and_probe_know_the_same_security_policies() -> None:
    assert get_args(SecurityPolicyName) == tuple(SECURITY_POLICIES)


def write_config(folder: Path, probe: str) -> Path:
    """A gateway configuration file with one instrument and this probe (a TOML table)."""
    path = folder / "gw.toml"
    path.write_text('gateway_id = "gw1"\noutbox_path = "box.sqlite"\n[[instruments]]\n'
                    f'id = "hplc1"\nprobe = {probe}\n')
    return path


def secure_probe_toml(certificate: Path | str, private_key: Path | str, **more: str) -> str:
    fields = {"security_policy": "Basic256Sha256", "certificate": str(certificate),
              "private_key": str(private_key), **more}
    return ('{ kind = "opcua", endpoint = "opc.tcp://h:4840", state_node = "ns=2;i=7", '
            + ", ".join(f'{key} = "{value}"' for key, value in fields.items()) + " }")


def test_security_files_are_taken_from_the_configuration_folder(
    tmp_path: Path, pki: Pki
) -> None:
    (tmp_path / "pki").mkdir()
    for path in (*pki.gateway, pki.server.certificate):
        shutil.copy(path, tmp_path / "pki" / path.name)
    config = load_config(write_config(tmp_path, secure_probe_toml(
        "pki/gateway.crt", "pki/gateway.key", server_certificate=str(pki.server.certificate),
        security_mode="Sign")))
    probe = config.instruments[0].probe
    assert (probe.security_policy, probe.security_mode) == ("Basic256Sha256", "Sign")
    assert (probe.certificate, probe.private_key, probe.server_certificate) == (
        tmp_path / "pki" / "gateway.crt", tmp_path / "pki" / "gateway.key",
        pki.server.certificate)
    missing = write_config(tmp_path, secure_probe_toml("certs/gw.crt", "pki/gateway.key"))
    with pytest.raises(ConfigError, match=re.escape(
            f"instruments.hplc1.probe.certificate: {tmp_path}/certs/gw.crt: "
            "no such file")):
        load_config(missing)


def test_unusable_security_files_are_refused_on_loading(tmp_path: Path, pki: Pki) -> None:
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate")
    no_uri = issue(tmp_path, "no-uri", [x509.DNSName("localhost")])
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    expired = issue_valid(tmp_path, "expired", now - 30 * DAY, now - DAY)
    early = issue_valid(tmp_path, "early", now + DAY, now + 30 * DAY)
    locked = tmp_path / "locked.key"
    locked.write_bytes(cert_gen.generate_private_key().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw")))
    for (certificate, key), message in [
        ((junk, pki.gateway.private_key), f"certificate: {junk} is not an X.509 "
                                          "certificate (PEM or DER)"),
        (no_uri, f"certificate: {no_uri.certificate} has no application URI"),
        ((pki.gateway.certificate, locked), f"private_key: {locked}: the key is "
                                            "encrypted"),
        ((pki.gateway.certificate, pki.stranger.certificate),
         f"private_key: {pki.stranger.certificate} is not a private key"),
        ((pki.gateway.certificate, pki.stranger.private_key),
         f"probe: private_key {pki.stranger.private_key} is not the key of "
         f"certificate {pki.gateway.certificate}"),
        (expired, f"certificate: {expired.certificate} expired on "
                  f"{now - DAY:%Y-%m-%d %H:%M} UTC: issue a new one"),
        (early, f"certificate: {early.certificate} is not valid before "
                f"{now + DAY:%Y-%m-%d %H:%M} UTC: check the gateway's clock"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(write_config(tmp_path, secure_probe_toml(certificate, key)))


def test_agent_samples_what_the_server_says_and_closes_the_probe(
    tmp_path: Path, mqtt_url: str, topic_prefix: str, server: InstrumentServer
) -> None:
    earlier_loops = {t for t in threading.enumerate() if isinstance(t, ThreadLoop)}  # servers
    rec = Recorder(mqtt_url, f"{topic_prefix}/gw/#")
    set_ingest(mqtt_url, topic_prefix, "online")
    config = GatewayConfig.model_validate({
        "gateway_id": gateway_id_for(topic_prefix), "mqtt_url": mqtt_url,
        "topic_prefix": topic_prefix, "outbox_path": tmp_path / "outbox.sqlite",
        "instruments": [{
            "id": "hplc1",
            "probe": {"kind": "opcua", "endpoint": server.endpoint, "timeout_s": 5.0,
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
                if isinstance(t, ThreadLoop) and t not in earlier_loops]  # the probe's loop ended
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
