"""Wire protocol v1: topics and JSON payloads exchanged between gateways and the ingest.

docs/protocol.md is the human description and instrushare/schema/protocol-v1.json the JSON
Schema generated from these models (``instrushare protocol schema``); keep the three in step.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

PROTOCOL_VERSION = 1
DEFAULT_TOPIC_PREFIX = "isv1"

MAX_PAYLOAD_BYTES = 256 * 1024
"""Largest accepted payload; bigger messages are dead-lettered unparsed."""
MAX_SAMPLES_PER_MESSAGE = 1000
MAX_EVENTS_PER_MESSAGE = 200
MAX_METRICS_PER_SAMPLE = 32
MAX_FUTURE_SKEW = timedelta(seconds=300)
"""A timestamp later than the ingest's clock by more than this is rejected (dead-lettered):
a sample's or event's ``ts``, a data message's ``created_at``, a gateway state's ``ts``."""
MAX_PAST_AGE = timedelta(days=30)
"""Older timestamps are rejected: the gateway outbox never holds data this old."""
MIN_RETENTION_DAYS = MAX_PAST_AGE.days + 1
"""The shortest time raw samples and the dedup log may be kept: the ingest still takes data up
to MAX_PAST_AGE old, and must find the samples around it and the keys it would duplicate."""
MAX_SAMPLE_INTERVAL_S = 600
"""Longest time a gateway may leave between two samples of an instrument, well inside
``HEARTBEAT_TIMEOUT_S``: a sample or two may be lost without the instrument turning offline."""
HEARTBEAT_TIMEOUT_S = 900
"""The platform's default for one rule read in two places: a gap between two samples longer than
this is offline time (the API's ``heartbeat_timeout_s``) and ends a usage session (the ingest's
``session_max_gap_s``), so the hours of sessions and of the running state agree."""

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TOPIC_PREFIX_PATTERN = r"^[A-Za-z0-9_.-]+$"
"""One topic level, no wildcards: the root every topic of a deployment hangs from."""
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]
IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)
"""Gateway, instrument and user ids: also MQTT topic levels, so no '/', '+', '#'."""
INGEST_CLIENT_ID_PREFIX = "ingest-"
"""Ingest workers' MQTT client ids start with this; gateways (client id = gateway id) must not:
one client id is one connection, so a second client with it takes the first one's over."""
FreeText = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]
"""Any text but NUL (U+0000): PostgreSQL cannot store it, so it would cost the whole message."""

# Wire values are taken as JSON types, never coerced: "12" is not an integer, "yes" not a
# boolean, "5.5" not a number, a number not a timestamp (JSON Schema agrees). Non-finite numbers
# (NaN, Infinity: not JSON, though many parsers accept them) are refused by ``allow_inf_nan``.
Count = Annotated[int, Strict(), Field(ge=0, lt=2**63)]
"""Sequence numbers: a JSON integer 0 .. 2^63-1 (written without a fraction: ``12``, not
``12.0``)."""
Number = Annotated[float, Strict()]
"""A finite JSON number (an integer is a number too)."""


RFC3339_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""The timestamp text the protocol takes: RFC 3339 with a zone, at most microseconds, each
field in its range (whether the day exists in its month, the models check)."""
_RFC3339 = re.compile(RFC3339_PATTERN)


def _timestamp(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    # pydantic would read a number, or text such as "1772352000", as POSIX seconds
    if isinstance(value, int | float) or (isinstance(value, str) and not _RFC3339.match(value)):
        raise ValueError("a timestamp is RFC 3339 text with a timezone, e.g. 2026-03-01T08:00:00Z")
    ts: datetime = handler(value)
    try:
        return ts.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError("the timestamp is out of range in UTC") from None


Timestamp = Annotated[
    AwareDatetime,
    WrapValidator(_timestamp),
    Field(json_schema_extra={"pattern": RFC3339_PATTERN}),
]
"""RFC 3339 text with a zone (or an aware datetime), normalised to UTC."""


def _version(value: Any) -> Any:
    # the Literal check alone (lax) takes ``true`` and ``1.0`` for 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("v must be the JSON integer 1")
    return value


Version = Annotated[Literal[1], BeforeValidator(_version)]


class State(StrEnum):
    """Instrument states a gateway may report. ``offline`` is derived by the platform."""

    OFF = "off"
    IDLE = "idle"
    RUNNING = "running"
    FAULT = "fault"
    MAINTENANCE = "maintenance"


class EventType(StrEnum):
    SESSION_START = "session_start"
    SESSION_END = "session_end"
    FAULT = "fault"
    FAULT_CLEARED = "fault_cleared"
    MAINTENANCE_START = "maintenance_start"
    MAINTENANCE_END = "maintenance_end"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Sample(_Strict):
    """The instrument's state at one instant; it holds until the next sample."""

    ts: Timestamp
    state: State
    power_w: Annotated[Number, Field(ge=0, le=10_000_000)] | None = None
    user: Identifier | None = None
    metrics: dict[Identifier, Number] = Field(
        default_factory=dict,
        max_length=MAX_METRICS_PER_SAMPLE,
        # names must match the pattern: patternProperties alone would let others through
        json_schema_extra={"additionalProperties": False},
    )


class Event(_Strict):
    ts: Timestamp
    type: EventType
    user: Identifier | None = None
    detail: FreeText | None = Field(default=None, max_length=1000)


class DataMessage(_Strict):
    """``<prefix>/gw/<gateway>/data/<instrument>``: samples and events of one instrument.

    ``(gateway, seq, created_at)`` identifies the message: the ingest stores each key once, so a
    gateway may resend (byte-identical) freely.
    """

    model_config = ConfigDict(
        # "at least one sample or event" (``_not_empty``), for JSON Schema validators too
        json_schema_extra={"anyOf": [
            {"required": ["samples"], "properties": {"samples": {"minItems": 1}}},
            {"required": ["events"], "properties": {"events": {"minItems": 1}}},
        ]},
    )

    v: Version
    gateway: Identifier
    instrument: Identifier
    seq: Count
    bd_seq: Count
    created_at: Timestamp
    historical: Annotated[bool, Strict()] = False
    samples: list[Sample] = Field(default_factory=list, max_length=MAX_SAMPLES_PER_MESSAGE)
    events: list[Event] = Field(default_factory=list, max_length=MAX_EVENTS_PER_MESSAGE)

    @model_validator(mode="after")
    def _not_empty(self) -> DataMessage:
        if not self.samples and not self.events:
            raise ValueError("a data message carries at least one sample or event")
        return self


class GatewayState(_Strict):
    """Retained ``<prefix>/gw/<gateway>/state``: birth (online) or last will (offline).

    ``bd_seq`` ties a will to its birth: an offline state whose bd_seq differs from the last
    birth's is stale (the gateway already reconnected) and is ignored. ``ts`` is when the state
    began; a will has none (it is written at connect time, published whenever the connection
    dies), so the ingest takes the time it received it.
    """

    v: Version
    gateway: Identifier
    status: Literal["online", "offline"]
    bd_seq: Count
    ts: Timestamp | None = None
    instruments: list[Identifier] = Field(default_factory=list, max_length=1000)
    software: FreeText | None = Field(default=None, max_length=200)
    dropped: Count | None = None
    """Messages the gateway's outbox dropped at its bounds since it was created (a birth)."""


MAX_STORED_SEQS = 10_000
"""Sequence numbers one ``StoredMessages`` confirms at most (a batch holds fewer)."""


class StoredMessages(_Strict):
    """``<prefix>/gw/<gateway>/stored`` (platform -> gateway, QoS 1, not retained): data
    messages of the gateway, by ``seq``, that the platform has committed for good (stored, a
    duplicate of a stored one, or dead-lettered). Only then may the gateway delete them from
    its outbox: a broker acknowledgement (PUBACK) alone does not survive a broker crash.
    """

    v: Version
    gateway: Identifier
    seqs: list[Count] = Field(min_length=1, max_length=MAX_STORED_SEQS)


class IngestState(_Strict):
    """Retained ``<prefix>/ingest/<worker>/state``: gateways publish only while one is online."""

    v: Version
    worker: Identifier
    status: Literal["online", "offline"]


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic tree under one prefix (``isv1`` by default)."""

    prefix: str = DEFAULT_TOPIC_PREFIX

    def gateway_state(self, gateway: str) -> str:
        return f"{self.prefix}/gw/{gateway}/state"

    def data(self, gateway: str, instrument: str) -> str:
        return f"{self.prefix}/gw/{gateway}/data/{instrument}"

    def ingest_state(self, worker: str) -> str:
        return f"{self.prefix}/ingest/{worker}/state"

    def stored(self, gateway: str) -> str:
        return f"{self.prefix}/gw/{gateway}/stored"

    @property
    def all_gateway_states(self) -> str:
        return f"{self.prefix}/gw/+/state"

    @property
    def all_data(self) -> str:
        return f"{self.prefix}/gw/+/data/+"

    @property
    def all_ingest_states(self) -> str:
        return f"{self.prefix}/ingest/+/state"

    def parse(self, topic: str) -> tuple[str, str, str | None]:
        """Split a gateway topic into (kind, gateway, instrument); ValueError if foreign.

        ``("data", gateway, instrument)`` or ``("state", gateway, None)``; the ingest routes
        every delivery with it. Ids that are not identifiers make the topic foreign: nothing
        can be confirmed to such a gateway.
        """
        head = self.prefix + "/gw/"
        if topic.startswith(head):
            parts = topic[len(head):].split("/")
            n = len(parts)
            ids_valid = all(IDENTIFIER_RE.fullmatch(part) for part in parts[::2])
            if n == 3 and parts[1] == "data" and ids_valid:
                return "data", parts[0], parts[2]
            if n == 2 and parts[1] == "state" and ids_valid:
                return "state", parts[0], None
        raise ValueError(
            f"topic {topic!r} is not a gateway topic: expected {head}<gateway>/state or"
            f" {head}<gateway>/data/<instrument>, ids matching {IDENTIFIER_PATTERN}")


def dumps(model: BaseModel) -> bytes:
    """Compact JSON with UTC timestamps ending in 'Z'."""
    data = model.model_dump(mode="json", exclude_defaults=False)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of every payload, for teams building their own gateway."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://instrushare.org/schema/protocol-v1.json",
        "title": "instrushare MQTT protocol v1",
        "oneOf": [
            {"$ref": "#/$defs/DataMessage"},
            {"$ref": "#/$defs/GatewayState"},
            {"$ref": "#/$defs/IngestState"},
            {"$ref": "#/$defs/StoredMessages"},
        ],
        "$defs": {
            name: _without_nested_defs(model.model_json_schema(ref_template="#/$defs/{model}"))
            for name, model in (
                ("DataMessage", DataMessage),
                ("GatewayState", GatewayState),
                ("IngestState", IngestState),
                ("StoredMessages", StoredMessages),
                ("Sample", Sample),
                ("Event", Event),
            )
        }
        | {"State": {"enum": [s.value for s in State], "type": "string"}}
        | {"EventType": {"enum": [e.value for e in EventType], "type": "string"}},
    }


def _without_nested_defs(schema: dict[str, Any]) -> dict[str, Any]:
    schema.pop("$defs", None)
    return schema
