"""One poll of the status changes per API process, fanned out to every open event stream.

A stream that polled the database itself cost three statements a second: a hundred open
dashboards, three hundred, most of them finding the same changes. The feed polls once per
``sse_poll_s`` while anyone listens and hands every stream the board entries that may have
changed; each stream keeps those in its own scope that it has not sent yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from monitor_api.db import Conn, Pool, fetch_one
from monitor_api.periodic import log_failure, pause
from monitor_api.queries import status as q

OVERLAP = timedelta(seconds=10)
"""Each poll looks back this much further than the last: an ingest transaction that started
before a poll may commit after it with an earlier ``updated_at``."""
BACKLOG = 60
"""Polls a stream may fall behind by; a slower one is ended, and its browser reconnects."""


@dataclass(frozen=True, slots=True)
class Changes:
    """Board entries (all instruments, unfiltered) that may have changed, as of ``at``."""

    at: datetime
    items: list[dict[str, Any]]


@dataclass(eq=False, slots=True)
class Subscription:
    """A stream's queue of changes; ``None`` in it means the stream fell too far behind."""

    queue: asyncio.Queue[Changes | None] = field(
        default_factory=lambda: asyncio.Queue(BACKLOG))


class StatusFeed:
    """Polls while it has subscribers; ``close`` stops it."""

    def __init__(
        self, pool: Pool, *, timeout: timedelta, grace: timedelta, poll_s: float,
        on_poll: Callable[[], None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._timeout = timeout
        self._grace = grace
        self._poll_s = poll_s
        self._on_poll = on_poll
        """Called after each poll (every one two or three statements, whatever the
        subscribers): the API counts them."""
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def streams(self) -> int:
        return len(self._subscribers)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """Changes from now on: subscribe first, then read the board, so nothing between
        the two is missed (what arrives twice a stream recognises as sent)."""
        subscription = Subscription()
        self._subscribers.add(subscription)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="status-feed")
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # as periodic.running
            self._task = None

    async def _run(self) -> None:
        since: datetime | None = None
        while True:
            await pause(self._poll_s)
            if not self._subscribers:
                since = None  # nobody to tell: the next subscriber reads the board anyway
                continue
            try:
                async with self._pool.connection() as conn:
                    now = await db_now(conn)
                    changes = await self._changes(conn, since or now, now)
            except Exception as exc:  # streams keep alive, and the next poll retries
                log_failure("status feed", exc)
                continue
            since = now
            self._on_poll()
            for subscription in list(self._subscribers):
                try:
                    subscription.queue.put_nowait(changes)
                except asyncio.QueueFull:
                    self._subscribers.discard(subscription)
                    while not subscription.queue.empty():
                        subscription.queue.get_nowait()
                    subscription.queue.put_nowait(None)

    async def _changes(self, conn: Conn, since: datetime, now: datetime) -> Changes:
        ids = await q.changed_instruments(conn, timeout=self._timeout, since=since - OVERLAP,
                                          now=now)
        if not ids:
            return Changes(now, [])
        board = await q.status_board(conn, timeout=self._timeout, grace=self._grace,
                                     institutions=None, category=None, state=None,
                                     instrument_ids=ids, limit=len(ids), offset=0)
        return Changes(now, board["items"])


async def db_now(conn: Conn) -> datetime:
    """The database's clock, which ``updated_at`` and the heartbeat timeout are read on."""
    row = await fetch_one(conn, "SELECT clock_timestamp() AS now")
    assert row is not None
    now: datetime = row["now"]
    return now
