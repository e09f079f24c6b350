"""The fast validation path never accepts what the protocol model refuses, and agrees on values."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ingest._wire import EventDict, MessageDict, SampleDict, fast_message
from instrushare.protocol import DataMessage, Event, Sample

from .conftest import BASE, data_message


def test_fast_models_have_the_protocol_fields() -> None:
    for fast, model in ((MessageDict, DataMessage), (SampleDict, Sample), (EventDict, Event)):
        assert set(fast.__annotations__) == set(model.model_fields), model.__name__


_good = json.loads(data_message(
    "gw1", "i1", 7, [(BASE, "running", "alice"), (BASE.replace(second=1), "idle", None)],
    events=[(BASE, "fault")],
))
_good["samples"][0]["metrics"] = {"temp": 21.5}

_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2**64), st.floats(),  # NaN, Infinity too
    st.sampled_from(["12", "5.5", "yes", "true", "", "x/y", "a" * 65, "running", "fault",
                     "2024-02-30T00:00:00Z",
                     "2024-01-01T00:00:00+08:00", "2024-01-01T00:00:00", "2024-01-01 00:00:00Z",
                     "2024-01-01T24:00:00Z", "2024-01-01T00:00:00.1234567Z",
                     "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00+00:60",
                     "2024-01-01t00:00:00z", "1700000000", "nul \u0000 inside"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=2),
)
_paths = st.sampled_from([
    ("v",), ("gateway",), ("seq",), ("bd_seq",), ("created_at",), ("historical",), ("samples",),
    ("events",), ("extra",), ("samples", 0, "ts"), ("samples", 0, "state"),
    ("samples", 0, "power_w"), ("samples", 0, "user"), ("samples", 0, "metrics"),
    ("samples", 1, "extra"), ("samples", 0, "metrics", "temp"), ("events", 0, "ts"),
    ("events", 0, "type"), ("events", 0, "detail"),
])


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set a nested value; an earlier edit may have replaced the parent (then skip)."""
    for key in path[:-1]:
        if not isinstance(doc, dict | list):
            return
        try:
            doc = doc[key]
        except (IndexError, KeyError):
            return
    if isinstance(doc, dict) or (isinstance(doc, list) and isinstance(path[-1], int)
                                 and path[-1] < len(doc)):
        doc[path[-1]] = value


@settings(max_examples=400, deadline=None)
@given(edits=st.lists(st.tuples(_paths, _values), max_size=3), drop=st.booleans())
@example(edits=[], drop=False)
def test_fast_path_agrees_with_the_protocol(edits: list[tuple[tuple[Any, ...], Any]],
                                            drop: bool) -> None:
    doc = json.loads(json.dumps(_good))
    for path, value in edits:
        _set(doc, path, value)
    if drop:
        doc.pop("created_at")
    payload = json.dumps(doc).encode()  # NaN and Infinity come out as such: not JSON
    fast = fast_message(payload)
    try:
        model = DataMessage.model_validate_json(payload)
    except ValidationError:
        assert fast is None
        return
    if fast is None:  # stricter is allowed (the protocol model then decides), but not for all
        assert edits or drop, "the fast path refuses a plain valid message"
        return
    assert fast["created_at"] == model.created_at and fast["created_at"].tzinfo is UTC
    assert (fast["gateway"], fast["instrument"], fast["seq"], fast["bd_seq"]) == (
        model.gateway, model.instrument, model.seq, model.bd_seq)
    assert fast.get("historical", False) == model.historical
    got = [(s["ts"], s["state"], s.get("power_w"), s.get("user"), s.get("metrics", {}))
           for s in fast.get("samples", [])]
    assert got == [(s.ts, s.state.value, s.power_w, s.user, s.metrics) for s in model.samples]
    assert all(s["ts"].tzinfo is UTC for s in fast.get("samples", []))
    got_events = [(e["ts"], e["type"], e.get("user"), e.get("detail"))
                  for e in fast.get("events", [])]
    assert got_events == [(e.ts, e.type.value, e.user, e.detail) for e in model.events]


@pytest.mark.parametrize(("path", "value"), [
    (("seq",), "12"), (("seq",), 12.0), (("seq",), True), (("historical",), "yes"),
    (("historical",), 1), (("v",), True), (("samples", 0, "power_w"), "5.5"),
    (("samples", 0, "power_w"), float("nan")), (("samples", 0, "metrics", "temp"), float("inf")),
    (("samples", 0, "metrics", "temp"), float("-inf")), (("samples", 0, "metrics", "temp"), "1"),
    (("samples", 0, "ts"), 1700000000), (("created_at",), 1700000000),
    (("events", 0, "detail"), "nul \u0000 inside"),
    (("samples", 0, "ts"), "2024-01-01T00:00:00+00:60"),
    (("created_at",), "0001-01-01T00:00:00+00:01"),
    (("events", 0, "ts"), "9999-12-31T23:59:59-23:00"),
])
def test_both_paths_refuse(path: tuple[Any, ...], value: Any) -> None:
    """JSON values of another type (never coerced), NUL in text, a minute offset of 60 and
    times that leave the datetime range in UTC."""
    doc = json.loads(json.dumps(_good))
    _set(doc, path, value)
    payload = json.dumps(doc).encode()
    assert fast_message(payload) is None
    with pytest.raises(ValidationError):
        DataMessage.model_validate_json(payload)


def test_integers_are_numbers() -> None:
    doc = json.loads(json.dumps(_good))
    doc["samples"][0]["power_w"] = 5
    doc["samples"][0]["metrics"] = {"count": 3}
    fast = fast_message(json.dumps(doc).encode())
    assert fast is not None and fast["samples"][0]["power_w"] == 5.0
