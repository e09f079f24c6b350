"""Usage sessions from late, replayed and out-of-order data equal those of the ordered data."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest._decode import Decoder
from ingest._registry import InstrumentRegistry
from ingest._store import BatchStore
from instrushare.protocol import Topics

from .conftest import BASE, GAP_S, data_message, query, reference_sessions, register

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
    live = [s for k, s in enumerate(samples) if k % 3 != 0]
    status = query(database_url, "SELECT state, last_ts FROM instrument_status"
                   " WHERE instrument_id = %s", (instrument,))
    assert status == ([(live[-1][1], live[-1][0])] if live else [])
