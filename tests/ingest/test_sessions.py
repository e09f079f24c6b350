"""Usage sessions from late, replayed and out-of-order data equal those of the ordered data."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest._decode import Decoded, Decoder
from ingest._registry import InstrumentRegistry
from ingest._store import BatchStore
from instrushare.protocol import Topics

from .conftest import (
    BASE,
    GAP_S,
    data_message,
    query,
    reference_sessions,
    register,
    wait_until,
)

_ids = itertools.count()

step = st.sampled_from([1, 30, 300, GAP_S, GAP_S + 1, 3000])
sample = st.tuples(step, st.sampled_from(["running", "running", "idle", "off"]),
                   st.sampled_from(["alice", "bob", None]))



@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.lists(sample, min_size=1, max_size=25),
    data=st.data(),
)
def test_sessions_match_reference_for_any_arrival_order(
    database_url: str, raw: list[tuple[float, str, str | None]], data: st.DataObject
) -> None:
    instrument = f"i{next(_ids)}"
    register(database_url, {instrument: None})
    ts = BASE
    samples = []
    for dt, state, user in raw:
        ts += timedelta(seconds=dt)
        samples.append((ts, state, user))
    # each sample its own message; arrival order permuted, some messages replayed, random batches
    order = data.draw(st.permutations(range(len(samples))), label="order")
    replays = data.draw(st.lists(st.sampled_from(order), max_size=5), label="replays")
    arrivals = list(order) + replays
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(arrivals) - 1))), label="cuts"))
    topics = Topics("p")
    store = BatchStore(conninfo=database_url, session_max_gap=timedelta(seconds=GAP_S))
    decoder = Decoder(prefix="p", registry=InstrumentRegistry(loader=store.load_registry))
    now = time.time()
    try:
        bounds = [0, *cuts, len(arrivals)]
        for a, b in itertools.pairwise(bounds):
            batch = [
                decoder.decode((topics.data("gw", instrument),
                                data_message("gw", instrument, k, [samples[k]],
                                             historical=k % 3 == 0), 0, 1, now))
                for k in arrivals[a:b]
            ]
            store.write(batch)
    finally:
        store.close()
    got = query(database_url, "SELECT start_ts, end_ts, last_ts, user_id FROM usage_session"
                " WHERE instrument_id = %s ORDER BY start_ts", (instrument,))
    assert got == reference_sessions(samples)
    assert query(database_url, "SELECT count(*) FROM state_sample WHERE instrument_id = %s",
                 (instrument,)) == [(len(samples),)]
    # whatever arrived first, the platform has heard from it since its earliest sample
    assert query(database_url, "SELECT monitored_since FROM instrument WHERE id = %s",
                 (instrument,)) == [(samples[0][0],)]
    live = [s for k, s in enumerate(samples) if k % 3 != 0]
    status = query(database_url, "SELECT state, last_ts FROM instrument_status"
                   " WHERE instrument_id = %s", (instrument,))
    assert status == ([(live[-1][1], live[-1][0])] if live else [])


def test_a_batch_overtaken_between_its_copy_and_its_lock_is_recomputed(
    database_url: str,
) -> None:
    """Two writers copy at once; the one holding later samples commits first. The other then
    finds samples past its own under the lock and recomputes: the sessions are still those of
    the ordered data."""
    instrument = f"i{next(_ids)}"
    register(database_url, {instrument: None})
    samples = [(BASE + timedelta(seconds=60 * k), "running", "alice") for k in range(6)]
    topics = Topics("p")
    stores = [BatchStore(conninfo=database_url, session_max_gap=timedelta(seconds=GAP_S))
              for _ in range(2)]
    decoder = Decoder(prefix="p", registry=InstrumentRegistry(loader=stores[0].load_registry))

    def batch(seq: int, part: Sequence[tuple[datetime, str, str | None]]) -> list[Decoded]:
        payload = data_message("gw", instrument, seq, part)
        return [decoder.decode((topics.data("gw", instrument), payload, 0, 1, time.time()))]

    earlier, later = batch(0, samples[:3]), batch(1, samples[3:])
    blocker = psycopg.connect(database_url)  # holds a key of the earlier batch, uncommitted
    try:
        blocker.execute(
            "INSERT INTO state_sample (instrument_id, ts, state, gateway_id, seq)"
            " VALUES (%s, %s, 'idle', 'gw', 99)", (instrument, samples[2][0]))
        first = threading.Thread(target=stores[0].write, args=(earlier,))
        first.start()  # copies its first rows, then waits on the blocker's key
        wait_until(lambda: _waiting_on_a_lock(database_url), what="the copy to wait")
        stores[1].write(later)  # copies, locks, derives and commits meanwhile
        blocker.rollback()
        first.join(10)
        assert not first.is_alive()
    finally:
        blocker.close()
        for store in stores:
            store.close()
    got = query(database_url, "SELECT start_ts, end_ts, last_ts, user_id FROM usage_session"
                " WHERE instrument_id = %s ORDER BY start_ts", (instrument,))
    assert got == reference_sessions(samples) == [(samples[0][0], None, samples[-1][0], "alice")]
    assert query(database_url, "SELECT last_ts FROM instrument_status WHERE instrument_id = %s",
                 (instrument,)) == [(samples[-1][0],)]


def _waiting_on_a_lock(db: str) -> bool:
    rows = query(db, "SELECT count(*) FROM pg_stat_activity"
                 " WHERE application_name = 'instrushare-ingest' AND wait_event_type = 'Lock'")
    return int(rows[0][0]) > 0


def test_samples_already_stored_under_another_message_win_and_sessions_follow_them(
    database_url: str,
) -> None:
    """A second message repeats a stored sample's time with another state: the stored sample
    stays (first to arrive wins) and the sessions are derived from what is stored."""
    instrument = f"i{next(_ids)}"
    register(database_url, {instrument: None})
    t = [BASE + timedelta(seconds=60 * k) for k in range(3)]
    topics = Topics("p")
    store = BatchStore(conninfo=database_url, session_max_gap=timedelta(seconds=GAP_S))
    decoder = Decoder(prefix="p", registry=InstrumentRegistry(loader=store.load_registry))
    messages: list[list[tuple[datetime, str, str | None]]] = [
        [(t[0], "idle", None)],
        [(t[0], "running", "alice"), (t[1], "running", "alice"), (t[2], "idle", None)]]
    try:
        for seq, part in enumerate(messages):
            payload = data_message("gw", instrument, seq, part)
            store.write([decoder.decode((topics.data("gw", instrument), payload, 0, 1,
                                         time.time()))])
    finally:
        store.close()
    assert query(database_url, "SELECT start_ts, end_ts, last_ts, user_id FROM usage_session"
                 " WHERE instrument_id = %s", (instrument,)) == [(t[1], t[2], t[1], "alice")]
