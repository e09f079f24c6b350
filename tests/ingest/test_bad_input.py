"""Bad input never crashes the worker: each message is dead-lettered with its reason."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest._decode import Decoded, Decoder, Reason
from ingest._registry import InstrumentRegistry
from ingest._store import BatchStore
from instrushare.protocol import (
    IDENTIFIER_PATTERN,
    MAX_METRICS_PER_SAMPLE,
    MAX_PAYLOAD_BYTES,
    MAX_SAMPLES_PER_MESSAGE,
    DataMessage,
    Topics,
)

from .conftest import (
    BASE,
    Publisher,
    RunningWorker,
    data_message,
    gateway_state,
    query,
    register,
    unparsable,
    wait_until,
)

_seq = itertools.count(1)


def _valid(topics: Topics) -> tuple[str, bytes, str | None]:
    return (topics.data("gw1", "i1"),
            data_message("gw1", "i1", next(_seq), [(BASE, "idle", None)]), None)


def _doc() -> dict[str, Any]:
    return json.loads(data_message("gw1", "i1", next(_seq), [(BASE, "idle", None)]))  # type: ignore[no-any-return]


def _malformed(cut: int) -> bytes:
    """Never JSON: a valid payload cut short (no object's proper prefix is JSON), or with a
    byte that is not UTF-8 inserted anywhere."""
    payload = data_message("gw1", "i1", next(_seq), [(BASE, "idle", None)])
    at = cut % (len(payload) - 1) + 1
    return payload[:at] if cut % 2 else payload[:at] + b"\xff" + payload[at:]


def _oversized() -> bytes:
    """A message valid in every way but its size."""
    doc = _doc()
    metrics = {f"reading_{j:02d}_with_a_long_name": 1.5 for j in range(MAX_METRICS_PER_SAMPLE)}
    doc["samples"] = [{"ts": doc["samples"][0]["ts"], "state": "idle", "metrics": metrics}
                      ] * MAX_SAMPLES_PER_MESSAGE
    return json.dumps(doc).encode()


def _too_many_samples() -> bytes:
    doc = _doc()
    doc["samples"] = doc["samples"] * (MAX_SAMPLES_PER_MESSAGE + 1)
    return json.dumps(doc).encode()


def _coerced(kind: str) -> bytes:
    """JSON of the wrong type where pydantic's lax mode would convert, or a non-finite number
    (Python and pydantic parse NaN and Infinity, which JSON does not have)."""
    doc = _doc()
    if kind == "string_seq":
        doc["seq"] = str(doc["seq"])
    elif kind == "string_bool":
        doc["historical"] = "yes"
    elif kind == "string_power":
        doc["samples"][0]["power_w"] = "5.5"
    else:
        doc["samples"][0]["metrics"] = {"t": float("nan" if kind == "nan_metric" else "inf")}
    return json.dumps(doc).encode()


COERCED = ["string_seq", "string_bool", "string_power", "nan_metric", "inf_metric"]
VERSIONS: list[dict[str, Any]] = [{"v": 2}, {"v": 1.0}, {"v": "1"}, {"v": True}, {"v": None}, {}]
REFUSED_BY_THE_DATABASE = "refused by a constraint of the test database"


def _build(kind: str, topics: Topics, junk: str, cut: int) -> tuple[str, bytes, str | None]:
    """(topic, payload, expected dead-letter reason or None when it must be stored)."""
    now = datetime.now(UTC)
    if kind == "valid":
        return _valid(topics)
    if kind == "malformed_json":
        return topics.data("gw1", "i1"), _malformed(cut), kind
    if kind == "invalid_payload":
        doc = _doc()
        doc["samples"][0]["state"] = junk or "flying"
        doc["seq"] = "not a number"
        return topics.data("gw1", "i1"), json.dumps(doc).encode(), kind
    if kind in COERCED:
        return topics.data("gw1", "i1"), _coerced(kind), "invalid_payload"
    if kind == "too_many_samples":
        return topics.data("gw1", "i1"), _too_many_samples(), "invalid_payload"
    if kind == "unsupported_version":  # v missing, or anything but the JSON integer 1
        doc = {k: x for k, x in _doc().items() if k != "v"} | VERSIONS[cut % len(VERSIONS)]
        doc["new_field"] = junk
        return topics.data("gw1", "i1"), json.dumps(doc).encode(), kind
    if kind == "nul_text":  # PostgreSQL cannot store NUL in text: the protocol refuses it
        if cut % 2:
            state = json.loads(gateway_state("gw1", "online", next(_seq)))
            state["software"] = "bad \u0000 byte"
            return topics.gateway_state("gw1"), json.dumps(state).encode(), "invalid_payload"
        doc = json.loads(data_message("gw1", "i2", next(_seq), events=[(BASE, "fault")]))
        doc["events"][0]["detail"] = "bad \u0000 byte"
        return topics.data("gw1", "i2"), json.dumps(doc).encode(), "invalid_payload"
    if kind == "oversized":
        return topics.data("gw1", "i1"), _oversized(), kind
    if kind == "future_timestamp":
        return topics.data("gw1", "i1"), data_message(
            "gw1", "i1", next(_seq),
            [(BASE, "idle", None), (now + timedelta(hours=1), "running", None)]), kind
    if kind == "future_created_at":  # the whole message: created_at is its partition key
        doc = _doc()
        doc["created_at"] = (now + timedelta(hours=1)).isoformat()
        return topics.data("gw1", "i1"), json.dumps(doc).encode(), "future_timestamp"
    if kind == "old_created_at":  # the whole message, as its samples would be
        doc = _doc()
        doc["created_at"] = (now - timedelta(days=40)).isoformat()
        return topics.data("gw1", "i1"), json.dumps(doc).encode(), "too_old"
    if kind == "future_state":
        state = json.loads(gateway_state("gw1", "online", next(_seq)))
        state["ts"] = (now + timedelta(hours=1)).isoformat()
        return topics.gateway_state("gw1"), json.dumps(state).encode(), "future_timestamp"
    if kind == "too_old":
        return topics.data("gw1", "i1"), data_message(
            "gw1", "i1", next(_seq), [(now - timedelta(days=40), "idle", None)]), kind
    if kind == "unknown_instrument":
        return topics.data("gw1", "nope"), data_message(
            "gw1", "nope", next(_seq), [(BASE, "idle", None)]), kind
    if kind == "topic_mismatch":
        return topics.data("gw1", "i2"), data_message(
            "gw1", "i1", next(_seq), [(BASE, "idle", None)]), kind
    if kind == "wrong_gateway":
        return topics.data("gw2", "i1"), data_message(
            "gw2", "i1", next(_seq), [(BASE, "idle", None)]), kind
    if kind == "unknown_topic":  # a gateway id no confirmation could be addressed to
        return f"{topics.prefix}/gw/gw@lab/data/i1", data_message(
            "gw1", "i1", next(_seq), [(BASE, "idle", None)]), kind
    if kind == "db_rejected":  # valid JSON and protocol, but the database refuses it
        doc = json.loads(data_message("gw1", "i2", next(_seq), events=[(BASE, "fault")]))
        doc["events"][0]["detail"] = REFUSED_BY_THE_DATABASE
        return topics.data("gw1", "i2"), json.dumps(doc).encode(), kind
    raise AssertionError(kind)


_workers: dict[str, RunningWorker] = {}

KINDS = ["valid", "malformed_json", "invalid_payload", "unsupported_version", "oversized",
         "too_many_samples", "future_timestamp", "future_created_at", "old_created_at",
         "future_state", "too_old", "unknown_instrument", "topic_mismatch", "wrong_gateway",
         "nul_text", "db_rejected", "unknown_topic", *COERCED]


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=30),
       junk=st.text(max_size=20), cut=st.integers(0, 2**16))
def test_bad_messages_dead_lettered_valid_ones_stored(
    database_url: str,
    publisher: Publisher,
    topics: Topics,
    start_worker: Callable[..., RunningWorker],
    kinds: list[str],
    junk: str,
    cut: int,
) -> None:
    if database_url not in _workers:  # one worker for every example of this test
        register(database_url, {"i1": "gw1", "i2": None})
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE instrument_event ADD CHECK (detail IS DISTINCT FROM"
                         f" '{REFUSED_BY_THE_DATABASE}')")
        _workers[database_url] = start_worker(database_url)
    worker = _workers[database_url].worker
    before = worker.stats
    dead_before = _dead_letters(database_url)
    items = [_build(k, topics, junk, cut + i) for i, k in enumerate(kinds)]
    publisher.publish_all([(t, p) for t, p, _ in items])
    wait_until(lambda: worker.stats.acked - before.acked == len(items), what="all acked")

    # one row per (reason, topic, payload): a repeated bad message is stored once
    expected_dead = {(reason, t, p) for t, p, reason in items if reason}
    dead = _dead_letters(database_url)
    assert dead - dead_before == Counter(expected_dead - set(dead_before))
    assert max(dead.values(), default=1) == 1
    stored = sum(1 for k in kinds if k in ("valid", "future_timestamp", "too_old"))
    assert worker.stats.written - before.written == stored
    assert worker.stats.duplicates == 0
    # the valid sample of a partly future message is kept, the future one is not
    assert query(database_url, "SELECT count(*) FROM state_sample WHERE ts > now()") == [(0,)]
    assert sum(worker.stats.dead_lettered.values()) == sum(dead.values())


def _dead_letters(db: str) -> Counter[tuple[str, str, bytes]]:
    return Counter({(reason, topic, bytes(payload)): n for reason, topic, payload, n in query(
        db, "SELECT reason, topic, payload, count(*) FROM dead_letter GROUP BY 1, 2, 3")})


def test_decoder_reasons_without_a_broker() -> None:
    registry = InstrumentRegistry(loader=lambda: {"i1": "gw1"})
    decoder = Decoder(prefix="p", registry=registry)
    topics = Topics("p")
    now = time.time()

    def reasons(topic: str, payload: bytes) -> list[str]:
        return [d[2] for d in decoder.decode((topic, payload, 1, 1, now)).dead]

    ok = data_message("gw1", "i1", 1, [(BASE, "idle", None)])
    assert reasons(topics.data("gw1", "i1"), ok) == []
    assert reasons("p/gw/gw1/other/i1", ok) == [Reason.UNKNOWN_TOPIC]
    assert reasons("p/elsewhere", ok) == [Reason.UNKNOWN_TOPIC]
    for foreign in ("p/gw/gw@lab/data/i1", "p/gw/gw1/data/i 1", "p/gw/.x/state"):
        decoded = decoder.decode((foreign, ok, 1, 1, now))
        assert ([d[2] for d in decoded.dead], decoded.stored) == ([Reason.UNKNOWN_TOPIC], None)
    assert reasons(topics.gateway_state("gw9"), b'{"v":1,"gateway":"gw1","status":"online",'
                   b'"bd_seq":1}') == [Reason.TOPIC_MISMATCH]
    assert reasons(topics.data("gw1", "i1"), b"[1, 2]") == [Reason.INVALID_PAYLOAD]
    assert reasons(topics.data("gw1", "i1"), b'{"v": 3}') == [Reason.UNSUPPORTED_VERSION]
    for version in VERSIONS:  # also with every other field valid
        doc = {k: x for k, x in _doc().items() if k != "v"} | version
        assert reasons(topics.data("gw1", "i1"), json.dumps(doc).encode()) == [
            Reason.UNSUPPORTED_VERSION], version
        state = {"gateway": "gw1", "status": "online", "bd_seq": 1} | version
        assert reasons(topics.gateway_state("gw1"), json.dumps(state).encode()) == [
            Reason.UNSUPPORTED_VERSION], version
    assert reasons(topics.data("gw1", "i1"), b"\xff\xfe") == [Reason.MALFORMED_JSON]
    for payload in unparsable(ok):  # the seq is not read from them either: never confirmed
        decoded = decoder.decode((topics.data("gw1", "i1"), payload, 1, 1, now))
        assert ([d[2] for d in decoded.dead], decoded.stored) == ([Reason.MALFORMED_JSON], None)
    # an empty retained message (which clears a retained state) is no JSON
    assert reasons(topics.gateway_state("gw1"), b"") == [Reason.MALFORMED_JSON]


def test_a_dead_letter_received_again_is_one_row_counting_its_arrivals(
    database_url: str,
) -> None:
    """A gateway resends what is never confirmed, and a dead letter committed but not acked
    before a crash comes back: still one row, which counts each arrival and keeps the latest,
    as the worker's metric counts them, so an ongoing problem reads as ongoing."""
    register(database_url, {"i1": "gw1"})
    store = BatchStore(conninfo=database_url, session_max_gap=timedelta(minutes=10))
    decoder = Decoder(prefix="p", registry=InstrumentRegistry(loader=store.load_registry))
    topic = Topics("p").data("gw1", "i1")
    bad = b'{"v": 1, "gateway": "gw1", "seq": "x"}'
    mixed = data_message("gw1", "i1", 5, [(BASE, "idle", None),
                                          (datetime.now(UTC) + timedelta(hours=2), "idle", None)])
    at = time.time()
    try:
        first = store.write([decoder.decode((topic, bad, 1, 1, at)),
                             decoder.decode((topic, mixed, 2, 1, at))])
        again = store.write([decoder.decode((topic, bad, 7, 1, at + 5)),
                             decoder.decode((topic, mixed, 8, 1, at + 5)),
                             decoder.decode((topic, bad, 9, 1, at + 9))])  # twice in a batch
    finally:
        store.close()
    assert first.dead == Counter({"invalid_payload": 1, "future_timestamp": 1})
    assert again.dead == Counter({"invalid_payload": 2, "future_timestamp": 1})
    assert again.duplicates == 1
    received = datetime.fromtimestamp(at, UTC)
    assert query(database_url, "SELECT reason, payload, times, received_at, last_received_at"
                 " FROM dead_letter ORDER BY reason") == [
        ("future_timestamp", mixed, 2, received, received + timedelta(seconds=5)),
        ("invalid_payload", bad, 3, received, received + timedelta(seconds=9))]
    assert query(database_url, "SELECT count(*) FROM state_sample") == [(1,)]


def _decode(payload: bytes, topic: str = "p/gw/gw1/data/i1", received: float | None = None,
            ) -> Decoded:
    decoder = Decoder(prefix="p", registry=InstrumentRegistry(loader=lambda: {"i1": "gw1"}))
    return decoder.decode((topic, payload, 1, 1, time.time() if received is None else received))


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 2**16))
def test_malformed_payloads_are_never_json(cut: int) -> None:
    assert [d[2] for d in _decode(_malformed(cut)).dead] == [Reason.MALFORMED_JSON]


def test_size_and_count_limits_apply_to_otherwise_valid_messages() -> None:
    big = _oversized()
    assert len(big) > MAX_PAYLOAD_BYTES
    DataMessage.model_validate_json(big)  # nothing but its size is wrong
    assert [d[2] for d in _decode(big).dead] == [Reason.OVERSIZED]
    many = _too_many_samples()
    assert len(many) < MAX_PAYLOAD_BYTES
    dead = _decode(many).dead
    assert [d[2] for d in dead] == [Reason.INVALID_PAYLOAD] and "samples" in dead[0][3]


def test_values_are_not_coerced_and_must_be_finite() -> None:
    fields = {"string_seq": "seq", "string_bool": "historical", "string_power": "power_w",
              "nan_metric": "finite", "inf_metric": "finite"}
    for kind, field in fields.items():
        out = _decode(_coerced(kind))
        assert [d[2] for d in out.dead] == [Reason.INVALID_PAYLOAD], kind
        assert field in out.dead[0][3], (kind, out.dead[0][3])
        assert out.key is None and not out.samples


def test_nul_in_text_and_times_out_of_range_are_invalid_payloads() -> None:
    """Refused by the protocol, not by PostgreSQL (db_rejected) nor by an exception."""
    nul = json.loads(data_message("gw1", "i1", next(_seq), events=[(BASE, "fault")]))
    nul["events"][0]["detail"] = "bad \u0000 byte"
    early = _doc() | {"created_at": "0001-01-01T00:00:00+00:01"}  # before year 1 in UTC
    late = _doc()
    late["samples"][0]["ts"] = "9999-12-31T23:59:59-23:00"  # after year 9999 in UTC
    for doc in (nul, early, late):
        assert [d[2] for d in _decode(json.dumps(doc).encode()).dead] == [
            Reason.INVALID_PAYLOAD], doc
    state = json.loads(gateway_state("gw1", "online", 1)) | {"software": "bad \u0000 byte"}
    out = _decode(json.dumps(state).encode(), topic="p/gw/gw1/state")
    assert [d[2] for d in out.dead] == [Reason.INVALID_PAYLOAD] and out.state is None


def test_dead_letter_details_say_what_was_expected() -> None:
    now = time.time()
    at = datetime.fromtimestamp(now, UTC)
    out = _decode(data_message("gw1", "i1", next(_seq), [
        (at - timedelta(days=31), "idle", None), (at + timedelta(seconds=301), "idle", None),
        (at, "idle", None)]), received=now)
    details = {d[2]: d[3] for d in out.dead}
    assert details == {
        Reason.TOO_OLD: f"received {at.isoformat()}; older than 30 days (before"
                        f" {(at - timedelta(days=30)).isoformat()}): sample"
                        f" {(at - timedelta(days=31)).isoformat()}",
        Reason.FUTURE_TIMESTAMP: f"received {at.isoformat()}; more than 300 s ahead (after"
                                 f" {(at + timedelta(seconds=300)).isoformat()}): sample"
                                 f" {(at + timedelta(seconds=301)).isoformat()}"}
    [(_, _, reason, detail, _)] = _decode(b"{}", topic="p/gw/gw1/other").dead
    assert reason == Reason.UNKNOWN_TOPIC
    assert detail.endswith("expected p/gw/<gateway>/state or p/gw/<gateway>/data/<instrument>,"
                           f" ids matching {IDENTIFIER_PATTERN}")


def test_future_created_at_and_state_ts_are_dead_lettered() -> None:
    now = time.time()
    doc = _doc()
    doc["created_at"] = datetime.fromtimestamp(now + 301, UTC).isoformat()
    out = _decode(json.dumps(doc).encode(), received=now)
    assert [d[2] for d in out.dead] == [Reason.FUTURE_TIMESTAMP]
    assert "created_at" in out.dead[0][3] and out.key is None and out.message is None
    doc["created_at"] = datetime.fromtimestamp(now + 299, UTC).isoformat()  # within the skew
    out = _decode(json.dumps(doc).encode(), received=now)
    assert out.dead == [] and out.key is not None and out.key[:2] == ("gw1", doc["seq"])

    state = json.loads(gateway_state("gw1", "online", 3))
    state["ts"] = datetime.fromtimestamp(now + 301, UTC).isoformat()
    out = _decode(json.dumps(state).encode(), topic="p/gw/gw1/state", received=now)
    assert [d[2] for d in out.dead] == [Reason.FUTURE_TIMESTAMP] and out.state is None
    state["ts"] = datetime.fromtimestamp(now + 299, UTC).isoformat()
    out = _decode(json.dumps(state).encode(), topic="p/gw/gw1/state", received=now)
    assert out.dead == [] and out.state is not None


def test_a_defect_in_decoding_costs_one_message_not_the_worker() -> None:
    # a registry that reads as nothing stands in for any defect of the decoder
    broken = InstrumentRegistry(loader=lambda: None)  # type: ignore[arg-type,return-value]
    decoder = Decoder(prefix="p", registry=broken)
    payload = data_message("gw1", "i1", next(_seq), [(BASE, "idle", None)])
    out = decoder.decode(("p/gw/gw1/data/i1", payload, 7, 1, time.time()))
    assert (out.mid, out.message, out.samples) == (7, None, [])
    assert [(d[1], d[2]) for d in out.dead] == [(payload, Reason.DECODE_FAILED.value)]
    assert out.dead[0][3].startswith("TypeError")
