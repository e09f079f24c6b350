"""Concurrent requests for one result share one computation. The evaluation page asks for
the instruments' and the institutions' scores of a year at once, and both come from the same
computation over every instrument (over a second for a province): it runs once for both.
Nothing is kept once it is done, so a later request always computes afresh."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """``compute()``'s result, shared with every call for ``key`` made while it runs. A
        caller that goes away (a closed connection) does not cancel it for the others."""
        flight = self._running.get(key)
        if flight is None:
            flight = asyncio.ensure_future(compute())
            self._running[key] = flight

            def landed(done: asyncio.Future[V]) -> None:
                del self._running[key]
                if not done.cancelled():
                    done.exception()  # retrieved: a failure nobody awaited is not "lost"

            flight.add_done_callback(landed)
        return await asyncio.shield(flight)
