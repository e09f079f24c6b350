"""Errors raised by the gateway; callers catch ``GatewayError``.

    GatewayError
    ├── ConfigError   the configuration file is missing or invalid
    ├── ProbeError    a probe could not read its instrument (the poll skips it)
    └── OutboxError   the local outbox database cannot be opened or written
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises."""


class ConfigError(GatewayError):
    """The configuration file is missing or invalid; ``path`` says which file."""

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class ProbeError(GatewayError):
    """A probe failed to read; ``instrument`` names the probe's target when known."""

    def __init__(self, message: str, *, instrument: str | None = None) -> None:
        super().__init__(message)
        self.instrument = instrument


class OutboxError(GatewayError):
    """The outbox database failed; ``path`` is its file."""

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = path
