"""JSON written without a response model (the status board, the status stream, error details),
with times in the one form every body uses: UTC, ``Z`` (``2026-03-10T01:00:00Z``), as pydantic
writes the response models' datetimes. A client then reads one form, whichever route answers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson


def json_time(moment: datetime) -> str:
    """An instant as JSON bodies write it: ``2026-03-10T01:00:00Z``, microseconds when it has
    some (``2026-03-10T01:00:00.250000Z``)."""
    return moment.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"


def json_bytes(body: Any) -> bytes:
    """``body`` encoded by orjson (far faster than validating a large board item by item),
    times in UTC written with ``Z``: the pool's sessions run in UTC, so the database's times
    arrive in UTC."""
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)
