"""Gateway configuration: pydantic models loaded from one TOML file (see examples/gateway.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.errors import ConfigError
from instrushare.protocol import (
    DEFAULT_TOPIC_PREFIX,
    MAX_PAST_AGE,
    MAX_SAMPLES_PER_MESSAGE,
    Identifier,
)
from instrushare.settings import MqttAddress, describe


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class ProbeConfig(_Config):
    """Where readings come from: ``simulated`` (set by a program), a ``modbus`` power meter or
    the acquisition software's ``process`` on the gateway's computer."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True,
                              validate_by_alias=True)

    kind: Literal["simulated", "modbus", "process"]
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

    @model_validator(mode="after")
    def _fields_of_the_kind(self) -> Self:
        if self.kind == "modbus":
            missing = [name for name in ("host", "address") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"a modbus probe needs {' and '.join(missing)}")
        elif self.host is not None or self.address is not None:
            raise ValueError("host and address apply to modbus probes only")
        if self.kind == "process" and self.process is None:
            raise ValueError("a process probe needs process (the acquisition software's name)")
        if self.kind != "process" and (self.process is not None or self.users
                                       or self.busy_cpu_percent is not None):
            raise ValueError("process, busy_cpu_percent and users apply to process probes only")
        return self


class InstrumentConfig(_Config):
    id: Identifier
    probe: ProbeConfig
    detector: DetectorConfig = DetectorConfig()


class GatewayConfig(_Config):
    """One gateway: its identity, broker, outbox and the instruments it watches."""

    gateway_id: Identifier
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    topic_prefix: str = Field(default=DEFAULT_TOPIC_PREFIX, pattern=r"^[A-Za-z0-9_.-]+$")
    outbox_path: Path
    sample_interval_s: float = Field(default=60, gt=0)
    publish_interval_s: float = Field(default=300, gt=0)
    max_samples_per_message: int = Field(default=500, ge=1, le=MAX_SAMPLES_PER_MESSAGE)
    outbox_max_messages: int = Field(default=100_000, ge=1)
    outbox_max_age_s: float = Field(
        default=30 * 86400, gt=0, le=MAX_PAST_AGE.total_seconds()
    )
    inflight_window: int = Field(default=100, ge=1, le=65000)
    require_ingest_online: bool = True
    instruments: list[InstrumentConfig] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        ids = [instrument.id for instrument in self.instruments]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate instrument ids: {', '.join(duplicates)}")
        address = MqttAddress.from_url(self.mqtt_url)
        if address.username is not None and address.username != self.gateway_id:
            raise ValueError(
                f"the MQTT user name ({address.username!r}) must equal gateway_id "
                f"({self.gateway_id!r}): broker ACLs confine each gateway by user name"
            )
        return self

    @property
    def mqtt(self) -> MqttAddress:
        return MqttAddress.from_url(self.mqtt_url)


def load_config(path: Path) -> GatewayConfig:
    """Read and validate a TOML file; relative ``outbox_path`` is taken from the file's folder.

    Raises ConfigError with one line per problem, naming the offending key.
    """
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file", path=path) from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", path=path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", path=path) from exc
    outbox = data.get("outbox_path")
    if isinstance(outbox, str) and not Path(outbox).is_absolute():
        data["outbox_path"] = str(path.parent / outbox)
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid configuration\n{describe(exc)}", path=path) from exc
