"""The simulated fleet's registry: details written once, edits kept, the compliance list fed."""

from __future__ import annotations

import asyncio
from datetime import date

import psycopg
from psycopg.rows import dict_row

from device_sim.fleet import build_fleet
from device_sim.registry import register_fleet
from monitor_api.routers.registry import overdue_list


def test_registration_is_complete_and_keeps_edits(database_url: str) -> None:
    fleet = build_fleet(60, seed=3)
    register_fleet(database_url, fleet)
    first = fleet.instruments[0]
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT category_code, value_rmb, maker, accepted_on, networked_on, location"
            " FROM instrument WHERE id = %s", (first.id,)).fetchone()
        assert row == (first.profile.code, first.profile.value_rmb, first.profile.maker,
                       first.registry.accepted_on, first.registry.networked_on,
                       first.registry.location)
        tiers: dict[str, str] = dict(
            conn.execute("SELECT id, tier FROM institution").fetchall())
        assert tiers == {i.id: i.tier for i in fleet.institutions}
        published = conn.execute(
            "SELECT count(*) FILTER (WHERE fee_schedule <> '') FROM instrument").fetchone()
        assert published is not None and 40 <= published[0] < 60
        conn.execute("UPDATE instrument SET location = 'moved', fee_schedule = 'new fees'"
                     " WHERE id = %s", (first.id,))
    register_fleet(database_url, fleet)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT location, fee_schedule FROM instrument WHERE id = %s",
                            (first.id,)).fetchone() == ("moved", "new fees")
    late = {i.id for i in fleet.instruments
            if (i.registry.networked_on - i.registry.accepted_on).days >= 60}
    assert 1 <= len(late) <= 15
    assert late <= {o["instrument_id"] for o in asyncio.run(_overdue(database_url))}


def test_fleet_networked_on_one_day_is_overdue_only_where_the_delay_is(
        database_url: str) -> None:
    networked = date(2026, 2, 20)  # the Spring Festival's holidays lie within the delays
    drawn, fleet = build_fleet(60, seed=3), build_fleet(60, seed=3, networked_on=networked)
    assert [i.profile for i in fleet.instruments] == [i.profile for i in drawn.instruments]
    for new, old in zip(fleet.instruments, drawn.instruments, strict=True):
        assert new.registry.networked_on == networked
        assert (networked - new.registry.accepted_on
                == old.registry.networked_on - old.registry.accepted_on)
    register_fleet(database_url, fleet)
    late = {i.id for i in fleet.instruments
            if (i.registry.networked_on - i.registry.accepted_on).days >= 60}
    assert late
    overdue = asyncio.run(_overdue(database_url, as_of=networked))
    assert {o["instrument_id"] for o in overdue} == late


async def _overdue(database_url: str, as_of: date = date(2026, 1, 1)) -> list[dict[str, object]]:
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        return await overdue_list(conn, None, 300_000, 30, as_of=as_of)
