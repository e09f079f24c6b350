"""Numbered steps taken one at a time, in number order, by whichever thread holds each."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Turns:
    """Step ``n`` runs once step ``n - 1`` has finished (or failed); the first is ``0``.

    The writing threads acknowledge their batches this way: MQTT wants PUBACKs in the order
    the PUBLISHes arrived, while the batches commit in whatever order their writes finish.
    """

    def __init__(self) -> None:
        self._next = 0
        self._changed = threading.Condition()

    @contextmanager
    def turn(self, n: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._next == n)
        try:
            yield
        finally:
            with self._changed:
                self._next = n + 1
                self._changed.notify_all()
