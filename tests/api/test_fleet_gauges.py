"""The fleet by state on /metrics: counts of a seeded fleet, computed by hand, the same as the
status board's, refreshed every round, absent when off or when the database fails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.errors import UndefinedTable

from monitor_api.db import make_pool
from monitor_api.fleet_gauges import STATES, FleetGauges
from tests.api.conftest import Api, make_settings
from tests.api_server import serve

# Heartbeat timeout 900 s. gw2 has announced itself offline; gw9 never announced itself
# (its instruments stay live: the board shows offline only on a gateway's word).
FLEET = [
    "INSERT INTO instrument (id, name, institution_id) VALUES ('afm', '原子力显微镜', 'uni'),"
    " ('tem', '透射电镜', 'other'), ('ms', '质谱仪', 'uni-ac'), ('gc', '气相色谱仪', 'incub')",
    "INSERT INTO gateway (id, bd_seq, online, changed_at) VALUES"
    " ('gw1', 1, true, now() - interval '2 hours'), ('gw2', 1, false, now() - interval '1 hour'),"
    " ('gw3', 1, true, now() - interval '2 hours')",
    "INSERT INTO instrument_status (instrument_id, gateway_id, state, since, last_ts) VALUES"
    " ('nmr', 'gw1', 'running', now() - interval '1 hour', now() - interval '1 min'),"
    " ('sem', 'gw1', 'idle', now() - interval '1 hour', now() - interval '20 min'),"  # silent
    " ('xrd', 'gw2', 'idle', now() - interval '1 hour', now() - interval '1 min'),"  # gw2 off
    " ('afm', 'gw3', 'fault', now() - interval '1 hour', now() - interval '1 min'),"
    " ('tem', 'gw3', 'running', now() - interval '1 hour', now() - interval '1 min'),"
    " ('ms', 'gw1', 'off', now() - interval '1 hour', now() - interval '1 min'),"
    " ('gc', 'gw9', 'idle', now() - interval '1 hour', now() - interval '1 min')",
    # inc1 was never heard from: offline
]
EXPECTED = {"offline": 3, "off": 1, "idle": 1, "running": 2, "fault": 1, "maintenance": 0}
GAUGES = {**EXPECTED, "instrushare_instruments_never_heard": 1, "instrushare_gateways_online": 2}


def _fleet(text: str) -> dict[str, float]:
    """The fleet gauges in a /metrics text: ``state`` per state, and the unlabelled ones."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(("instrushare_instruments", "instrushare_gateways")):
                found[sample.labels.get("state", sample.name)] = sample.value
    return found


def _wait_for_fleet(url: str, expected: Mapping[str, float], timeout: float = 10
                    ) -> dict[str, float]:
    """The fleet gauges once they read ``expected``, else as they read after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        fleet = _fleet(httpx.get(f"{url}/metrics").text)
        if fleet == expected or time.monotonic() > deadline:
            return fleet
        time.sleep(0.05)


def test_metrics_count_the_fleet_by_state_as_the_board_does(api: Api) -> None:
    for statement in FLEET:
        api.sql(statement)
    with serve(make_settings(api.database_url, fleet_gauge_interval_s=30)) as url:
        assert _wait_for_fleet(url, GAUGES) == GAUGES
        with api.as_("evaluator") as c:
            board = {state: c.get("/status", params={"state": state, "limit": 1}).json()["total"]
                     for state in STATES}
    assert board == EXPECTED


def test_each_round_counts_anew(api: Api) -> None:
    for statement in FLEET:
        api.sql(statement)
    with serve(make_settings(api.database_url, fleet_gauge_interval_s=0.2)) as url:
        assert _wait_for_fleet(url, GAUGES) == GAUGES
        api.sql("UPDATE instrument_status SET state = 'maintenance' WHERE instrument_id = 'ms'")
        api.sql("UPDATE gateway SET online = false WHERE id = 'gw3'")  # afm and tem go offline
        expected = {"offline": 5, "off": 0, "idle": 1, "running": 1, "fault": 0,
                    "maintenance": 1, "instrushare_instruments_never_heard": 1,
                    "instrushare_gateways_online": 1}
        assert _wait_for_fleet(url, expected) == expected


def test_off_exports_nothing(api: Api) -> None:
    with serve(make_settings(api.database_url, fleet_gauge_interval_s=0)) as url:
        time.sleep(0.5)  # a round, were one started, would have counted by now
        text = httpx.get(f"{url}/metrics").text
    assert "instrushare_api_pool_size" in text and _fleet(text) == {}


def test_a_failed_round_withdraws_the_counts_and_the_next_one_restores_them(api: Api) -> None:
    """No count is shown but one just made: a stale count while the database fails would
    read as a fleet unchanged."""
    registry = CollectorRegistry()

    async def rounds() -> list[dict[str, float]]:
        pool = make_pool(make_settings(api.database_url))
        await pool.open()
        gauges = FleetGauges(pool, timeout=api.settings.heartbeat_timeout, registry=registry)
        try:
            assert await gauges.update() == ""
            seen = [_fleet(generate_latest(registry).decode())]
            api.sql("ALTER TABLE gateway RENAME TO gateway_gone")
            with pytest.raises(UndefinedTable):
                await gauges.update()
            seen.append(_fleet(generate_latest(registry).decode()))
            api.sql("ALTER TABLE gateway_gone RENAME TO gateway")
            await gauges.update()
            return [*seen, _fleet(generate_latest(registry).decode())]
        finally:
            await pool.close()

    ok, failed, restored = asyncio.run(rounds())
    assert ok == restored == {"offline": 4, "off": 0, "idle": 0, "running": 0, "fault": 0,
                              "maintenance": 0, "instrushare_instruments_never_heard": 4,
                              "instrushare_gateways_online": 0}
    assert failed == {}
