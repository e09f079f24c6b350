"""Publication of a year's evaluation: an admin reviews the live results, then publishes
them. What is published is frozen (late data, retention and changed assessments no longer
move it) and is what every unit's lab managers read: the whole ranking, their own
instruments' results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import TypeAdapter

from monitor_api.auth import Admin, Reader, ReportAdmin
from monitor_api.db import Conn, DbConn, Settings, fetch_all, fetch_one
from monitor_api.errors import Conflict, NotFound
from monitor_api.evaluation import (
    INSTITUTION_COLUMNS,
    INSTRUMENT_COLUMNS,
    LABELS,
    evaluated_year,
    first_year,
    grade_counts,
)
from monitor_api.exports import FILE_RESPONSES, Format, Lang, render
from monitor_api.queries.common import Where, page
from monitor_api.routers.evaluation import ranked, scored_year
from monitor_api.schemas import Limit, Offset, Page, Year, page_of
from monitor_api.schemas_evaluation import (
    EvaluatedInstitution,
    EvaluatedInstrument,
    Publication,
    PublicationIn,
    PublishedInstitutions,
    PublishedInstruments,
)
from monitor_api.settings import EvaluationRules

router = APIRouter(tags=["evaluation"])

_SUMMARIES = """
SELECT year, note, published_by, published_at, rules,
       jsonb_array_length(institutions) AS institutions,
       jsonb_array_length(instruments) AS instruments
FROM evaluation_publication WHERE {where}
"""


def _unpublished(year: int) -> NotFound:
    return NotFound(f"the evaluation of {year} has not been published")


async def _summary(conn: Conn, year: int) -> dict[str, Any]:
    found = await _summaries(conn, year=year, limit=1, offset=0)
    if not found["items"]:
        raise _unpublished(year)
    return dict(found["items"][0])


async def _summaries(conn: Conn, *, year: int | None, limit: int, offset: int) -> dict[str, Any]:
    where = Where()
    if year is not None:
        where.add("year = %(year)s", year=year)
    return await page(conn, select=_SUMMARIES, where=where, order="year DESC", limit=limit,
                      offset=offset)


@router.put("/evaluation/{year}/publication", response_model=Publication)
async def publish(
    request: Request, caller: ReportAdmin, settings: Settings, year: Year,
    body: PublicationIn,
) -> dict[str, Any]:
    """Publish the year's results as they stand now (again: replace them). Only a year that
    is over: until then its results still move."""
    evaluated = evaluated_year(year)
    if evaluated.now < evaluated.hi:
        raise Conflict(f"{year} is not over: its results can be published from"
                       f" {year + 1}-01-01 (Asia/Shanghai)")
    instruments, institutions = ranked(*await scored_year(request, year), settings.evaluation)
    async with request.app.state.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO evaluation_publication"
            " (year, note, published_by, rules, institutions, instruments)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (year) DO UPDATE SET"
            " note = EXCLUDED.note, published_by = EXCLUDED.published_by,"
            " published_at = now(), rules = EXCLUDED.rules,"
            " institutions = EXCLUDED.institutions, instruments = EXCLUDED.instruments",
            (year, body.note, caller.signature,
             Jsonb(settings.evaluation.model_dump()), Jsonb(jsonable_encoder(institutions)),
             Jsonb(jsonable_encoder(instruments))))
        return await _summary(conn, year)


@router.get("/evaluation/publications", response_model=Page[Publication])
async def publications(
    conn: DbConn, _: Reader,
    year: Annotated[int | None, Query(ge=2000, le=2100, description="Only this year.")] = None,
    limit: Limit = 100, offset: Offset = 0,
) -> dict[str, Any]:
    """The years published, latest first: asking for a year here answers an empty list where
    ``/evaluation/{year}/publication`` answers 404."""
    return await _summaries(conn, year=year, limit=limit, offset=offset)


@router.get("/evaluation/{year}/publication", response_model=Publication)
async def publication(conn: DbConn, _: Reader, year: Year) -> dict[str, Any]:
    """Whether and when the year's results were published, and by which rules."""
    return await _summary(conn, year)


@router.delete("/evaluation/{year}/publication", status_code=204)
async def withdraw_publication(conn: DbConn, _: Admin, year: Year) -> Response:
    """Withdraw the published results (lab managers see none for the year)."""
    cur = await conn.execute("DELETE FROM evaluation_publication WHERE year = %s", (year,))
    if cur.rowcount == 0:
        raise _unpublished(year)
    return Response(status_code=204)


_PUBLISHED_ITEMS: dict[str, TypeAdapter[Any]] = {
    "institutions": TypeAdapter(list[EvaluatedInstitution]),
    "instruments": TypeAdapter(list[EvaluatedInstrument]),
}


async def _published(conn: Conn, year: int, part: str) -> dict[str, Any]:
    """The frozen results, read back into the types they were published with (times as
    datetimes, so files write them in Asia/Shanghai like the live results)."""
    row = await fetch_one(conn, sql.SQL(
        "SELECT published_at, rules, {} AS items FROM evaluation_publication WHERE year = %s"
    ).format(sql.Identifier(part)), (year,))
    if row is None:
        raise _unpublished(year)
    if part == "instruments" and any("institution_name" not in i for i in row["items"]):
        # published before instruments carried their unit's name: named as registered now
        names = {r["id"]: r["name"] for r in await fetch_all(
            conn, "SELECT id, name FROM institution")}
        for item in row["items"]:
            item.setdefault("institution_name", names.get(item["institution_id"], ""))
    items = _PUBLISHED_ITEMS[part].validate_python(row["items"])
    return {**row, "items": [item.model_dump() for item in items]}


def _published_page(found: dict[str, Any], items: list[dict[str, Any]], *, year: int,
                    limit: int, offset: int, **fields: Any) -> dict[str, Any]:
    """A page of published results, with the years they cover by the rules they were scored
    by, and the list's own ``fields``."""
    rules = EvaluationRules.model_validate(found["rules"])
    return page_of(items, limit=limit, offset=offset, year=year,
                   first_year=first_year(year, rules.cycle_years),
                   published_at=found["published_at"], **fields)


@router.get("/evaluation/{year}/published/institutions", response_model=PublishedInstitutions,
            responses=FILE_RESPONSES)
async def published_institutions(
    conn: DbConn, _: Reader, year: Year, format: Format = Format.JSON,
    lang: Lang = Lang.BOTH, limit: Limit = 1000, offset: Offset = 0,
) -> Response | dict[str, Any]:
    """The published ranking of institutions, for every unit to see."""
    found = await _published(conn, year, "institutions")
    items = found["items"]
    body = _published_page(found, items, year=year, limit=limit, offset=offset)
    return await render(body, items, INSTITUTION_COLUMNS, format, lang,
                        f"evaluation-{year}-institutions-published", labels=LABELS,
                        sheet=f"published-{year}-institutions")


@router.get("/evaluation/{year}/published/instruments", response_model=PublishedInstruments,
            responses=FILE_RESPONSES)
async def published_instruments(
    conn: DbConn, caller: Reader, year: Year, format: Format = Format.JSON,
    lang: Lang = Lang.BOTH, limit: Limit = 1000, offset: Offset = 0,
) -> Response | dict[str, Any]:
    """The published instrument results; a lab manager's own instruments only."""
    found = await _published(conn, year, "instruments")
    items = [i for i in found["items"]
             if caller.reads_all or i["institution_id"] in caller.institutions]
    body = _published_page(found, items, year=year, limit=limit, offset=offset,
                           grades=grade_counts(items))
    return await render(body, items, INSTRUMENT_COLUMNS, format, lang,
                        f"evaluation-{year}-instruments-published", labels=LABELS,
                        sheet=f"published-{year}-instruments")
