"""Turn one raw MQTT delivery into rows to store, or dead letters with a reason.

Pure except for the registry lookup; the receive time stamped by the MQTT callback is the
clock every timestamp rule uses, so a retried batch decodes the same way. Data messages take
the fast path of ``_wire`` first; only what it refuses meets the protocol model, which then
names the reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from operator import itemgetter, lt
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from instrushare.protocol import (
    MAX_FUTURE_SKEW,
    MAX_PAST_AGE,
    MAX_PAYLOAD_BYTES,
    Count,
    DataMessage,
    GatewayState,
    Topics,
)

from ._registry import InstrumentRegistry
from ._wire import fast_message, timestamp
from .errors import IngestError

Raw = tuple[str, bytes | bytearray, int, int, float]
"""(topic, payload, mid, qos, receive time as POSIX seconds) as queued by the MQTT callback."""

MsgRow = tuple[str, int, datetime, str, int, bool, int, int, datetime]
SampleRow = tuple[
    str, datetime, str, float | None, str | None, dict[str, float] | None, str, int, str
]
"""Columns of ``state_sample`` in table order, then ``ts`` as RFC 3339 text for the COPY."""
EventRow = tuple[str, datetime, str, str | None, str | None, str, int, str]
"""Columns of ``instrument_event`` in table order, then ``ts`` as text."""
DeadRow = tuple[str, bytes | bytearray, str, str, datetime]
MessageKey = tuple[str, int, datetime]
"""(gateway, seq, created_at): the stored message's key (docs/protocol.md, "Deduplication")."""

_DETAIL_MAX = 4000
_SEQ = TypeAdapter(Count)
_TOO_OLD = f"older than {MAX_PAST_AGE.days} days"
_FUTURE = f"more than {MAX_FUTURE_SKEW.total_seconds():.0f} s ahead"
_Row = TypeVar("_Row", SampleRow, EventRow)
_sample_key = itemgetter(1)
_event_key = itemgetter(1, 2)

logger = logging.getLogger("ingest")


class Reason(StrEnum):
    """Why a message (or part of one) went to the dead-letter table."""

    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    INVALID_PAYLOAD = "invalid_payload"
    UNSUPPORTED_VERSION = "unsupported_version"
    TOPIC_MISMATCH = "topic_mismatch"
    UNKNOWN_INSTRUMENT = "unknown_instrument"
    WRONG_GATEWAY = "wrong_gateway"
    FUTURE_TIMESTAMP = "future_timestamp"
    TOO_OLD = "too_old"
    UNKNOWN_TOPIC = "unknown_topic"
    """Not a data or state topic under the prefix: the worker subscribes to those only, but a
    persistent session keeps the subscriptions of an earlier run (another prefix, say)."""
    DB_REJECTED = "db_rejected"
    DECODE_FAILED = "decode_failed"
    """Decoding raised an error the protocol's rules do not name: a defect of the ingest, which
    costs this one message (kept for a replay once fixed) instead of stopping the worker."""


@dataclass(slots=True)
class Decoded:
    """One delivery, ready to write: acked by ``mid`` once its transaction commits."""

    mid: int
    qos: int
    topic: str
    payload: bytes | bytearray
    received_at: datetime
    key: MessageKey | None = None
    stored: tuple[str, int] | None = None
    """(gateway, seq) of a data message read well enough to name it: once committed (stored,
    a duplicate or dead-lettered) the gateway is told, and may delete it from its outbox."""
    message: MsgRow | None = None
    samples: list[SampleRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    dead: list[DeadRow] = field(default_factory=list)
    state: GatewayState | None = None
    lag_s: float | None = None
    historical: bool = False
    replaces: int | None = None
    """Id of the dead letter this is a replay of (``dead_letters``): deleted in the
    transaction that handles it, which may dead-letter it anew."""

    def reject(self, reason: Reason, detail: str = "") -> Decoded:
        self.dead.append((self.topic, self.payload, reason.value, detail[:_DETAIL_MAX],
                          self.received_at))
        return self


class Decoder:
    """Classifies deliveries under one topic prefix against the instrument registry."""

    def __init__(self, *, prefix: str, registry: InstrumentRegistry) -> None:
        self._parse = Topics(prefix).parse
        self._registry = registry

    def decode(self, raw: Raw) -> Decoded:
        """Rows or dead letters for one delivery; raises only the registry's IngestError."""
        topic, payload, mid, qos, received = raw
        at = datetime.fromtimestamp(received, UTC)
        try:
            return self._classify(Decoded(mid, qos, topic, payload, at), received)
        except IngestError:
            raise
        except Exception as exc:
            logger.exception("cannot decode a delivery on %s; dead-lettered", topic)
            return Decoded(mid, qos, topic, payload, at).reject(
                Reason.DECODE_FAILED, f"{type(exc).__name__}: {exc}")

    def _classify(self, out: Decoded, received: float) -> Decoded:
        payload, topic = out.payload, out.topic
        if len(payload) > MAX_PAYLOAD_BYTES:
            return out.reject(Reason.OVERSIZED, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
        try:
            _, gateway, instrument = self._parse(topic)
        except ValueError as exc:
            return out.reject(Reason.UNKNOWN_TOPIC, str(exc))
        if instrument is None:
            return self._state(out, gateway)
        return self._data(out, gateway, instrument, received)

    def _data(self, out: Decoded, gateway: str, instrument: str, received: float) -> Decoded:
        msg = fast_message(out.payload)
        if msg is None:
            try:
                msg = _as_dict(DataMessage.model_validate_json(out.payload))
            except ValidationError as exc:
                out.stored = _named(gateway, out.payload)
                return _invalid(out, exc)
        out.stored = (gateway, msg["seq"])  # the topic names the sender (broker ACLs)
        if msg["gateway"] != gateway or msg["instrument"] != instrument:
            return out.reject(
                Reason.TOPIC_MISMATCH,
                f"payload says {msg['gateway']}/{msg['instrument']},"
                f" topic {gateway}/{instrument}",
            )
        recv = out.received_at
        newest, oldest = recv + MAX_FUTURE_SKEW, recv - MAX_PAST_AGE
        created = msg["created_at"]
        if created > newest:  # the partition column and the lag's origin: the whole message
            return _future(out, f"created_at {timestamp(created)}")
        if created < oldest:  # so are its samples and events, and its key outlives no prune
            return _too_old(out, f"created_at {timestamp(created)}")
        registered, owner = self._registry.lookup(instrument, gateway, received)
        if not registered:
            return out.reject(Reason.UNKNOWN_INSTRUMENT, instrument)
        if owner is not None and owner != gateway:
            return out.reject(
                Reason.WRONG_GATEWAY, f"{instrument} is registered with gateway {owner}"
            )
        future: list[str] = []
        old: list[str] = []
        seq = msg["seq"]
        hist = msg.get("historical", False)
        raw_samples = msg.get("samples", ())
        times = [s["ts"] for s in raw_samples]
        if times and (min(times) < oldest or max(times) > newest):
            kept = []
            for s in raw_samples:
                ts = s["ts"]
                if ts > newest:
                    future.append(f"sample {timestamp(ts)}")
                elif ts < oldest:
                    old.append(f"sample {timestamp(ts)}")
                else:
                    kept.append(s)
            raw_samples = kept
        samples = [
            (instrument, s["ts"], s["state"], s.get("power_w"), s.get("user"),
             s.get("metrics") or None, gateway, seq, s.get("ts_text") or s["ts"].isoformat())
            for s in raw_samples
        ]
        if not all(map(lt, times, times[1:])):  # not strictly in time order: a ts repeated?
            samples = _first_each(samples, _sample_key)
        out.samples = samples
        events: list[EventRow] = []
        for e in msg.get("events", ()):
            ts = e["ts"]
            if ts > newest:
                future.append(f"event {timestamp(ts)}")
            elif ts < oldest:
                old.append(f"event {timestamp(ts)}")
            else:
                events.append((instrument, ts, e["type"], e.get("user"), e.get("detail"),
                               gateway, seq, e.get("ts_text") or ts.isoformat()))
        events = out.events = _first_each(events, _event_key) if len(events) > 1 else events
        if future:
            _future(out, ", ".join(future))
        if old:
            _too_old(out, ", ".join(old))
        out.key = (gateway, seq, created)
        out.historical = hist
        out.message = (
            gateway, seq, created, instrument, msg["bd_seq"], hist,
            len(samples), len(events), recv,
        )
        out.lag_s = received - created.timestamp()
        return out

    def _state(self, out: Decoded, gateway: str) -> Decoded:
        try:
            state = GatewayState.model_validate_json(out.payload)
        except ValidationError as exc:
            return _invalid(out, exc)
        if state.gateway != gateway:
            return out.reject(
                Reason.TOPIC_MISMATCH, f"payload says {state.gateway}, topic {gateway}"
            )
        if state.ts is not None and state.ts > out.received_at + MAX_FUTURE_SKEW:
            return _future(out, f"state ts {timestamp(state.ts)}")
        out.state = state
        return out


def _future(out: Decoded, what: str) -> Decoded:
    recv = out.received_at
    return out.reject(
        Reason.FUTURE_TIMESTAMP,
        f"received {recv.isoformat()}; {_FUTURE} (after {(recv + MAX_FUTURE_SKEW).isoformat()}):"
        f" {what}",
    )


def _too_old(out: Decoded, what: str) -> Decoded:
    recv = out.received_at
    return out.reject(
        Reason.TOO_OLD,
        f"received {recv.isoformat()}; {_TOO_OLD} (before {(recv - MAX_PAST_AGE).isoformat()}):"
        f" {what}",
    )


def _first_each(rows: list[_Row], key: Callable[[_Row], object]) -> list[_Row]:
    """The first row of the message for each key: the database stores one sample per
    instrument and ts, one event per instrument, ts and type, and the message's row counts
    what it kept (``n_samples``, ``n_events``)."""
    first: dict[object, _Row] = {}
    for row in rows:
        first.setdefault(key(row), row)
    return rows if len(first) == len(rows) else list(first.values())


def _as_dict(msg: DataMessage) -> dict[str, Any]:
    """The protocol model's result in the fast path's shape (reached only if they disagree)."""
    doc: Any = msg.model_dump()
    for s in doc["samples"]:
        s["state"] = s["state"].value
    for e in doc["events"]:
        e["type"] = e["type"].value
    return doc  # type: ignore[no-any-return]


def _invalid(out: Decoded, exc: ValidationError) -> Decoded:
    errors: list[Any] = exc.errors(include_url=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return out.reject(Reason.MALFORMED_JSON, str(errors[0]["msg"]))
    if any(e["loc"] == ("v",) for e in errors):  # missing, of another type or value
        return out.reject(Reason.UNSUPPORTED_VERSION, _version_of(out.payload))
    return out.reject(Reason.INVALID_PAYLOAD, json.dumps(errors, default=str))


def _named(gateway: str, payload: bytes | bytearray) -> tuple[str, int] | None:
    """(gateway, seq) of an invalid data message that still names its seq: handled for good
    like any dead letter, so its gateway may stop resending it. Parsed by pydantic-core, as
    the validation was: what it finds malformed (a BOM, UTF-16, a lone surrogate, which
    ``json.loads`` takes) names nothing."""
    try:
        doc = from_json(payload)
        return (gateway, _SEQ.validate_python(doc["seq"])) if isinstance(doc, dict) else None
    except (ValueError, KeyError):  # ValidationError is a ValueError
        return None


def _version_of(payload: bytes | bytearray) -> str:
    try:
        doc = from_json(payload)
        return f"v={json.dumps(doc['v'])}" if "v" in doc else "v missing"
    except ValueError:
        return "v unreadable"
