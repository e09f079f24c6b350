"""The agent's writes to its outbox, and what it does while the file cannot be written (a full
disk): polls go on, new messages wait in memory, confirmed ones wait for their delete, and the
log says so without repeating itself at every poll."""

from __future__ import annotations

import logging
import time

from gateway.errors import OutboxError
from gateway.outbox import Builder, Outbox

logger = logging.getLogger("gateway")


class OutboxWriter:
    """Stores messages in and deletes them from one outbox. Not thread-safe: the agent calls
    it under its lock."""

    def __init__(self, outbox: Outbox, *, gateway_id: str, held_max: int, retry_s: float,
                 report_s: float) -> None:
        """``held_max``: most messages kept in memory; ``retry_s``: least time between two
        tries to store them; ``report_s``: time between two warnings."""
        self._outbox = outbox
        self._gateway = gateway_id
        self._held_max = held_max
        self._retry_s = retry_s
        self._report_s = report_s
        self._held: list[Builder] = []
        """Messages closed while the outbox could not be written, oldest first: stored, in
        order and before newer ones, once it can be."""
        self._retry_at = 0.0
        """Monotonic time before which held messages are not tried again: each try builds
        and encodes them all."""
        self._undeleted: set[int] = set()
        """Confirmed seqs whose delete failed."""
        self._failing_since: float | None = None
        """Monotonic time since when the outbox cannot be used (None: it can)."""
        self._report_at = 0.0

    @property
    def held(self) -> int:
        """Messages waiting in memory for the outbox to be written."""
        return len(self._held)

    @property
    def undeleted(self) -> bool:
        """Some confirmed messages wait for their delete."""
        return bool(self._undeleted)

    def store(self, builders: list[Builder], *, now: float, retry: bool) -> int:
        """Append ``builders`` after the held messages and return how many were stored. While
        messages are held, they are tried again only every ``retry_s``, unless ``retry``; if
        the outbox cannot be written, all wait in memory (at most ``held_max``, the oldest
        dropped and counted)."""
        pending = self._held + builders
        if not pending:
            return 0
        if self._held and not retry and time.monotonic() < self._retry_at:
            self._hold(pending)
            return 0
        try:
            self._outbox.append(pending, now=now)
        except OutboxError as exc:
            self._retry_at = time.monotonic() + self._retry_s
            self._hold(pending)
            self.failed(exc)
            return 0
        self._held = []
        self._written()
        return len(pending)

    def delete(self, seqs: set[int]) -> int:
        """Delete confirmed messages, and those whose delete failed before; how many were
        removed. If it fails, they are all tried again at the next call."""
        seqs = seqs | self._undeleted
        try:
            removed = self._outbox.delete(seqs)
        except OutboxError as exc:
            self._undeleted = seqs
            self.failed(exc)
            return 0
        self._undeleted = set()
        if seqs:
            self._written()
        return removed

    def drop_held(self) -> None:
        """At stop: count the held messages as dropped when full, and say they are lost."""
        if not self._held:
            return
        lost, self._held = len(self._held), []
        self._outbox.count_unwritten(lost)
        logger.error("gateway %s: %d message(s) lost: the outbox could not be written (%d"
                     " dropped when full in all; count %s)", self._gateway, lost,
                     self._outbox.dropped_full,
                     "saved" if self._outbox.save_dropped() else "not saved")

    def failed(self, exc: OutboxError, *, reading: bool = False) -> None:
        """Say that the outbox cannot be written (or, ``reading``, read): a WARNING at once and
        every ``report_s``, DEBUG in between."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since, self._report_at = now, now
        verb = "read" if reading else "write"
        if now < self._report_at:
            logger.debug("gateway %s: still cannot %s the outbox (%s); %d message(s) in memory,"
                         " %d confirmed one(s) not deleted yet", self._gateway, verb, exc,
                         len(self._held), len(self._undeleted))
            return
        self._report_at = now + self._report_s
        logger.warning(
            "gateway %s: cannot %s the outbox for %.0f s (%s); %d new message(s) kept in"
            " memory until it can be written (at most %d, then the oldest are dropped; %d"
            " dropped when full so far)", self._gateway, verb, now - self._failing_since, exc,
            len(self._held), self._held_max, self._outbox.dropped_full)

    def _hold(self, pending: list[Builder]) -> None:
        excess = len(pending) - self._held_max
        if excess > 0:
            self._outbox.count_unwritten(excess)
            pending = pending[excess:]
        self._held = pending

    def _written(self) -> None:
        """Say when the outbox can be written again."""
        if self._failing_since is not None:
            logger.info("gateway %s: the outbox can be written again after %.0f s",
                        self._gateway, time.monotonic() - self._failing_since)
            self._failing_since = None
