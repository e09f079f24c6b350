"""Generated requests from the OpenAPI schema (schemathesis) never get a 5xx answer."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.api.conftest import Api

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "15"))
SKIP = {("GET", "/status/stream")}  # endless by design; covered in test_status
USER_ONLY = {("POST", "/bookings"), ("POST", "/bookings/{booking_id}/rating")}


def _fuzz(strategy: Any, url: str, token: str, key: tuple[str, str],
          failures: list[str]) -> int:
    """Run the generated cases; return how many requests were actually sent."""
    sent = 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        nonlocal sent
        response = case.call(base_url=url, headers={"Authorization": f"Bearer {token}"})
        if response.status_code >= 500:
            failures.append(f"{key} {response.status_code} {case.path_parameters}"
                            f" {case.query} {case.body!r:.200} -> {response.text:.300}")
        sent += 1

    with contextlib.suppress(Unsatisfiable):  # nothing to vary in some operations
        run()
    return sent


def test_no_server_errors(api: Api) -> None:
    # A few real objects so generated ids sometimes hit something.
    api.sql("INSERT INTO booking (id, instrument_id, user_id, kind, start_ts, end_ts, status)"
            " VALUES (1, 'nmr', 'out1', 'assisted', '2026-12-01 09:00+08',"
            " '2026-12-01 10:00+08', 'completed')")
    api.sql("INSERT INTO certification (id, user_id, instrument_id, level, valid_from)"
            " VALUES (1, 'out1', 'nmr', 'self', now())")
    spec = httpx.get(f"{api.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    failures: list[str] = []
    sent: dict[tuple[str, str], int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        key = (operation.method.upper(), operation.path)
        if key in SKIP:
            continue
        token = api.tokens["user" if key in USER_ONLY else "admin"]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)
            sent[key] = sent.get(key, 0) + _fuzz(strategy, api.url, token, key, failures)
    assert not failures, "\n".join(failures[:20])
    # every operation was really exercised, and most of them with many requests
    assert len(sent) > 40
    assert not [k for k, n in sent.items() if n == 0], sent
    assert sum(sent.values()) > len(sent) * EXAMPLES, sent
