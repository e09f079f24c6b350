"""The wire protocol: models, topics and the published JSON Schema agree."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from instrushare.protocol import (
    MAX_SAMPLES_PER_MESSAGE,
    DataMessage,
    GatewayState,
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
    for foreign in ("isv1/gw/gw-1", "other/gw/a/state", "isv1/gw/a/data/b/c"):
        with pytest.raises(ValueError, match="not a gateway topic"):
            topics.parse(foreign)


def test_gateway_state_requires_known_status() -> None:
    GatewayState(v=1, gateway="gw-1", status="offline", bd_seq=0)
    with pytest.raises(ValidationError):
        GatewayState.model_validate({"v": 1, "gateway": "gw-1", "status": "gone", "bd_seq": 0})
