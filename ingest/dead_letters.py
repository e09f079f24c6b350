"""Dead letters looked over, and replayed once their cause is fixed (docs/ingest.md).

A replay feeds each chosen dead letter through the ingest's own decoder and store, with its
original receive time (the skew and age rules judge it as they did when it arrived) and the
instrument registry as it is now. The transaction that handles a replayed message deletes its
dead letter; one still refused is dead-lettered anew with its current reason. Nothing goes
through the broker: gateways were told when the messages were first dead-lettered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from ._decode import Decoded, Decoder, Reason
from ._registry import InstrumentRegistry
from ._store import BatchStore, WriteResult, write_isolating
from .errors import RetryableStoreError

_CHOSEN = """
    (%(reason)s::text IS NULL OR reason = %(reason)s) AND topic LIKE %(topic)s
"""
_SUMMARY = """
SELECT reason, topic, count(*), sum(times), min(received_at),
       max(coalesce(last_received_at, received_at))
FROM dead_letter WHERE""" + _CHOSEN + """
GROUP BY reason, topic ORDER BY reason, topic
"""
_PREFIXES = """
SELECT split_part(topic, '/', 1), count(*) FROM dead_letter WHERE""" + _CHOSEN + """
GROUP BY 1 ORDER BY 2 DESC, 1
"""
_REPLAYED = _CHOSEN + " AND split_part(topic, '/', 1) = %(prefix)s"
_EXTENT = "SELECT max(id), count(*) FROM dead_letter WHERE" + _REPLAYED
_NEXT = """
SELECT id, topic, payload, received_at FROM dead_letter
WHERE id > %(after)s AND id <= %(last)s AND""" + _REPLAYED + """
ORDER BY id LIMIT %(limit)s
"""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters: one reason or all, and a SQL ``LIKE`` pattern on the topic."""

    reason: str | None = None
    topic: str = "%"

    def __post_init__(self) -> None:
        if self.reason is not None and self.reason not in Reason.__members__.values():
            raise ValueError(f"no such reason {self.reason!r}; the reasons are "
                             + ", ".join(Reason))

    def params(self) -> dict[str, Any]:
        return {"reason": self.reason, "topic": self.topic}


@dataclass(frozen=True, slots=True)
class DeadLetterGroup:
    reason: str
    topic: str
    count: int
    """Dead letters: distinct payloads, what a replay handles."""
    arrivals: int
    """How often they were received: a gateway resends what is never confirmed."""
    first: datetime
    last: datetime
    """The latest arrival: a problem still going on is recent."""


@contextmanager
def _database_errors() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise RetryableStoreError(str(exc).strip() or type(exc).__name__,
                                  sqlstate=exc.sqlstate) from exc


def summarize(conninfo: str, selection: Selection) -> list[DeadLetterGroup]:
    """The chosen dead letters counted per reason and topic; raises RetryableStoreError."""
    with _database_errors(), psycopg.connect(conninfo, autocommit=True) as conn:
        return [DeadLetterGroup(*row) for row in conn.execute(_SUMMARY, selection.params())]


def topic_prefixes(conninfo: str, selection: Selection) -> dict[str, int]:
    """The chosen dead letters counted per topic prefix (a topic's first level), most first:
    a replay handles only those of the ingest's prefix. Raises RetryableStoreError."""
    with _database_errors(), psycopg.connect(conninfo, autocommit=True) as conn:
        return dict(conn.execute(_PREFIXES, selection.params()).fetchall())


@dataclass(slots=True)
class ReplayResult:
    replayed: int = 0
    """Dead letters taken out of the table and handled again."""
    written: WriteResult = field(default_factory=WriteResult)
    """What handling them stored: ``fresh`` messages, ``duplicates`` of stored ones (a dead
    letter for some of a stored message's samples), and ``dead`` letters written anew."""


def replay(
    conninfo: str,
    selection: Selection,
    *,
    prefix: str,
    session_max_gap: timedelta,
    chunk: int = 500,
    on_progress: Callable[[int, int], object] = lambda done, total: None,
) -> ReplayResult:
    """Replay the chosen dead letters present when called whose topic lies under ``prefix``,
    ``chunk`` per transaction, in the order they arrived; ``on_progress(done, total)`` after
    each transaction. Those under another prefix are left as they are: the decoder would
    dead-letter them anew as ``unknown_topic``, losing the reason they were refused for.

    Raises RetryableStoreError when the database fails: the transactions committed so far
    stand, the rest stays in the table for the next run."""
    params = selection.params() | {"prefix": prefix}
    result = ReplayResult()
    store = BatchStore(conninfo=conninfo, session_max_gap=session_max_gap)
    decoder = Decoder(prefix=prefix, registry=InstrumentRegistry(loader=store.load_registry))
    with _database_errors(), psycopg.connect(conninfo, autocommit=True) as conn:
        last, total = conn.execute(_EXTENT, params).fetchone() or (None, 0)
        params |= {"last": last or 0, "limit": chunk, "after": 0}
        try:
            while rows := conn.execute(_NEXT, params).fetchall():
                items = [_decoded(decoder, *row) for row in rows]
                result.written += write_isolating(store, items, before_lock=lambda: None)
                result.replayed += len(rows)
                params["after"] = rows[-1][0]
                on_progress(result.replayed, total)
        finally:
            store.close()
    return result


def _decoded(
    decoder: Decoder, dead_letter_id: int, topic: str, payload: bytes, received_at: datetime
) -> Decoded:
    decoded = decoder.decode((topic, payload, 0, 0, received_at.timestamp()))
    decoded.replaces = dead_letter_id
    return decoded
