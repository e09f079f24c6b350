"""Cache of the instrument registry: which instruments exist and which gateway owns each."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger("ingest")

Loader = Callable[[], Mapping[str, str | None]]


class InstrumentRegistry:
    """Instrument id -> registered gateway id (None when unset), reloaded on a miss.

    A miss reloads at most every ``REFRESH_MIN_INTERVAL_S`` so a flood of messages for an
    unknown instrument cannot hammer the database, yet a newly registered one is seen quickly.
    """

    REFRESH_MIN_INTERVAL_S = 3.0

    def __init__(self, *, loader: Loader) -> None:
        self._loader = loader
        self._known: Mapping[str, str | None] = {}
        self._loaded_at = float("-inf")

    def refresh(self) -> None:
        self._known = self._loader()
        self._loaded_at = time.monotonic()
        logger.debug("instrument registry loaded: %d instruments", len(self._known))

    def lookup(self, instrument: str) -> tuple[bool, str | None]:
        """(registered, owning gateway or None); may reload, so may raise a database error."""
        known = self._known
        if instrument in known:
            return True, known[instrument]
        if time.monotonic() - self._loaded_at >= self.REFRESH_MIN_INTERVAL_S:
            self.refresh()
            if instrument in self._known:
                return True, self._known[instrument]
        return False, None
