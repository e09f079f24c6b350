"""Put a simulated fleet in the platform's registry, so the ingest accepts its data."""

from __future__ import annotations

import psycopg

from device_sim.fleet import Fleet


def register_fleet(conninfo: str, fleet: Fleet) -> None:
    """Upsert institutions, users and instruments (with their gateway binding). Registry
    details (tiers, regions, categories, values, dates, fees) are written when a row is new
    and left alone after, so what an admin edits stays."""
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO institution (id, name, tier, region) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name",
            [(i.id, i.name, i.tier, i.region) for i in fleet.institutions],
        )
        cur.executemany(
            "INSERT INTO platform_user (id, name, institution_id, organisation, approved)"
            " VALUES (%s, %s, %s, %s, true)"
            " ON CONFLICT (id) DO UPDATE SET institution_id = excluded.institution_id,"
            " organisation = excluded.organisation",
            [(u.id, u.id, u.institution_id, u.organisation) for u in fleet.users],
        )
        cur.executemany(
            "INSERT INTO instrument (id, name, institution_id, gateway_id, category_code,"
            " value_rmb, maker, model, accepted_on, networked_on, location, fee_schedule)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
            " institution_id = excluded.institution_id, gateway_id = excluded.gateway_id",
            [(i.id, i.name, i.institution_id, i.gateway_id, i.profile.code,
              i.profile.value_rmb, i.profile.maker, i.profile.model, i.registry.accepted_on,
              i.registry.networked_on, i.registry.location, i.registry.fee_schedule)
             for i in fleet.instruments],
        )
