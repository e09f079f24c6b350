"""Put a simulated fleet in the platform's registry, so the ingest accepts its data."""

from __future__ import annotations

import psycopg

from device_sim.bookings import SimBooking
from device_sim.certifications import SimCertification
from device_sim.fleet import Fleet


def register_fleet(conninfo: str, fleet: Fleet) -> None:
    """Upsert institutions, users and instruments (with their gateway binding), new
    instruments listed in the catalogue. Registry details (tiers, regions, categories,
    values, dates, fees) are written when a row is new and left alone after, so what an
    admin edits stays."""
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
            [(u.id, u.name, u.institution_id, u.organisation) for u in fleet.users],
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
        # in the catalogue as if reviewed, once: a later review's entry stays
        cur.execute(
            "UPDATE instrument i SET listing = catalogue_entry(i), listed_at = now(),"
            " listed_by = 'device_sim' WHERE listing IS NULL AND id = ANY(%s)",
            ([i.id for i in fleet.instruments],),
        )


def register_bookings(conninfo: str, bookings: list[SimBooking]) -> int:
    """Record the bookings as the platform would have (used ones completed, with their service
    record; missed ones still approved), skipping any that overlaps a booking already there,
    e.g. from an earlier run over the same days; returns how many were new."""
    added = 0
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        for bk in bookings:
            cur.execute(
                "INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status,"
                " purpose, decided_at, decided_by)"
                " SELECT %(inst)s, %(user)s, %(kind)s, %(start)s, %(end)s, %(status)s,"
                " %(purpose)s, %(start)s, 'device_sim' WHERE NOT EXISTS ("
                "  SELECT 1 FROM booking WHERE instrument_id = %(inst)s"
                "  AND status IN ('approved', 'completed', 'void')"
                "  AND tstzrange(start_ts, end_ts) && tstzrange(%(start)s, %(end)s))"
                " RETURNING id",
                {"inst": bk.instrument, "user": bk.user, "kind": bk.kind, "start": bk.start,
                 "end": bk.end, "purpose": bk.purpose,
                 "status": "completed" if bk.used else "approved"},
            )
            row = cur.fetchone()
            if row is None:
                continue
            added += 1
            if bk.used:
                cur.execute(
                    "INSERT INTO service_record (booking_id, contract_no, fee_rmb, voucher_rmb,"
                    " rating, rated_at) VALUES (%s, %s, %s, %s, %s, %s)",
                    (row[0], f"SIM-{row[0]:06d}", bk.fee_rmb, bk.voucher_rmb, bk.rating,
                     bk.end if bk.rating else None),
                )
    return added


def register_certifications(conninfo: str, certifications: list[SimCertification]) -> int:
    """Issue the certifications a user does not hold yet on that instrument at that level;
    returns how many were new."""
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO certification (user_id, instrument_id, level, valid_from, issued_by)"
            " SELECT c.user_id, c.instrument_id, c.level, c.valid_from, 'device_sim'"
            " FROM unnest(%s::text[], %s::text[], %s::text[], %s::date[])"
            "  AS c(user_id, instrument_id, level, valid_from)"
            " WHERE NOT EXISTS (SELECT 1 FROM certification x WHERE x.user_id = c.user_id"
            "  AND x.instrument_id = c.instrument_id AND x.level = c.level"
            "  AND x.revoked_at IS NULL)",
            ([c.user for c in certifications], [c.instrument for c in certifications],
             [c.level for c in certifications], [c.valid_from for c in certifications]),
        )
        return cur.rowcount
