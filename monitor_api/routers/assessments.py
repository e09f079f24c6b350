"""Assessments: the evaluation office's mark (0-100, with a note) for what the platform cannot
measure, per top-level institution and year. Admins enter them (evaluator tokens read the
whole province and write nothing); the evaluation weighs them (docs/metrics.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from monitor_api.auth import Admin, Evaluator
from monitor_api.db import Conn, DbConn, fetch_all, fetch_one
from monitor_api.errors import BadRequest, NotFound
from monitor_api.exports import FILE_RESPONSES, Format, Lang, render
from monitor_api.schemas import Limit, Offset, Year, page_of
from monitor_api.schemas_evaluation import Assessment, AssessmentIn, Assessments

router = APIRouter(tags=["evaluation"])

_COLUMNS = [
    ("institution_id", "单位", "Institution"), ("name", "名称", "Name"),
    ("mark", "评审分(百分制)", "Mark (of 100)"), ("note", "评审意见", "Note"),
    ("assessed_by", "评审人", "Assessed by"), ("assessed_at", "评审时间", "Assessed at"),
]
_SELECT = """
SELECT a.year, a.institution_id, i.name, a.mark, a.note, a.assessed_by, a.assessed_at
FROM assessment a JOIN institution i ON i.id = a.institution_id
"""


async def marks(conn: Conn, year: int) -> dict[str, float]:
    """The year's marks by top-level institution."""
    rows = await fetch_all(conn, "SELECT institution_id, mark FROM assessment WHERE year = %s",
                           (year,))
    return {r["institution_id"]: float(r["mark"]) for r in rows}


@router.get("/evaluation/{year}/assessments", response_model=Assessments, responses=FILE_RESPONSES)
async def list_assessments(
    conn: DbConn, _: Evaluator, year: Year, format: Format = Format.JSON,
    lang: Lang = Lang.BOTH, limit: Limit = 1000, offset: Offset = 0,
) -> Response | dict[str, Any]:
    """The year's assessments, by institution."""
    rows = await fetch_all(conn, _SELECT + " WHERE a.year = %s ORDER BY a.institution_id",
                           (year,))
    body = page_of(rows, limit=limit, offset=offset, year=year)
    return await render(body, rows, _COLUMNS, format, lang, f"assessments-{year}")


@router.put("/evaluation/{year}/assessments/{institution_id}", response_model=Assessment)
async def assess(
    conn: DbConn, caller: Admin, year: Year, institution_id: str, body: AssessmentIn
) -> dict[str, Any]:
    """Enter or replace a top-level institution's mark for the year."""
    unit = await fetch_one(conn, "SELECT parent_id FROM institution WHERE id = %s",
                           (institution_id,))
    if unit is None:
        raise NotFound(f"no institution {institution_id!r}")
    if unit["parent_id"] is not None:
        raise BadRequest(f"{institution_id!r} is a sub-unit: institutions are evaluated as a"
                         " whole, assess the top-level institution")
    await conn.execute(
        "INSERT INTO assessment (year, institution_id, mark, note, assessed_by)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (year, institution_id) DO UPDATE SET"
        " mark = EXCLUDED.mark, note = EXCLUDED.note, assessed_by = EXCLUDED.assessed_by,"
        " assessed_at = now()",
        (year, institution_id, body.mark, body.note, caller.signature))
    row = await fetch_one(conn, _SELECT + " WHERE a.year = %s AND a.institution_id = %s",
                          (year, institution_id))
    assert row is not None
    return row


@router.delete("/evaluation/{year}/assessments/{institution_id}", status_code=204)
async def withdraw_assessment(
    conn: DbConn, _: Admin, year: Year, institution_id: str
) -> Response:
    """Withdraw a mark: the institution scores no assessed points for the year."""
    cur = await conn.execute(
        "DELETE FROM assessment WHERE year = %s AND institution_id = %s", (year, institution_id))
    if cur.rowcount == 0:
        raise NotFound(f"no assessment of {institution_id!r} for {year}")
    return Response(status_code=204)
