"""Training certifications: who may operate which instrument, alone or assisted, and when."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from monitor_api.auth import Caller, Manager
from monitor_api.db import DbConn, fetch_one
from monitor_api.errors import Conflict, NotFound
from monitor_api.queries.common import Where, page
from monitor_api.routers.registry import check_manages, instrument_row
from monitor_api.schemas import Limit, Offset, Page
from monitor_api.schemas_bookings import Certification, CertificationIn

router = APIRouter(tags=["certifications"])

_HELD = """
SELECT id FROM certification
WHERE user_id = %(user_id)s AND instrument_id = %(instrument_id)s AND level = %(level)s
  AND revoked_at IS NULL
  AND tstzrange(valid_from, valid_until) && tstzrange(%(valid_from)s, %(valid_until)s)
ORDER BY id LIMIT 1
"""
"""A certification in force at the same level for part of the period asked: issuing another
would only duplicate it (another level, an upgrade from assisted to self, is no duplicate)."""


@router.post("/certifications", response_model=Certification, status_code=201)
async def issue_certification(
    conn: DbConn, caller: Manager, body: CertificationIn
) -> dict[str, Any]:
    instrument = await instrument_row(conn, body.instrument_id)
    check_manages(caller, instrument["institution_id"])
    held = await fetch_one(conn, _HELD, body.model_dump())
    if held is not None:  # a second click, say: the first one already grants it
        raise Conflict(
            f"user {body.user_id} already holds a {body.level} certification for"
            f" {body.instrument_id} over part of that period (certification {held['id']}):"
            " revoke it first to issue it anew")
    row = await fetch_one(
        conn,
        "INSERT INTO certification (user_id, instrument_id, level, valid_from, valid_until,"
        " issued_by) VALUES (%(user_id)s, %(instrument_id)s, %(level)s, %(valid_from)s,"
        " %(valid_until)s, %(issued_by)s) RETURNING *",
        body.model_dump(),
    )
    assert row is not None
    return row


@router.post("/certifications/{certification_id}/revoke", response_model=Certification)
async def revoke_certification(
    conn: DbConn, caller: Manager, certification_id: int
) -> dict[str, Any]:
    row = await fetch_one(
        conn,
        "SELECT c.*, i.institution_id FROM certification c"
        " JOIN instrument i ON i.id = c.instrument_id WHERE c.id = %s",
        (certification_id,),
    )
    if row is None:
        raise NotFound(f"no certification {certification_id}")
    check_manages(caller, row["institution_id"])
    if row["revoked_at"] is not None:
        raise Conflict(f"certification {certification_id} is already revoked")
    new = await fetch_one(
        conn, "UPDATE certification SET revoked_at = now() WHERE id = %s RETURNING *",
        (certification_id,),
    )
    assert new is not None
    return new


@router.get("/certifications", response_model=Page[Certification])
async def list_certifications(
    conn: DbConn,
    caller: Caller,
    user_id: str | None = None,
    instrument_id: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Users see their own; lab managers those of their institution's instruments."""
    where = Where()
    where.visible_to(caller, user_column="c.user_id")
    if user_id is not None:
        where.add("c.user_id = %(user)s", user=user_id)
    if instrument_id is not None:
        where.add("c.instrument_id = %(inst)s", inst=instrument_id)
    return await page(
        conn,
        select="SELECT c.* FROM certification c JOIN instrument i ON i.id = c.instrument_id"
        " WHERE {where}",
        where=where, order="c.id", limit=limit, offset=offset,
    )
