"""Cache of the instrument registry: which instruments exist and which gateway owns each."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger("ingest")

Loader = Callable[[], Mapping[str, str | None]]


class InstrumentRegistry:
    """Instrument id -> registered gateway id (None when unset), reloaded before refusing.

    A message is refused as from an unknown instrument (or the wrong gateway) only by a
    registry read that started after the message was received, so an instrument registered
    before its first message reached the worker is always accepted. Reads forced that way are
    at least ``RELOAD_MIN_INTERVAL_S`` apart (the caller waits out the rest): a flood of
    messages for unknown instruments costs the database a few reads a second, and every
    message received before the latest read is answered from the cache.
    """

    RELOAD_MIN_INTERVAL_S = 0.25

    def __init__(self, *, loader: Loader) -> None:
        self._loader = loader
        self._known: Mapping[str, str | None] = {}
        self._loaded_at = float("-inf")
        """Wall-clock time (POSIX seconds, like receive times) the latest read started."""
        self._next_reload = float("-inf")
        """Monotonic time before which no forced read starts."""

    def refresh(self) -> None:
        """Read the registry now (may raise a database error)."""
        started = time.time()
        self._known = self._loader()
        self._loaded_at = started
        self._next_reload = time.monotonic() + self.RELOAD_MIN_INTERVAL_S
        logger.debug("instrument registry loaded: %d instruments", len(self._known))

    def lookup(self, instrument: str, gateway: str, received: float) -> tuple[bool, str | None]:
        """(registered, owning gateway or None) for a message ``gateway`` sent, received at
        ``received`` (POSIX seconds).

        An answer that would refuse the message (unknown, or owned by another gateway) comes
        from a read started at or after ``received``: this may read the registry, after
        waiting up to ``RELOAD_MIN_INTERVAL_S``, and so may raise a database error.
        """
        known = self._known
        if instrument in known:
            owner = known[instrument]
            if owner is None or owner == gateway:
                return True, owner
        if self._loaded_at < received:
            wait = self._next_reload - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.refresh()
            known = self._known
        if instrument in known:
            return True, known[instrument]
        return False, None
