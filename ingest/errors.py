"""Errors raised by the ingest service.

    IngestError
    ├── BrokerRefusedError the broker refused the worker's log-in when it first connected
    └── StoreError         a batch could not be written
        ├── RetryableStoreError   the database is unreachable, busy or broken: keep the batch,
        │                         retry (in halves if it timed out)
        └── RejectedBatchError    the database refuses the data itself: split to isolate it
"""

from __future__ import annotations


class IngestError(Exception):
    """Base of every error the ingest service raises."""


class BrokerRefusedError(IngestError):
    """The broker refused the log-in of the worker's first connection: a setting to fix, which
    no retry mends."""


class StoreError(IngestError):
    """Writing a batch to the database failed."""

    def __init__(self, message: str, *, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        """The database's error code; None when it gave none (the connection failed)."""


class RetryableStoreError(StoreError):
    """Transient failure (connection lost, deadlock, shutdown, disk full): the same batch may
    succeed later."""

    def __init__(
        self, message: str, *, sqlstate: str | None, lasting: bool = False,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message, sqlstate=sqlstate)
        self.lasting = lasting
        """A fault that stays until someone mends it (schema, privileges, disk space, a
        read-only database): retried all the same, but said as an ERROR."""
        self.timed_out = timed_out
        """The database cancelled the statement (a statement timeout, most likely): the same
        rows at once would take as long again, half of them may not."""


class RejectedBatchError(StoreError):
    """The database rejected a value in the batch; retrying the same rows cannot succeed."""
