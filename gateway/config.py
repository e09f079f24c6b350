"""Gateway configuration: pydantic models loaded from one TOML file (see examples/gateway.toml)."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.errors import ConfigError
from instrushare.protocol import (
    DEFAULT_TOPIC_PREFIX,
    INGEST_CLIENT_ID_PREFIX,
    MAX_METRICS_PER_SAMPLE,
    MAX_PAST_AGE,
    MAX_SAMPLE_INTERVAL_S,
    MAX_SAMPLES_PER_MESSAGE,
    TOPIC_PREFIX_PATTERN,
    Identifier,
    State,
)
from instrushare.settings import DEFAULT_MQTT_URL, MqttAddress, MqttUrl, describe


class _Config(BaseModel):
    # strict: TOML has numbers and booleans of its own, so a quoted one ("5") is a slip, not
    # text to convert; inf or nan in a file is a slip too (a gateway that never polls)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DetectorConfig(_Config):
    """Power thresholds (watts) and debounce that turn readings into states.

    ``off`` below ``off_below_w``; ``running`` from ``run_on_w`` and until power drops under
    ``run_off_w`` (hysteresis); ``idle`` otherwise. A new state is accepted after ``debounce``
    consecutive readings agree.
    """

    off_below_w: float = Field(default=5.0, ge=0)
    run_on_w: float = Field(default=40.0, ge=0)
    run_off_w: float = Field(default=30.0, ge=0)
    debounce: int = Field(default=2, ge=1, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.off_below_w <= self.run_off_w <= self.run_on_w:
            raise ValueError(
                "thresholds must satisfy off_below_w <= run_off_w <= run_on_w "
                f"(got {self.off_below_w}, {self.run_off_w}, {self.run_on_w})"
            )
        return self


def _check_node_id(text: str) -> str:
    from gateway.opcua_probe import node_id  # the OPC UA library: only where it is configured

    node_id(text)  # raises ValueError
    return text


NodeIdText = Annotated[str, AfterValidator(_check_node_id)]
"""An OPC UA NodeId as written in files (``ns=2;s=Instrument.State`` or, namespace by URI,
``nsu=urn:vendor:hplc;s=Pump.State``), checked on loading and kept as written."""


def _in_config_folder(path: Path, info: ValidationInfo) -> Path:
    folder = info.context.get("folder") if isinstance(info.context, dict) else None
    return folder / path if isinstance(folder, Path) and not path.is_absolute() else path


LocalPath = Annotated[Path, Strict(False), AfterValidator(_in_config_folder)]
"""A path on the gateway's computer: relative to the configuration file's folder when
load_config reads one (it passes the folder as the validation context), else as given.
Text in a file, so not strict."""


def _check_certificate(path: Path) -> Path:
    from gateway.opcua_credentials import read_certificate

    read_certificate(path)  # raises ValueError, as the two below
    return path


def _check_client_certificate(path: Path) -> Path:
    from gateway.opcua_credentials import read_client_certificate

    read_client_certificate(path)
    return path


def _check_private_key(path: Path) -> Path:
    from gateway.opcua_credentials import read_private_key

    read_private_key(path)
    return path


StateName = Annotated[State, Strict(False)]
"""A state as a file writes it, its name (``running``); text, so not strict."""

SecurityPolicyName = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep",
                             "Aes256_Sha256_RsaPss"]
"""The OPC UA security policies an opcua probe can use (gateway.opcua_probe.SECURITY_POLICIES)."""
_SECURITY_FIELDS = ("security_mode", "certificate", "private_key", "server_certificate")
"""The opcua keys that only a security policy other than None uses."""

_OWN_FIELDS: dict[str, tuple[str, ...]] = {
    "modbus": ("host", "address"),
    "process": ("process", "busy_cpu_percent", "users"),
    "opcua": ("endpoint", "state_node", "states", "power_node", "user_node", "metrics",
              "username", "password", "security_policy", *_SECURITY_FIELDS),
}
"""Fields that only probes of one kind take: refused on the other kinds."""
_REQUIRED: dict[str, tuple[str, ...]] = {
    "modbus": ("host", "address"), "process": ("process",), "opcua": ("endpoint",),
}


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


_OPC_TCP = re.compile(r"opc\.tcp://([^@\s/]+@)?(\[[0-9A-Fa-f:.]+\]|[^\s:/?#@\[\]]+)"
                      r"(:[0-9]{1,5})?(/\S*)?")
"""An OPC UA endpoint: opc.tcp://, an optional user@, a host (an IPv6 one in brackets), an
optional port and path."""


class ProbeConfig(_Config):
    """Where readings come from: ``simulated`` (set by a program), a ``modbus`` power meter,
    the acquisition software's ``process`` on the gateway's computer or the instrument's own
    ``opcua`` server."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    kind: Literal["simulated", "modbus", "process", "opcua"]
    host: str | None = None
    port: int = Field(default=502, ge=1, le=65535)
    unit: int = Field(default=1, ge=0, le=255)
    address: int | None = Field(default=None, ge=0, le=65534)
    register_type: Literal["holding", "input"] = Field(default="holding", alias="register")
    """Written ``register`` in files (``register`` itself is taken by pydantic's BaseModel)."""
    word_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    process: str | None = Field(default=None, min_length=1)
    busy_cpu_percent: float | None = Field(default=None, gt=0)
    users: dict[str, Identifier] = Field(default_factory=dict)
    """Process owner's login -> platform user id."""
    endpoint: str | None = None
    state_node: NodeIdText | None = None
    states: dict[str, StateName] | None = Field(default=None, min_length=1)
    """The state node's value as text -> state; MACHINERY_ITEM_STATES when not given."""
    power_node: NodeIdText | None = None
    user_node: NodeIdText | None = None
    metrics: dict[Identifier, NodeIdText] = Field(default_factory=dict,
                                                  max_length=MAX_METRICS_PER_SAMPLE)
    username: str | None = Field(default=None, min_length=1)
    password: SecretStr | None = None
    security_policy: SecurityPolicyName = "None"
    security_mode: Literal["Sign", "SignAndEncrypt"] | None = None
    """SignAndEncrypt when not given, with a security policy."""
    certificate: Annotated[LocalPath, AfterValidator(_check_client_certificate)] | None = None
    """The gateway's own certificate, which the server must trust."""
    private_key: Annotated[LocalPath, AfterValidator(_check_private_key)] | None = None
    server_certificate: Annotated[LocalPath, AfterValidator(_check_certificate)] | None = None
    """When given, the only certificate the server may have (else the one it sends)."""

    @field_validator("host")
    @classmethod
    def _host_alone(cls, host: str | None) -> str | None:
        """A host name or IP address, the port apart: a mistake here would show only once
        running, as a host that cannot be resolved."""
        if host is None or re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", host):
            return host
        try:
            ipaddress.ip_address(host)  # an IPv6 one: ::1
        except ValueError:
            if re.fullmatch(r"[^:/\s]+:[0-9]+", host):
                raise ValueError("must be the host alone: its port goes in port") from None
            raise ValueError("must be a host name or IP address, such as 192.168.1.20 or"
                             " meter-3.lab (no scheme, path or spaces)") from None
        return host

    @field_validator("endpoint")
    @classmethod
    def _endpoint_address(cls, endpoint: str | None) -> str | None:
        if endpoint is not None and not _OPC_TCP.fullmatch(endpoint):
            raise ValueError("must be opc.tcp://host:port (4840 when none is given), then the"
                             " server's path if it has one")
        return endpoint

    @field_validator("scale")
    @classmethod
    def _scale_not_zero(cls, scale: float) -> float:
        if scale == 0:
            raise ValueError("must not be 0: every reading would be 0 W, the instrument off")
        return scale

    @model_validator(mode="after")
    def _fields_of_the_kind(self) -> Self:
        problems = []
        missing = [name for name in _REQUIRED.get(self.kind, ()) if getattr(self, name) is None]
        if missing:
            article = "an" if self.kind[0] in "aeiou" else "a"
            problems.append(f"{article} {self.kind} probe needs {' and '.join(missing)}")
        for kind, names in _OWN_FIELDS.items():
            given = [name for name in names if kind != self.kind and self._given(name)]
            if given:
                verb = "applies" if len(given) == 1 else "apply"
                problems.append(f"{_listed(given)} {verb} to {kind} probes only")
        if self.kind == "opcua":
            if self.state_node is None and self.power_node is None:
                problems.append("an opcua probe needs state_node or power_node (or both): "
                                "with neither it tells nothing about the instrument")
            if self.states is not None and self.state_node is None:
                problems.append("states needs state_node")
            if self.password is not None and self.username is None:
                problems.append("password needs username")
            problems.extend(self._security_problems())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _security_problems(self) -> list[str]:
        """The security keys' consistency. The key is matched with the certificate here, since
        a server would only refuse the connection without saying why."""
        from gateway.opcua_credentials import read_security

        try:
            read_security(self.security_policy, mode=self.security_mode,
                          certificate=self.certificate, private_key=self.private_key,
                          server_certificate=self.server_certificate)
        except ValueError as exc:
            return [str(exc)]
        return []

    def _given(self, name: str) -> bool:
        field = type(self).model_fields[name]
        return bool(getattr(self, name) != field.get_default(call_default_factory=True))


class InstrumentConfig(_Config):
    id: Identifier
    probe: ProbeConfig
    detector: DetectorConfig = DetectorConfig()


class GatewayConfig(_Config):
    """One gateway: its identity, broker, outbox and the instruments it watches."""

    gateway_id: Identifier
    mqtt_url: MqttUrl = DEFAULT_MQTT_URL
    topic_prefix: str = Field(default=DEFAULT_TOPIC_PREFIX, pattern=TOPIC_PREFIX_PATTERN)
    outbox_path: LocalPath
    sample_interval_s: float = Field(default=60, ge=0.05, le=MAX_SAMPLE_INTERVAL_S)
    publish_interval_s: float = Field(default=300, gt=0, le=86400)
    max_samples_per_message: int = Field(default=500, ge=1, le=MAX_SAMPLES_PER_MESSAGE)
    outbox_max_messages: int = Field(default=100_000, ge=1)
    outbox_max_age_s: float = Field(
        default=30 * 86400, gt=0, le=MAX_PAST_AGE.total_seconds()
    )
    inflight_window: int = Field(default=100, ge=1, le=65000)
    confirm_timeout_s: float = Field(default=300.0, gt=0)
    require_ingest_online: bool = True
    mqtt_protocol: Literal["5", "3.1.1"] = "3.1.1"
    instruments: list[InstrumentConfig] = Field(min_length=1, max_length=1000)

    @field_validator("instruments")
    @classmethod
    def _unique(cls, instruments: list[InstrumentConfig]) -> list[InstrumentConfig]:
        ids = [instrument.id for instrument in instruments]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate instrument ids: {', '.join(duplicates)}")
        return instruments

    @field_validator("gateway_id")
    @classmethod
    def _not_ingest(cls, gateway_id: str) -> str:
        if gateway_id.startswith(INGEST_CLIENT_ID_PREFIX):
            raise ValueError(
                f"must not start with {INGEST_CLIENT_ID_PREFIX!r}: it is the MQTT client id,"
                " and those are the ingest workers'"
            )
        return gateway_id

    @field_validator("mqtt_url")
    @classmethod
    def _user_is_gateway(cls, mqtt_url: str, info: ValidationInfo) -> str:
        """A field's check, not the model's, so that the error names ``mqtt_url``."""
        username = MqttAddress.from_url(mqtt_url).username
        gateway_id = info.data.get("gateway_id")  # absent when it is itself invalid
        if username is not None and gateway_id is not None and username != gateway_id:
            raise ValueError(
                f"the MQTT user name ({username!r}) must equal gateway_id ({gateway_id!r}):"
                " broker ACLs confine each gateway by user name"
            )
        return mqtt_url

    @property
    def mqtt(self) -> MqttAddress:
        return MqttAddress.from_url(self.mqtt_url)


def load_config(path: Path) -> GatewayConfig:
    """Read and validate a TOML file; relative paths in it (``outbox_path``, certificates) are
    taken from the file's folder.

    Raises ConfigError with one line per problem, naming the offending key. Numbers and
    booleans must be written as such: a quoted one (``"5"``) is refused, not converted.
    """
    try:
        # utf-8-sig: Windows editors save UTF-8 with a byte-order mark, which TOML forbids
        data = tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file", path=path) from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", path=path) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8",
                          path=path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", path=path) from exc
    try:
        return GatewayConfig.model_validate(data, context={"folder": path.parent})
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid configuration\n{describe(exc, name=_named(data))}"
                          + _quoting_hint(exc), path=path) from exc


def _quoting_hint(exc: ValidationError) -> str:
    """A last line when a number or boolean was refused for being text: ``"5"`` looks right
    to a person, and pydantic's "should be a valid number" does not say what is wrong."""
    quoted = any(error["type"] in ("int_type", "float_type", "bool_type")
                 and isinstance(error["input"], str) for error in exc.errors())
    return "\n  (numbers and true/false are written without quotes)" if quoted else ""


def _named(data: dict[str, Any]) -> Callable[[tuple[int | str, ...]], str]:
    """Names ``instruments.3`` by the id the file gives it, ``instruments.xrd1``."""

    def name(loc: tuple[int | str, ...]) -> str:
        instruments = data.get("instruments")
        if loc[:1] == ("instruments",) and len(loc) == 2 and isinstance(instruments, list):
            index = loc[1]
            item = instruments[index] if isinstance(index, int) else None
            if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
                return str(item["id"])
        return str(loc[-1])

    return name
