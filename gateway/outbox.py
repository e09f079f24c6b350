"""Durable outbox: every data message is stored here, with its seq, before it is published.

One SQLite file per gateway (WAL, ``synchronous=NORMAL``: one transaction per batch of messages,
no fsync per sample). Sequence numbers, the birth/death session number and drop counters live
in the same file, so they survive restarts and a seq is never reused, even after drops.
A message leaves the outbox only when the platform confirms it stored it (not on the broker's
PUBACK), or when a bound drops it (oldest first, counted and logged).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from gateway.errors import OutboxError

logger = logging.getLogger("gateway")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    oldest REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS message_oldest ON message (oldest);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('next_seq', 0), ('bd_seq', -1),
    ('dropped_full', 0), ('dropped_age', 0);
"""
_COLUMNS = {"message": ["seq", "topic", "payload", "oldest"], "meta": ["key", "value"]}
"""The outbox's tables: a file holding others, or these with other columns, is not an outbox
(a file holding only some of them is one whose first start failed)."""


class Entry(NamedTuple):
    """What a builder returns for a seq: topic, payload, oldest timestamp inside (epoch s)."""

    topic: str
    payload: bytes
    oldest: float


class Stored(NamedTuple):
    seq: int
    topic: str
    payload: bytes


Builder = Callable[[int], Entry]
"""Builds a message once its seq is known (the seq is part of the payload)."""


class Outbox:
    """A bounded, persistent FIFO of messages keyed by seq. Thread-safe."""

    DROP_WARNING_INTERVAL_S = 60.0
    """Drops are logged at once, then summed over this long: a full outbox drops a message
    per append, and a warning each would bury the rest of the log."""

    def __init__(self, path: Path, *, max_messages: int, max_age_s: float) -> None:
        if max_messages < 1 or max_age_s <= 0:
            raise ValueError("max_messages must be >= 1 and max_age_s > 0")
        self.path = path
        self.max_messages = max_messages
        self.max_age_s = max_age_s
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._depth = 0
        self._next_seq = 0
        self.dropped_full = 0
        self.dropped_age = 0
        self._unlogged_full = 0
        self._unlogged_age = 0
        self._logged_at: float | None = None

    def open(self) -> None:
        """Open (or, in an existing directory, create) the file; OutboxError says why not.

        A file that is damaged or another program's database is refused, never replaced: it
        may hold messages not delivered yet."""
        db: sqlite3.Connection | None = None
        if not self.path.parent.is_dir():
            # a new outbox numbers seq from 0 again: a mistyped path must not quietly make one
            raise OutboxError(f"cannot open outbox {self.path}: its directory does not exist"
                              " (create it first)", path=self.path)
        if self.path.is_dir():
            raise OutboxError(f"cannot open outbox {self.path}: it is a directory",
                              path=self.path)
        if self.path.is_file() and self.path.stat().st_size == 0:
            logger.warning("outbox %s is an empty file: starting a new outbox in it, seq from 0",
                           self.path)
        try:
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=1.0
            )
            # exclusive: one agent per file (a second one fails at once), and no -shm file,
            # which saves a descriptor per gateway when thousands run in one process
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            names = db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'").fetchall()
            tables = {name: [column for (column,) in db.execute(
                "SELECT name FROM pragma_table_info(?)", (name,))] for (name,) in names}
            if any(_COLUMNS.get(name) != columns for name, columns in tables.items()):
                db.close()  # checked before changing it
                raise OutboxError(
                    f"cannot open outbox {self.path}: it is another program's SQLite database"
                    f" (tables {', '.join(sorted(tables))}), left as it is: outbox_path must"
                    " name a file of its own", path=self.path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # one transaction: a start that fails midway leaves no part of the schema behind
            db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            (depth,) = db.execute("SELECT count(*) FROM message").fetchone()
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            raise OutboxError(f"cannot open outbox {self.path}: {_why(exc, self.path)}",
                              path=self.path) from exc
        self._db = db
        self._depth = int(depth)
        self._next_seq = int(meta["next_seq"])
        self.dropped_full = int(meta["dropped_full"])
        self.dropped_age = int(meta["dropped_age"])

    def close(self) -> None:
        with self._lock:
            self._log_drops(now=None)
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Outbox:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def depth(self) -> int:
        """Messages stored and not yet acknowledged."""
        return self._depth

    @property
    def last_seq(self) -> int:
        """The last seq handed out (-1 when none yet)."""
        return self._next_seq - 1

    def next_bd_seq(self, *, at_least: int) -> int:
        """Advance and return the birth/death session number: one more than the last, or
        ``at_least`` if that is more."""
        with self._lock, self._transaction() as db:
            db.execute("UPDATE meta SET value = max(value + 1, ?) WHERE key = 'bd_seq'",
                       (at_least,))
            (value,) = db.execute("SELECT value FROM meta WHERE key = 'bd_seq'").fetchone()
            return int(value)

    def append(self, builders: Sequence[Builder], *, now: float) -> list[int]:
        """Store one message per builder, in order, in one transaction; then apply the bounds."""
        if not builders:
            return []
        with self._lock, self._transaction() as db:
            first = self._next_seq
            rows = []
            for offset, build in enumerate(builders):
                entry = build(first + offset)
                rows.append((first + offset, entry.topic, entry.payload, entry.oldest))
            db.executemany("INSERT INTO message VALUES (?, ?, ?, ?)", rows)
            next_seq = first + len(rows)
            db.executemany("UPDATE meta SET value = ? WHERE key = ?",
                           [(next_seq, "next_seq"), (self.dropped_full, "dropped_full")])
            self._next_seq = next_seq
            self._depth += len(rows)
            self._enforce_bounds(db, now)
        return [row[0] for row in rows]

    def count_unwritten(self, count: int) -> None:
        """Count messages dropped because the file could not be written (a full disk) with
        those dropped when full; the next append (or ``save_dropped``) saves the counter."""
        with self._lock:
            self.dropped_full += count

    def save_dropped(self) -> bool:
        """Save ``dropped_full`` now (``count_unwritten`` does not); False if the file cannot
        be written."""
        with self._lock:
            try:
                with self._transaction() as db:
                    self._write_dropped_full(db)
            except OutboxError:
                return False
            return True

    def expire(self, *, now: float) -> None:
        """Apply the age bound without adding anything."""
        with self._lock, self._transaction() as db:
            self._enforce_bounds(db, now)

    def after(self, seq: int, limit: int) -> list[Stored]:
        """Up to ``limit`` stored messages with a seq above ``seq``, in seq order."""
        with self._lock:
            try:
                rows = self._conn().execute(
                    "SELECT seq, topic, payload FROM message WHERE seq > ? ORDER BY seq LIMIT ?",
                    (seq, limit),
                ).fetchall()
            except sqlite3.Error as exc:  # a disk failing, a file damaged while open
                raise OutboxError(f"outbox {self.path}: {exc}", path=self.path) from exc
        return [Stored(int(s), str(t), bytes(p)) for s, t, p in rows]

    def delete(self, seqs: Iterable[int]) -> int:
        """Remove acknowledged messages; seqs already gone (dropped) are ignored."""
        params = [(seq,) for seq in seqs]
        if not params:
            return 0
        with self._lock, self._transaction() as db:
            before = db.total_changes
            db.executemany("DELETE FROM message WHERE seq = ?", params)
            removed = db.total_changes - before
            self._depth -= removed
        return removed

    def _enforce_bounds(self, db: sqlite3.Connection, now: float) -> None:
        cutoff = now - self.max_age_s
        old = db.execute("DELETE FROM message WHERE oldest < ?", (cutoff,)).rowcount
        if old:
            self._depth -= old
            self.dropped_age += old
            self._unlogged_age += old
            db.execute("UPDATE meta SET value = ? WHERE key = 'dropped_age'", (self.dropped_age,))
        excess = self._depth - self.max_messages
        if excess > 0:
            db.execute(
                "DELETE FROM message WHERE seq IN (SELECT seq FROM message ORDER BY seq LIMIT ?)",
                (excess,),
            )
            self._depth -= excess
            self.dropped_full += excess
            self._unlogged_full += excess
            self._write_dropped_full(db)
        self._log_drops(now=time.monotonic())

    def _log_drops(self, *, now: float | None) -> None:
        """Warn of the drops not logged yet, unless the last warning is recent (``now`` None:
        whatever its age, as the outbox closes)."""
        if not (self._unlogged_full or self._unlogged_age):
            return
        if now is not None and self._logged_at is not None \
                and now - self._logged_at < self.DROP_WARNING_INTERVAL_S:
            return
        if self._unlogged_age:
            logger.warning(
                "outbox %s: dropped %d message(s) older than %.0f s (%d dropped for age so far)",
                self.path, self._unlogged_age, self.max_age_s, self.dropped_age,
            )
        if self._unlogged_full:
            logger.warning(
                "outbox %s full (%d messages): dropped the %d oldest (%d dropped when full so far)",
                self.path, self.max_messages, self._unlogged_full, self.dropped_full,
            )
        self._unlogged_full = self._unlogged_age = 0
        self._logged_at = now

    def _write_dropped_full(self, db: sqlite3.Connection) -> None:
        """Save ``dropped_full`` in the caller's transaction."""
        db.execute("UPDATE meta SET value = ? WHERE key = 'dropped_full'", (self.dropped_full,))

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(f"outbox {self.path} is not open", path=self.path)
        return self._db

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn(), self)


def _why(exc: sqlite3.Error | OSError, path: Path) -> str:
    """What went wrong opening the file, and what to do about it."""
    code = getattr(exc, "sqlite_errorcode", -1) & 0xFF  # the primary code of an extended one
    if code == sqlite3.SQLITE_BUSY:
        return "another gateway agent has it open"
    if code in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY) and (
        not os.access(path if path.exists() else path.parent, os.W_OK)
    ):
        return (f"{exc}: {'it' if path.exists() else 'its directory'} cannot be written (a"
                " read-only file system, or permissions): the gateway must write it")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return (f"{exc}: it is damaged or not an outbox. It is left as it is: move it (and"
                " its -wal file) aside to start a new outbox; messages not yet delivered may"
                " be saved from it with sqlite3's .recover")
    return str(exc)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolling back (and restoring counters) on error."""

    def __init__(self, db: sqlite3.Connection, outbox: Outbox) -> None:
        self._db = db
        self._outbox = outbox
        self._saved = (0, 0, 0, 0, 0, 0)

    def __enter__(self) -> sqlite3.Connection:
        o = self._outbox
        self._saved = (o._depth, o._next_seq, o.dropped_full, o.dropped_age,
                       o._unlogged_full, o._unlogged_age)
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {o.path}: {exc}", path=o.path) from exc
        return self._db

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        o = self._outbox
        if exc is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as commit_exc:
                exc = commit_exc
        (o._depth, o._next_seq, o.dropped_full, o.dropped_age,
         o._unlogged_full, o._unlogged_age) = self._saved
        # a full disk (or I/O error) may have rolled the transaction back already, and then
        # ROLLBACK fails harmlessly (SQLite's documentation of sqlite3_step's errors)
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise OutboxError(f"outbox {o.path}: {exc}", path=o.path) from exc
