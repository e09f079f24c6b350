"""Fast validation of data messages: the protocol's rules as plain typed dicts.

``instrushare.protocol.DataMessage`` builds a model object per sample and runs two Python
validators per sample; for a 100-sample message that is ~200 us, more than the database
needs to store it. These ``TypedDict`` mirrors carry the same constraints, checked entirely
by pydantic-core, and yield plain dicts (~50 us). Timestamps are checked as RFC 3339 text
there and parsed by ``datetime.fromisoformat`` into datetimes on ``datetime.UTC``: comparing
those is ~20 times cheaper than comparing pydantic's own tz-aware values, and the store
compares every sample's time. These dicts are only a shortcut: whatever they
refuse is validated again by the protocol model, which decides and gives the error, so they
must never accept what the protocol refuses (``tests/ingest/test_wire.py`` checks both the
field lists and random payloads against the protocol).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    with_config,
)
from typing_extensions import TypedDict

from instrushare.protocol import (
    MAX_EVENTS_PER_MESSAGE,
    MAX_METRICS_PER_SAMPLE,
    MAX_SAMPLES_PER_MESSAGE,
    RFC3339_PATTERN,
    EventType,
    FreeText,
    Identifier,
    State,
)

_StateName = Literal["off", "idle", "running", "fault", "maintenance"]
_EventName = Literal[
    "session_start", "session_end", "fault", "fault_cleared", "maintenance_start",
    "maintenance_end",
]
_Key = Annotated[int, Field(ge=0, lt=2**63)]
_Time = Annotated[str, StringConstraints(pattern=RFC3339_PATTERN)]
"""Checked as text here and parsed below; the protocol model takes the same texts."""
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
"""JSON types as they are, as in the protocol ("12" is no integer), and finite numbers only."""
_Version = Annotated[int, Field(ge=1, le=1)]
"""Strict, so ``true`` and ``1.0`` are refused here (the protocol model then decides)."""


@with_config(_STRICT)
class SampleDict(TypedDict):
    ts: _Time
    state: _StateName
    power_w: NotRequired[Annotated[float, Field(ge=0, le=10_000_000)] | None]
    user: NotRequired[Identifier | None]
    metrics: NotRequired[
        Annotated[dict[Identifier, float], Field(max_length=MAX_METRICS_PER_SAMPLE)]
    ]


@with_config(_STRICT)
class EventDict(TypedDict):
    ts: _Time
    type: _EventName
    user: NotRequired[Identifier | None]
    detail: NotRequired[Annotated[FreeText, Field(max_length=1000)] | None]


@with_config(_STRICT)
class MessageDict(TypedDict):
    v: _Version
    gateway: Identifier
    instrument: Identifier
    seq: _Key
    bd_seq: _Key
    created_at: _Time
    historical: NotRequired[bool]
    samples: NotRequired[Annotated[list[SampleDict], Field(max_length=MAX_SAMPLES_PER_MESSAGE)]]
    events: NotRequired[Annotated[list[EventDict], Field(max_length=MAX_EVENTS_PER_MESSAGE)]]


_MESSAGE = TypeAdapter(MessageDict)

assert set(_StateName.__args__) == {s.value for s in State}  # type: ignore[attr-defined]
assert set(_EventName.__args__) == {e.value for e in EventType}  # type: ignore[attr-defined]


def fast_message(payload: bytes | bytearray) -> dict[str, Any] | None:
    """The validated message, or None when the protocol model must decide (and explain).

    Each sample's and event's ``ts`` becomes a datetime on ``datetime.UTC``, and ``ts_text``
    the text for the COPY: as given when in UTC (checked RFC 3339 above, so PostgreSQL reads
    the same instant from it), else written anew in UTC, as PostgreSQL refuses the offsets
    beyond ±15:59 that RFC 3339 allows.
    """
    try:
        msg: dict[str, Any] = _MESSAGE.validate_json(payload)  # type: ignore[assignment]
        samples = msg.get("samples")
        events = msg.get("events")
        if not samples and not events:
            return None  # the protocol model refuses empty messages, with its own message
        msg["created_at"] = _utc(msg["created_at"])
        parse = datetime.fromisoformat
        for items in (samples, events):
            for item in items or ():
                text = item["ts"]
                ts = parse(text)
                if ts.tzinfo is not UTC:
                    ts = ts.astimezone(UTC)
                    text = ts.isoformat()
                item["ts"], item["ts_text"] = ts, text
    except (ValidationError, ValueError, OverflowError):  # overflow: out of range in UTC
        return None
    return msg


def _utc(value: str) -> datetime:
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo is UTC else ts.astimezone(UTC)  # the pattern demands an offset


def timestamp(value: datetime) -> str:
    """ISO form in UTC, as the protocol model normalises timestamps."""
    return value.astimezone(UTC).isoformat()
