"""Numbered steps taken in number order by whichever thread holds each."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Turns:
    """Step ``n`` may start once every step before it has finished; the first is ``0``.

    The writing threads take two kinds of turns: the PUBACKs of their batches go out in batch
    order (MQTT wants them in the order the PUBLISHes arrived), and the instruments' locks are
    taken in batch order (else a later batch that locks first turns the earlier one into late
    data, which is recomputed: correct, but dearer). A step may also finish without having
    waited for its turn (a wait that timed out); its successors still wait for the rest.
    """

    def __init__(self) -> None:
        self._next = 0
        """Every step before this one has finished."""
        self._finished: set[int] = set()
        """Steps from ``_next`` on that finished early."""
        self._changed = threading.Condition()

    def wait(self, n: int, timeout: float | None = None) -> bool:
        """Block until every step before ``n`` has finished; False if ``timeout`` ran out."""
        with self._changed:
            return self._changed.wait_for(lambda: self._next >= n, timeout)

    def finish(self, n: int) -> None:
        with self._changed:
            if n < self._next:
                return  # finished before (a retried step)
            self._finished.add(n)
            while self._next in self._finished:
                self._finished.remove(self._next)
                self._next += 1
            self._changed.notify_all()

    @contextmanager
    def turn(self, n: int) -> Iterator[None]:
        """Run the block as step ``n``: after all earlier steps, before all later ones."""
        self.wait(n)
        try:
            yield
        finally:
            self.finish(n)
