"""Rows written by text COPY read back exactly: free text escaped, offsets and NULLs kept."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest._decode import Decoder
from ingest._registry import InstrumentRegistry
from ingest._store import BatchStore
from ingest._text import escape
from instrushare.protocol import Topics

from .conftest import BASE, query, register

_UNESCAPE = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}


def _unescape(text: str) -> str:
    out, k = [], 0
    while k < len(text):
        pair = text[k:k + 2]
        if pair in _UNESCAPE:
            out.append(_UNESCAPE[pair])
            k += 2
        else:
            out.append(text[k])
            k += 1
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab\\\t\n\r é\u4e2d"), max_size=30))
def test_escape_round_trips_and_leaves_no_raw_separator(value: str) -> None:
    out = escape(value)
    assert "\t" not in out and "\n" not in out and "\r" not in out
    assert _unescape(out) == value


def _store(database_url: str, doc: dict[str, Any]) -> None:
    """Decode ``doc`` as gateway gw1's data message for i1 and write it, as one fresh message."""
    store = BatchStore(conninfo=database_url, session_max_gap=timedelta(minutes=10))
    decoder = Decoder(prefix="p", registry=InstrumentRegistry(loader=store.load_registry))
    item = decoder.decode((Topics("p").data("gw1", "i1"), json.dumps(doc).encode(), 1, 1,
                           time.time()))
    try:
        assert store.write([item]).fresh == 1
    finally:
        store.close()


def test_free_text_offsets_nulls_and_metrics_stored_exactly(database_url: str) -> None:
    register(database_url, {"i1": "gw1"})
    detail = "tab\there, new\nline, cr\r, back\\slash \\N \\t, 中文"
    t1 = BASE.replace(microsecond=123456)
    doc = {
        "v": 1, "gateway": "gw1", "instrument": "i1", "seq": 1, "bd_seq": 2,
        "created_at": datetime.now(UTC).isoformat(),
        "samples": [
            # the same instants written with an offset and with Z
            {"ts": (t1 + timedelta(hours=8)).replace(tzinfo=None).isoformat() + "+08:00",
             "state": "running", "power_w": 0.1, "user": "u.1-x_y",
             "metrics": {"temp": 21.5, "p_kPa": -1e-07}},
            {"ts": (t1 + timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
             "state": "idle"},
        ],
        "events": [{"ts": t1.isoformat(), "type": "fault", "detail": detail},
                   {"ts": t1.isoformat(), "type": "fault_cleared", "user": "u2"}],
    }
    _store(database_url, doc)
    assert query(database_url, "SELECT ts, state, power_w, user_id, metrics, gateway_id, seq"
                 " FROM state_sample ORDER BY ts") == [
        (t1, "running", 0.1, "u.1-x_y", {"temp": 21.5, "p_kPa": -1e-07}, "gw1", 1),
        (t1 + timedelta(seconds=1), "idle", None, None, None, "gw1", 1),
    ]
    assert query(database_url, "SELECT ts, type, user_id, detail FROM instrument_event"
                 " ORDER BY type") == [(t1, "fault", None, detail),
                                       (t1, "fault_cleared", "u2", None)]
    assert query(database_url, "SELECT gateway_id, seq, bd_seq, historical, n_samples, n_events"
                 " FROM ingested_message") == [("gw1", 1, 2, False, 2, 2)]


def test_offsets_postgresql_cannot_read_are_stored_at_their_instant(database_url: str) -> None:
    """RFC 3339 allows offsets to ±23:59, PostgreSQL reads them to ±15:59 only: a sample or
    event at +16:00 or -23:59 is stored at its instant, not refused with its message."""
    register(database_url, {"i1": "gw1"})
    offsets = [timedelta(hours=16), -timedelta(hours=23, minutes=59),
               timedelta(hours=15, minutes=59)]
    at = [BASE + timedelta(seconds=k) for k in range(len(offsets))]
    written = [t.astimezone(timezone(offset)).isoformat() for t, offset in zip(
        at, offsets, strict=True)]
    assert [text[-6:] for text in written] == ["+16:00", "-23:59", "+15:59"]
    doc = {
        "v": 1, "gateway": "gw1", "instrument": "i1", "seq": 1, "bd_seq": 1,
        "created_at": datetime.now(UTC).isoformat(),
        "samples": [{"ts": text, "state": "idle"} for text in written],
        "events": [{"ts": written[1], "type": "fault"}],
    }
    _store(database_url, doc)
    assert query(database_url, "SELECT ts FROM state_sample ORDER BY ts") == [(t,) for t in at]
    assert query(database_url, "SELECT ts FROM instrument_event") == [(at[1],)]
    assert query(database_url, "SELECT count(*) FROM dead_letter") == [(0,)]

