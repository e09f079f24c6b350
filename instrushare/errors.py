"""Errors of the shared package: the database schema and the demo. The services' own are in
``gateway/errors.py``, ``ingest/errors.py`` and ``monitor_api/errors.py``.

    InstrushareError
    ├── SchemaBehind      the database lacks migrations this code needs
    ├── MigrationFailed   a migration was refused and rolled back
    └── DemoError         the demo cannot run as asked
"""

from __future__ import annotations


class InstrushareError(Exception):
    """Base of the shared package's errors, for a caller to catch them all."""


class SchemaBehind(InstrushareError):
    """The database lacks migrations this version of the code needs."""


class MigrationFailed(InstrushareError):
    """The database refused migration ``name`` (the cause says why): rolled back, while those
    in ``applied`` before it in this run stay applied."""

    def __init__(self, name: str, applied: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.applied = applied


class DemoError(InstrushareError):
    """The demo cannot run as asked; the message says why and what to change."""
