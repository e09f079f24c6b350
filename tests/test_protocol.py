"""The wire protocol: models, topics and the published JSON Schema agree."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
from pydantic import BaseModel, ValidationError

from instrushare.protocol import (
    MAX_METRICS_PER_SAMPLE,
    MAX_SAMPLES_PER_MESSAGE,
    DataMessage,
    GatewayState,
    IngestState,
    Sample,
    State,
    Topics,
    dumps,
    json_schema,
)

SCHEMA_FILE = Path(__file__).parents[1] / "instrushare" / "schema" / "protocol-v1.json"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _message(**overrides: object) -> DataMessage:
    fields: dict[str, object] = {
        "v": 1,
        "gateway": "gw-1",
        "instrument": "ms-01",
        "seq": 7,
        "bd_seq": 2,
        "created_at": T0,
        "samples": [{"ts": T0, "state": "running", "power_w": 950.5, "user": "u-3"}],
    }
    fields.update(overrides)
    return DataMessage.model_validate(fields)


def test_committed_schema_is_generated_from_models() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema()


def test_serialised_message_validates_against_schema_and_round_trips() -> None:
    message = _message(events=[{"ts": T0, "type": "session_start", "user": "u-3"}])
    payload = json.loads(dumps(message))
    jsonschema.validate(payload, json_schema())
    assert payload["created_at"].endswith("Z")
    assert DataMessage.model_validate_json(dumps(message)) == message


def test_timestamps_are_normalised_to_utc() -> None:
    shanghai = timezone(timedelta(hours=8))
    sample = Sample(ts=datetime(2026, 3, 1, 16, 0, tzinfo=shanghai), state=State.IDLE)
    assert sample.ts == T0 and sample.ts.tzinfo == UTC


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"v": 2}, "v"),
        ({"v": 1.0}, "JSON integer"),
        ({"samples": [], "events": []}, "at least one sample or event"),
        ({"samples": [{"ts": "2026-03-01T08:00:00", "state": "idle"}]}, "timezone"),
        ({"samples": [{"ts": T0, "state": "exploded"}]}, "state"),
        ({"gateway": "gw/2"}, "gateway"),
        ({"seq": -1}, "seq"),
        ({"extra": 1}, "extra"),
        ({"samples": [{"ts": T0, "state": "idle"}] * (MAX_SAMPLES_PER_MESSAGE + 1)}, "samples"),
    ],
)
def test_invalid_messages_are_refused_with_a_reason(
    overrides: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _message(**overrides)
    assert fragment in str(caught.value)


def test_topics_round_trip() -> None:
    topics = Topics("isv1")
    assert topics.parse(topics.data("gw-1", "ms-01")) == ("data", "gw-1", "ms-01")
    assert topics.parse(topics.gateway_state("gw-1")) == ("state", "gw-1", None)
    for foreign in ("isv1/gw/gw-1", "other/gw/a/state", "isv1/gw/a/data/b/c",
                    "isv1/gw/gw-7\n/state", "isv1/gw/gw-7/data/ms-05\n"):  # ids end at "$"
        with pytest.raises(ValueError, match="not a gateway topic"):
            topics.parse(foreign)


def test_gateway_state_requires_known_status() -> None:
    GatewayState(v=1, gateway="gw-1", status="offline", bd_seq=0)
    with pytest.raises(ValidationError):
        GatewayState.model_validate({"v": 1, "gateway": "gw-1", "status": "gone", "bd_seq": 0})


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _valid_per_schema(text: str) -> bool:
    try:  # JSON has no NaN or Infinity, though Python's parser reads them
        doc = json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        return False
    valid: bool = jsonschema.Draft202012Validator(json_schema()).is_valid(doc)
    return valid


def _valid_per_model(model: type[BaseModel], text: str) -> bool:
    try:
        model.model_validate_json(text)
    except ValidationError:
        return False
    return True


_SAMPLE: dict[str, object] = {"ts": "2026-03-01T08:00:00Z", "state": "idle"}
_MESSAGE: dict[str, object] = {
    "v": 1, "gateway": "gw-1", "instrument": "ms-01", "seq": 7, "bd_seq": 2,
    "created_at": "2026-03-01T08:00:00+08:00", "samples": [_SAMPLE]}
_EVENT: dict[str, object] = {
    "ts": "2026-03-01T08:00:00Z", "type": "fault", "detail": "x" * 1000}
_STATE: dict[str, object] = {"v": 1, "gateway": "gw-1", "status": "online", "bd_seq": 0}


def _with(base: dict[str, object], **fields: object) -> dict[str, object]:
    return base | fields


def _metrics(metrics: dict[str, object]) -> dict[str, object]:
    return _with(_MESSAGE, samples=[_with(_SAMPLE, metrics=metrics)])


_CASES: list[tuple[str, dict[str, object] | str, type[BaseModel], bool]] = [
    ("minimal message", _MESSAGE, DataMessage, True),
    ("events only", _with(_MESSAGE, samples=[], events=[_EVENT]), DataMessage, True),
    ("no samples, no events", {k: v for k, v in _MESSAGE.items() if k != "samples"},
     DataMessage, False),
    ("empty lists", _with(_MESSAGE, samples=[], events=[]), DataMessage, False),
    ("32 metrics", _metrics({f"m{i}": i for i in range(MAX_METRICS_PER_SAMPLE)}),
     DataMessage, True),
    ("33 metrics", _metrics({f"m{i}": i for i in range(MAX_METRICS_PER_SAMPLE + 1)}),
     DataMessage, False),
    ("metric name with a slash", _metrics({"a/b": 1}), DataMessage, False),
    ("empty metric name", _metrics({"": 1}), DataMessage, False),
    ("65-character metric name", _metrics({"m" * 65: 1}), DataMessage, False),
    ("metric as text", _metrics({"t": "1.5"}), DataMessage, False),
    ("metric as boolean", _metrics({"t": True}), DataMessage, False),
    ("NaN metric", json.dumps(_metrics({"t": float("nan")})), DataMessage, False),
    ("Infinity metric", json.dumps(_metrics({"t": float("inf")})), DataMessage, False),
    ("integer metric", _metrics({"t": 3}), DataMessage, True),
    ("seq as text", _with(_MESSAGE, seq="12"), DataMessage, False),
    ("seq negative", _with(_MESSAGE, seq=-1), DataMessage, False),
    ("seq 2^63", _with(_MESSAGE, seq=2**63), DataMessage, False),
    ("historical as text", _with(_MESSAGE, historical="yes"), DataMessage, False),
    ("power as text", _with(_MESSAGE, samples=[_with(_SAMPLE, power_w="5.5")]),
     DataMessage, False),
    ("power too high", _with(_MESSAGE, samples=[_with(_SAMPLE, power_w=10_000_001)]),
     DataMessage, False),
    ("v true", _with(_MESSAGE, v=True), DataMessage, False),
    ("v 2", _with(_MESSAGE, v=2), DataMessage, False),
    ("timestamp as a number", _with(_MESSAGE, created_at=1_772_352_000), DataMessage, False),
    ("timestamp as numeric text", _with(_MESSAGE, created_at="1772352000"), DataMessage, False),
    ("timestamp without T", _with(_MESSAGE, created_at="2026-03-01 08:00:00Z"), DataMessage,
     False),
    ("timestamp with nanoseconds", _with(_MESSAGE, created_at="2026-03-01T08:00:00.123456789Z"),
     DataMessage, False),
    ("timestamp with microseconds", _with(_MESSAGE, created_at="2026-03-01T08:00:00.123456Z"),
     DataMessage, True),
    ("unknown state", _with(_MESSAGE, samples=[_with(_SAMPLE, state="offline")]),
     DataMessage, False),
    ("1001 samples", _with(_MESSAGE, samples=[_SAMPLE] * (MAX_SAMPLES_PER_MESSAGE + 1)),
     DataMessage, False),
    ("detail too long", _with(_MESSAGE, events=[_with(_EVENT, detail="x" * 1001)]),
     DataMessage, False),
    ("detail with NUL", _with(_MESSAGE, events=[_with(_EVENT, detail="a\u0000b")]),
     DataMessage, False),
    ("offset minutes 60", _with(_MESSAGE, created_at="2026-03-01T08:00:00+00:60"), DataMessage,
     False),
    ("offset hours 24", _with(_MESSAGE, created_at="2026-03-01T08:00:00+24:00"), DataMessage,
     False),
    ("hour 24", _with(_MESSAGE, created_at="2026-03-01T24:00:00Z"), DataMessage, False),
    ("second 60", _with(_MESSAGE, created_at="2026-03-01T08:00:60Z"), DataMessage, False),
    ("month 13", _with(_MESSAGE, created_at="2026-13-01T08:00:00Z"), DataMessage, False),
    ("day 32", _with(_MESSAGE, created_at="2026-03-32T08:00:00Z"), DataMessage, False),
    ("offset -23:59", _with(_MESSAGE, created_at="2026-03-01T08:00:00-23:59"), DataMessage,
     True),
    ("extra field", _with(_MESSAGE, extra=1), DataMessage, False),
    ("birth", _with(_STATE, ts="2026-03-01T08:00:00Z", instruments=["ms-01"]),
     GatewayState, True),
    ("state ts as a number", _with(_STATE, ts=1_772_352_000), GatewayState, False),
    ("will", _with(_STATE, status="offline", ts=None, software="gw/1"), GatewayState, True),
    ("software with NUL", _with(_STATE, software="gw\u0000"), GatewayState, False),
    ("ingest state", {"v": 1, "worker": "w1", "status": "online"}, IngestState, True),
    ("ingest state v true", {"v": True, "worker": "w1", "status": "online"}, IngestState, False),
]


@pytest.mark.parametrize(("case", "doc", "model", "valid"), _CASES, ids=[c[0] for c in _CASES])
def test_schema_and_models_agree(
    case: str, doc: dict[str, object] | str, model: type[BaseModel], valid: bool
) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    assert _valid_per_model(model, text) is valid
    assert _valid_per_schema(text) is valid


@pytest.mark.parametrize("doc", [
    _with(_MESSAGE, v=1.0), _with(_MESSAGE, seq=12.0),
    _with(_MESSAGE, created_at="2026-02-30T08:00:00Z"),
], ids=["v 1.0", "seq 12.0", "30 February"])
def test_the_schema_is_not_sufficient(doc: dict[str, object]) -> None:
    """JSON Schema takes 12.0 for an integer and checks dates by pattern only; the models
    (docs/protocol.md says so) are the reference."""
    text = json.dumps(doc)
    assert _valid_per_schema(text) and not _valid_per_model(DataMessage, text)
