"""Connections are lent one at a time: concurrent reports cannot starve each other, and a
request that finds none free gets a clear 503 instead of hanging."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import psycopg

from tests.api.conftest import Api, make_settings
from tests.api_server import serve

REPORTS = [
    "/reports/utilisation?start=2026-01-01&end=2026-12-31",
    "/reports/utilisation?start=2025-03-05&end=2026-02-10&group_by=institution",
    "/evaluation/2026/instruments",
    "/evaluation/2025/institutions",
    "/evaluation/2026/low-utilisation",
]


def test_concurrent_reports_share_a_small_pool(api: Api) -> None:
    """Each report borrows several connections; with two in the pool and eight reports at
    once, a report holding one while waiting for another would wait for ever (503 here)."""
    settings = make_settings(api.database_url, pool_max_size=2, pool_timeout_s=5)
    auth = {"Authorization": f"Bearer {api.tokens['admin']}"}

    async def all_at_once(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, headers=auth, timeout=60) as client:
            paths = [REPORTS[k % len(REPORTS)] for k in range(8)]
            return await asyncio.gather(*(client.get(p) for p in paths))

    with serve(settings) as url:
        responses = asyncio.run(all_at_once(url))
    assert [(r.status_code, r.text[:200]) for r in responses if r.status_code != 200] == []
    nmr = next(i for i in responses[0].json()["items"] if i["key"] == "nmr")
    assert nmr["effective_hours"] == 0


def test_no_free_connection_is_a_busy_503(api: Api) -> None:
    settings = make_settings(api.database_url, pool_max_size=1, pool_timeout_s=1)
    auth = {"Authorization": f"Bearer {api.tokens['admin']}"}
    with serve(settings) as url, psycopg.connect(api.database_url) as locker:
        locker.execute("LOCK TABLE instrument IN ACCESS EXCLUSIVE MODE")
        first: list[httpx.Response] = []
        board = threading.Thread(
            target=lambda: first.append(httpx.get(f"{url}/status", headers=auth, timeout=30)))
        board.start()
        try:
            _wait_for_a_blocked_query(api)  # the board now holds the pool's only connection
            second = httpx.get(f"{url}/status", headers=auth, timeout=30)
        finally:
            locker.rollback()
            board.join()
    assert second.status_code == 503
    assert second.json()["error"] == "busy"
    assert second.headers["Retry-After"] == "5"
    assert first[0].status_code == 200 and first[0].json()["total"] == 4


def _wait_for_a_blocked_query(api: Api) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if api.sql("SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                   " AND wait_event_type = 'Lock'"):
            return
        time.sleep(0.05)
    raise AssertionError("the board request never reached the locked table")
