"""Errors raised by the ingest service.

    IngestError
    ├── BrokerRefusedError the broker refused the worker's log-in when it first connected
    └── StoreError         a batch could not be written
        ├── RetryableStoreError   the database is unreachable or busy: keep the batch, retry
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


class RetryableStoreError(StoreError):
    """Transient failure (connection lost, deadlock, shutdown): the same batch may succeed later."""


class RejectedBatchError(StoreError):
    """The database rejected a value in the batch; retrying the same rows cannot succeed."""

    def __init__(self, message: str, *, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
