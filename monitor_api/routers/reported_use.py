"""Units report their instruments' hours for a year (CSV, as their spreadsheets had them);
evaluators read the reports against what the platform measured (docs/metrics.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from monitor_api.auth import Manager, ReportReader
from monitor_api.csv_import import RowError, csv_text, parse_rows
from monitor_api.db import DbConn, DbPool, Settings, fetch_all
from monitor_api.errors import BadRequest, Conflict
from monitor_api.evaluation import evaluated_year
from monitor_api.exports import FILE_RESPONSES, Format, Lang, render
from monitor_api.report import GroupBy, summarise
from monitor_api.reported_use import COLUMNS, FLAGGED, LABELS, compare
from monitor_api.routers.reports import scope, utilisation_rows
from monitor_api.schemas import ImportResult, Limit, Offset, Year, page_of
from monitor_api.schemas_evaluation import ReportedAgainstMeasured, ReportedUseIn

router = APIRouter(tags=["evaluation"])

_UPSERT = """
INSERT INTO reported_use (year, instrument_id, effective_hours, external_hours, reported_by)
VALUES (%(year)s, %(instrument_id)s, %(effective_hours)s, %(external_hours)s, %(by)s)
ON CONFLICT (year, instrument_id) DO UPDATE SET effective_hours = EXCLUDED.effective_hours,
    external_hours = EXCLUDED.external_hours, reported_by = EXCLUDED.reported_by,
    reported_at = now()
"""


@router.post(
    "/evaluation/{year}/reported-use",
    response_model=ImportResult,
    openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {
        "schema": {"type": "string"},
        "example": "instrument_id,effective_hours,external_hours\nnmr-600,1800,300\n"}}}},
    responses={422: {"description": "Bad rows, each with its line number and reason"}},
)
async def report_use(
    request: Request, conn: DbConn, caller: Manager, year: Year
) -> dict[str, int]:
    """Report the year's hours of your instruments (UTF-8 CSV: ``instrument_id``,
    ``effective_hours``, optional ``external_hours``); a later report of an instrument
    replaces the earlier. Every bad line is reported; nothing is stored unless all pass.
    A year not begun takes no report (409), and a year under way no more hours than it has
    had so far."""
    evaluated = evaluated_year(year)
    if evaluated.now < evaluated.lo:
        raise Conflict(f"{year} has not begun: report its hours once they are used")
    so_far = (min(evaluated.now, evaluated.hi) - evaluated.lo).total_seconds() / 3600
    parsed = await run_in_threadpool(
        parse_rows, await csv_text(request), ReportedUseIn,
        required=("instrument_id", "effective_hours"), key="instrument_id")
    errors = list(parsed.errors)
    owners = {r["id"]: r["institution_id"] for r in await fetch_all(
        conn, "SELECT id, institution_id FROM instrument WHERE id = ANY(%s)",
        ([item.instrument_id for _, item in parsed.rows],))}
    for line, item in parsed.rows:
        if item.effective_hours > so_far:
            errors.append(RowError(line, f"effective_hours {item.effective_hours} exceed the"
                                         f" {so_far:.0f} hours {year} has had so far"))
        if item.instrument_id not in owners:
            errors.append(RowError(line, f"unknown instrument {item.instrument_id!r}"))
        elif not caller.may_manage(owners[item.instrument_id]):
            errors.append(RowError(
                line, f"instrument {item.instrument_id!r} belongs to another institution"))
    if errors:
        errors.sort(key=lambda e: e.line)
        raise BadRequest(f"{len(errors)} bad row(s); nothing was stored",
                         details=[{"line": e.line, "reason": e.reason} for e in errors])
    if not parsed.rows:
        raise BadRequest("the file has no rows")
    async with conn.cursor() as cur:
        await cur.executemany(_UPSERT, [
            {**item.model_dump(), "year": year, "by": caller.signature}
            for _, item in parsed.rows])
    return {"imported": len(parsed.rows)}


@router.get("/evaluation/{year}/reported-use", response_model=ReportedAgainstMeasured,
            responses=FILE_RESPONSES)
async def reported_against_measured(
    pool: DbPool, caller: ReportReader, settings: Settings, year: Year,
    format: Format = Format.JSON, lang: Lang = Lang.BOTH,
    limit: Limit = 1000, offset: Offset = 0,
) -> Response | dict[str, Any]:
    """Each reported instrument's hours next to the measured ones, flagged when they differ
    by more than the tolerance; a lab manager sees their own institution's."""
    evaluated = evaluated_year(year)
    async with pool.connection() as conn:
        institutions = await scope(conn, caller, None)
        reports = await fetch_all(
            conn,
            "SELECT r.*, i.name, i.institution_id, u.name AS institution_name,"
            " i.monitored_since FROM reported_use r"
            " JOIN instrument i ON i.id = r.instrument_id"
            " JOIN institution u ON u.id = i.institution_id"
            " WHERE r.year = %(year)s"
            "   AND (%(mine)s::text[] IS NULL OR i.institution_id = ANY(%(mine)s))",
            {"year": year, "mine": institutions})
    rows = await utilisation_rows(pool, settings, start=evaluated.start,
                                  end=evaluated.end, institutions=institutions,
                                  with_availability=False)
    measured = {f["key"]: f for f in summarise(rows, group_by=GroupBy.INSTRUMENT)}
    items = compare(reports, measured, year_start=evaluated.lo, rules=settings.evaluation)
    flagged = sum(1 for i in items if i["finding"] in FLAGGED or i["external_finding"] in FLAGGED)
    body = page_of(items, limit=limit, offset=offset, year=year, flagged=flagged)
    return await render(body, items, COLUMNS, format, lang, f"reported-use-{year}",
                        labels=LABELS)
