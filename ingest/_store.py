"""Writes decoded batches to PostgreSQL: one transaction per batch, idempotent by message key.

Each batch first takes the fast path (COPY straight into the tables, status and sessions
derived in Python). A duplicate key makes that transaction fail as a whole; it is then
replayed on the safe path (staging tables, ``ON CONFLICT DO NOTHING``), which also stays in
use for the next few batches, since duplicates come in runs (redelivery after a restart).

Rows are copied before the instruments are locked, so several transactions (writers of one
worker, or other workers) copy at once and queue only for the short derivation that follows.
Every copy runs in key order, so two transactions holding the same keys wait on each other
in one direction only.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter, lt
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from instrushare.protocol import MAX_FUTURE_SKEW

from . import _sql as q
from ._decode import Decoded, EventRow, MessageKey, Reason, SampleRow
from ._derive import (
    Before,
    SessionRow,
    StatusRow,
    appended_sessions,
    in_order,
    since_from_samples,
    status_row,
)
from ._text import event_chunks, message_chunks, sample_chunks
from .errors import RejectedBatchError, RetryableStoreError

logger = logging.getLogger("ingest")

_CONNECT_TIMEOUT_S = 5


@dataclass(slots=True)
class WriteResult:
    """What one or more committed transactions stored."""

    messages: int = 0
    """Data messages offered (after in-batch duplicates were dropped)."""
    fresh: int = 0
    """Data messages newly stored; ``messages - fresh`` were already there."""
    in_batch_duplicates: int = 0
    dead: Counter[str] = field(default_factory=Counter)

    def __iadd__(self, other: WriteResult) -> WriteResult:
        self.messages += other.messages
        self.fresh += other.fresh
        self.in_batch_duplicates += other.in_batch_duplicates
        self.dead.update(other.dead)
        return self

    @property
    def duplicates(self) -> int:
        return self.in_batch_duplicates + self.messages - self.fresh


_LIMITS = "54"
"""SQLSTATE class program_limit_exceeded: a value past a limit (a B-tree's row size, say), or
a batch past one (halves may pass)."""
_LASTING = ("25006", "42", "53")
"""Read-only transaction; undefined table or column, missing privilege; disk full, out of
memory or connections: no retry mends these alone."""
_CANCELLED = "57014"


@contextmanager
def _translated() -> Iterator[None]:
    """Map psycopg errors to: split the batch (the rows themselves cannot be stored), or retry
    later (connection, deadlock, timeout, schema, disk, anything unknown), never dead-letter
    what a mended database would take."""
    try:
        yield
    except psycopg.Error as exc:
        text = str(exc).strip() or type(exc).__name__
        state = exc.sqlstate
        if isinstance(exc, pg_errors.DataError | pg_errors.IntegrityError) or (
            state is not None and state.startswith(_LIMITS)
        ):
            raise RejectedBatchError(text, sqlstate=state) from exc
        raise RetryableStoreError(
            text, sqlstate=state, lasting=state is not None and state.startswith(_LASTING),
            timed_out=state == _CANCELLED,
        ) from exc


class BatchStore:
    """Owns one database connection (reopened after failures) and its staging tables.

    Used by one thread at a time; ``load_registry`` opens its own short connection, so the
    decoding thread may call it while a batch is being written.
    """

    SAFE_BATCHES_AFTER_CONFLICT = 20
    """Batches written on the safe path after one met a duplicate key."""

    def __init__(self, *, conninfo: str, session_max_gap: timedelta) -> None:
        self._conninfo = conninfo
        self._gap = session_max_gap
        self._conn: psycopg.Connection[Any] | None = None
        self._safe_left = 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=_CONNECT_TIMEOUT_S,
            application_name="instrushare-ingest",
        )

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self.close()
        conn = self._connect()
        try:
            conn.execute(q.STAGING)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        logger.info("connected to the database")
        return conn

    def _discard_if_broken(self) -> None:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self.close()

    def load_registry(self) -> dict[str, str | None]:
        with _translated(), self._connect() as conn:
            return {row[0]: row[1] for row in conn.execute(q.LOAD_REGISTRY)}

    def write(
        self, items: Sequence[Decoded], *, before_lock: Callable[[], object] = lambda: None
    ) -> WriteResult:
        """Store ``items`` in one transaction; raises RetryableStoreError or RejectedBatchError.

        ``before_lock`` runs once the rows are copied, before the instruments are locked and
        before gateway states apply: the worker waits there for the previous batch's turn, so
        a will does not overtake the birth of its session in the batch before."""
        batch = _Batch(items)
        try:
            if self._safe_left > 0:
                self._safe_left -= 1
            else:
                try:
                    with _translated():
                        return self._write(self._connection(), batch, before_lock, safe=False)
                except RejectedBatchError as exc:
                    logger.debug("fast path refused (%s); writing the batch safely", exc)
                    self._safe_left = self.SAFE_BATCHES_AFTER_CONFLICT
            with _translated():
                return self._write(self._connection(), batch, before_lock, safe=True)
        except RetryableStoreError:
            self._discard_if_broken()
            raise

    def _write(
        self,
        conn: psycopg.Connection[Any],
        batch: _Batch,
        before_lock: Callable[[], object],
        *,
        safe: bool,
    ) -> WriteResult:
        result = WriteResult(messages=len(batch.messages),
                             in_batch_duplicates=batch.in_batch_duplicates)
        with conn.transaction(), conn.cursor() as cur:
            if batch.messages:
                fresh = self._insert_messages(cur, batch.messages, safe=safe)
                result.fresh = len(fresh)
                if fresh:
                    self._insert_data(cur, fresh, before_lock, safe=safe)
            if batch.replaced:
                cur.execute(q.DELETE_REPLAYED_DEAD, (batch.replaced,))
            if batch.dead:
                cur.execute(q.INSERT_DEAD, [list(col) for col in zip(*batch.dead, strict=True)])
                result.dead.update(reason for _, _, reason, _, _ in batch.dead)  # arrivals
            if batch.states:  # after the batch before: a gateway's birth, then its will
                before_lock()
            for it in batch.states:
                state = it.state
                assert state is not None
                params = {
                    "id": state.gateway,
                    "bd_seq": state.bd_seq,
                    "ts": state.ts or it.received_at,
                    "instruments": list(state.instruments),
                    "software": state.software,
                    "dropped": state.dropped,
                    "skew": MAX_FUTURE_SKEW,
                }
                cur.execute(q.GATEWAY_BIRTH if state.status == "online" else q.GATEWAY_DEATH,
                            params)
        return result

    def _insert_messages(
        self, cur: psycopg.Cursor[Any], messages: list[Decoded], *, safe: bool
    ) -> list[Decoded]:
        """Store the message rows; returns the messages stored for the first time."""
        rows = sorted((it.message for it in messages if it.message is not None), key=_key)
        if not safe:
            _copy(cur, q.COPY_MSG, message_chunks(rows))
            return messages
        _copy(cur, q.STAGE_MSG, message_chunks(rows))
        cur.execute(q.INSERT_MESSAGES)
        keys = {(row[0], row[1], row[2]) for row in cur.fetchall()}
        return [it for it in messages if it.key in keys]

    def _insert_data(
        self,
        cur: psycopg.Cursor[Any],
        fresh: list[Decoded],
        before_lock: Callable[[], object],
        *,
        safe: bool,
    ) -> None:
        samples, live, events = _group(fresh)
        if samples:
            ids = sorted(samples)
            rows = [r for i in ids for r in samples[i]]
            _copy(cur, q.STAGE_SAMPLE if safe else q.COPY_SAMPLE, sample_chunks(rows))
            all_stored = True
            if safe:
                cur.execute(q.INSERT_SAMPLES)
                all_stored = cur.rowcount == len(rows)
            # Under the lock, whatever another transaction committed for these instruments is
            # visible. BEFORE counts the samples from this batch's first one on: any beyond the
            # batch's own arrived in between, and the late path recomputes those instruments.
            before_lock()
            cur.execute(q.LOCK_INSTRUMENTS, (ids,))
            cur.execute(q.BEFORE, (ids, [samples[i][0][1] for i in ids]))
            before = {row[0]: (Before(*row[1:8]), row[8]) for row in cur.fetchall()}
            status: list[StatusRow] = []
            from_samples: list[str] = []
            sessions: list[SessionRow] = []
            late: list[tuple[str, datetime]] = []
            for i in ids:
                b, stored_from_first = before[i]
                new = samples[i]
                if i in live and (row := status_row(i, live[i], b)) is not None:
                    status.append(row)
                    if since_from_samples(new, live[i], b):
                        from_samples.append(i)
                if all_stored and stored_from_first == len(new) and in_order(new, b):
                    sessions += appended_sessions(i, new, b, self._gap)
                else:
                    late.append((i, new[0][1]))
            firsts = [(i, samples[i][0][1]) for i in ids if before[i][0].last_ts is None]
            if firsts:
                cur.execute(q.MONITORED_SINCE, _columns(firsts, 2))
            if status:
                cur.execute(q.UPSERT_STATUS, _columns(status, 7))
            if from_samples:
                cur.execute(q.STATUS_SINCE_FROM_SAMPLES, (from_samples,))
            if sessions:
                cur.execute(q.UPSERT_SESSIONS, _columns(sessions, 5))
                first_start: dict[str, datetime] = {}
                for iid, start, *_ in sessions:
                    first_start[iid] = min(start, first_start.get(iid, start))
                cur.execute(q.FORGET_MONTHS_OF_SESSIONS,
                            (list(first_start), list(first_start.values())))
            if late:
                ids_late, t_min = _columns(late, 2)
                cur.execute(q.SESSION_ANCHORS, {"ids": ids_late, "t_min": t_min, "gap": self._gap})
                cur.execute(q.DELETE_STATE_DAYS, {"ids": ids_late, "t_min": t_min})
                cur.execute(q.FORGET_MONTHS_OF_ANCHORS)
                cur.execute(q.DELETE_SESSIONS)
                cur.execute(q.INSERT_SESSIONS, {"gap": self._gap})
        if events:
            _copy(cur, q.STAGE_EVENT if safe else q.COPY_EVENT, event_chunks(events))
            if safe:
                cur.execute(q.INSERT_EVENTS)


def write_isolating(
    store: BatchStore, items: Sequence[Decoded], *, before_lock: Callable[[], object]
) -> WriteResult:
    """Write; if the database rejects the data, split in halves down to the bad message,
    which is dead-lettered as ``db_rejected``. Raises RetryableStoreError, also when the
    database refuses that dead letter too: then nothing can be stored without someone mending
    it, and the message waits unacknowledged rather than being lost or stopping the worker."""
    try:
        return store.write(items, before_lock=before_lock)
    except RejectedBatchError as exc:
        if len(items) == 1:
            try:
                return store.write([_rejected(items[0], exc)], before_lock=before_lock)
            except RejectedBatchError as again:  # a constraint or trigger on the dead letters
                raise RetryableStoreError(
                    f"the database refuses the dead letter of a message it rejected ({exc}):"
                    f" {again}", sqlstate=again.sqlstate, lasting=True,
                ) from again
        logger.warning(
            "database rejected a batch of %d (%s); splitting to isolate it", len(items), exc
        )
        half = len(items) // 2
        result = write_isolating(store, items[:half], before_lock=before_lock)
        result += write_isolating(store, items[half:], before_lock=before_lock)
        return result


def _rejected(item: Decoded, exc: RejectedBatchError) -> Decoded:
    """The message alone is refused by the database: keep only its dead letters, plus this one."""
    out = Decoded(item.mid, item.qos, item.topic, item.payload, item.received_at,
                  stored=item.stored, dead=list(item.dead), replaces=item.replaces)
    return out.reject(Reason.DB_REJECTED, f"{exc.sqlstate or ''} {exc}".strip())


class _Batch:
    """A batch sorted out: unique data messages, dead letters, gateway states."""

    __slots__ = ("dead", "in_batch_duplicates", "messages", "replaced", "states")

    def __init__(self, items: Sequence[Decoded]) -> None:
        self.messages: list[Decoded] = []
        self.dead: list[Any] = []
        self.states: list[Decoded] = []
        self.replaced = [it.replaces for it in items if it.replaces is not None]
        self.in_batch_duplicates = 0
        seen: set[MessageKey] = set()
        for it in items:
            if it.dead:
                self.dead += it.dead
            if it.key is not None:
                if it.key in seen:
                    self.in_batch_duplicates += 1
                    continue
                seen.add(it.key)
                self.messages.append(it)
            elif it.state is not None:
                self.states.append(it)


_ts = itemgetter(1)
_key = itemgetter(0, 1)
_event_key = itemgetter(0, 1, 2)


def _group(
    fresh: list[Decoded],
) -> tuple[dict[str, list[SampleRow]], dict[str, list[SampleRow]], list[EventRow]]:
    """Samples per instrument sorted by time, one per timestamp (the first to arrive wins),
    the live (non-historical) ones among them, and the events, one per key, in key order."""
    per: dict[str, list[tuple[list[SampleRow], bool]]] = {}
    events: list[EventRow] = []
    for it in fresh:
        if it.samples:
            per.setdefault(it.samples[0][0], []).append((it.samples, it.historical))
        if it.events:
            events += it.events
    samples: dict[str, list[SampleRow]] = {}
    live: dict[str, list[SampleRow]] = {}
    for inst, parts in per.items():
        if _consecutive(parts):  # the usual case: each message continues the previous one
            if len(parts) == 1:
                samples[inst] = parts[0][0]
            else:
                samples[inst] = [r for rows, _ in parts for r in rows]
            if not any(h for _, h in parts):
                live[inst] = samples[inst]
            elif not all(h for _, h in parts):
                live[inst] = [r for rows, h in parts if not h for r in rows]
            continue
        tagged = sorted(((r, h) for rows, h in parts for r in rows), key=lambda t: t[0][1])
        kept: list[SampleRow] = []
        kept_live: list[SampleRow] = []
        last: datetime | None = None
        for r, h in tagged:
            if r[1] == last:
                continue
            last = r[1]
            kept.append(r)
            if not h:
                kept_live.append(r)
        samples[inst] = kept
        if kept_live:
            live[inst] = kept_live
    if len(events) > 1:
        first: dict[tuple[str, datetime, str], EventRow] = {}
        for e in events:
            first.setdefault(_event_key(e), e)
        events = sorted(first.values(), key=_event_key)
    return samples, live, events


def _consecutive(parts: list[tuple[list[SampleRow], bool]]) -> bool:
    """True when the samples, message after message, are strictly increasing in time."""
    prev: datetime | None = None
    for rows, _ in parts:
        if prev is not None and rows[0][1] <= prev:
            return False
        if len(rows) > 1 and not all(map(lt, map(_ts, rows), map(_ts, rows[1:]))):
            return False
        prev = rows[-1][1]
    return True


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Row tuples to one list per column, for ``unnest`` of arrays."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


def _copy(cur: psycopg.Cursor[Any], stmt: str, chunks: Iterable[str]) -> None:
    with cur.copy(stmt) as cp:
        for chunk in chunks:
            cp.write(chunk)
