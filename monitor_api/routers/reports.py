"""Utilisation reports per instrument, unit, institution, category or region, and the register
of service records."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from instrushare.protocol import Identifier
from monitor_api.auth import Principal, ReportReader
from monitor_api.db import Conn, DbPool, Pool, Settings, fetch_all
from monitor_api.errors import BadRequest, Forbidden, Refusal
from monitor_api.exports import FILE_RESPONSES, Format, Lang, render
from monitor_api.queries.common import check_filters, named_tree
from monitor_api.queries.metrics import per_instrument
from monitor_api.report import COLUMNS, GroupBy, period_bounds, summarise
from monitor_api.routers.registry import visible_instrument
from monitor_api.schemas import Category, Day, Limit, Offset, Page, page_of
from monitor_api.schemas_report import Figures, ServiceRecordRow
from monitor_api.service_records import COLUMNS as RECORD_COLUMNS
from monitor_api.service_records import LABELS as RECORD_LABELS
from monitor_api.service_records import service_records
from monitor_api.settings import ApiSettings

router = APIRouter(tags=["reports"])

MAX_DAYS = 5 * 366


class UtilisationReport(Page[Figures]):
    start: date
    end: date
    group_by: GroupBy


class ServiceRecordReport(Page[ServiceRecordRow]):
    start: date
    end: date


async def scope(conn: Conn, caller: Principal, institution_id: str | None) -> list[str] | None:
    """Institutions a report covers: ``institution_id`` and its sub-units (``named_tree``),
    None for all; lab managers only their own tree."""
    if institution_id is None:
        return None if caller.reads_all else sorted(caller.institutions)
    if not caller.reads_all and institution_id not in caller.institutions:
        raise Forbidden(f"institution {institution_id!r} is outside your scope")
    return sorted(await named_tree(conn, institution_id))


def _period(start: date, end: date) -> tuple[datetime, datetime]:
    if end < start:
        raise BadRequest("end must not be before start")
    if (end - start).days + 1 > MAX_DAYS:  # both dates included
        raise BadRequest(f"a report covers at most {MAX_DAYS} days;"
                         f" {start} to {end} is {(end - start).days + 1}",
                         details={"max_days": MAX_DAYS}, reason=Refusal.PERIOD_TOO_LONG)
    return period_bounds(start, end)


async def utilisation_rows(
    pool: Pool, settings: ApiSettings, *, start: date, end: date,
    institutions: list[str] | None, category: str | None = None, region: str | None = None,
    with_availability: bool = True,
) -> list[dict[str, Any]]:
    lo, hi = _period(start, end)
    return await per_instrument(
        pool.connection, lo=lo, hi=hi, timeout=settings.heartbeat_timeout,
        grace=settings.no_show_grace, institutions=institutions, category=category,
        region=region, working_days=settings.compliance_working_days,
        with_availability=with_availability, parallel=settings.report_parallelism,
    )


@router.get(
    "/reports/utilisation",
    response_model=UtilisationReport,
    responses=FILE_RESPONSES,
)
async def utilisation(
    pool: DbPool,
    caller: ReportReader,
    settings: Settings,
    start: Annotated[Day, Query(description="First day (Asia/Shanghai), included")],
    end: Annotated[Day, Query(description="Last day (Asia/Shanghai), included")],
    group_by: GroupBy = GroupBy.INSTRUMENT,
    institution_id: str | None = None,
    category: Category = None,
    category_digits: Annotated[int, Query(ge=2, le=6, multiple_of=2)] = 2,
    region: str | None = None,
    availability: bool = True,
    format: Format = Format.JSON,
    lang: Lang = Lang.BOTH,
    limit: Limit = 1000,
    offset: Offset = 0,
) -> Response | dict[str, Any]:
    """Effective and external hours, openness, availability, bookings and service figures.

    JSON is paged; CSV and XLSX hold every row. Definitions: docs/metrics.md.
    """
    async with pool.connection() as conn:
        institutions = await scope(conn, caller, institution_id)
        await check_filters(conn, region=region, category=category)
    rows = await utilisation_rows(
        pool, settings, start=start, end=end, institutions=institutions,
        category=category, region=region, with_availability=availability,
    )
    names = None
    if group_by in (GroupBy.UNIT, GroupBy.INSTITUTION):
        async with pool.connection() as conn:
            names = {r["id"]: r["name"]
                     for r in await fetch_all(conn, "SELECT id, name FROM institution")}
    items = summarise(rows, group_by=group_by, names=names, category_digits=category_digits)
    body = page_of(items, limit=limit, offset=offset, start=start, end=end,
                   group_by=group_by)
    english = {i["name"]: (i["name"], i["name_en"]) for i in items if i.get("name_en")}
    # the grouping in the file name: the reports of one period by institution, category and
    # instrument are three files, not one name thrice
    return await render(body, items, COLUMNS, format, lang,
                        f"utilisation-{group_by}-{start}-{end}",
                        labels={"name": english})  # a group the platform names in English


@router.get(
    "/reports/service-records",
    response_model=ServiceRecordReport,
    responses=FILE_RESPONSES,
)
async def service_record_register(
    pool: DbPool,
    caller: ReportReader,
    start: Annotated[Day, Query(description="First day (Asia/Shanghai), included")],
    end: Annotated[Day, Query(description="Last day (Asia/Shanghai), included")],
    institution_id: str | None = None,
    instrument_id: Identifier | None = None,
    format: Format = Format.JSON,
    lang: Lang = Lang.BOTH,
    limit: Limit = 1000,
    offset: Offset = 0,
) -> Response | dict[str, Any]:
    """Every approved or completed booking starting in the period, as the national platform
    records services: contract, user type, way, purpose, hours, fee, voucher, rating.

    JSON is paged; CSV and XLSX hold every row, with codes written as words. Definitions:
    docs/metrics.md.
    """
    lo, hi = _period(start, end)
    paged = format is Format.JSON
    async with pool.connection() as conn:
        if instrument_id is not None:  # else a typo would read as "no services"
            await visible_instrument(conn, caller, instrument_id)
        found = await service_records(
            conn, lo=lo, hi=hi, institutions=await scope(conn, caller, institution_id),
            instrument_id=instrument_id, limit=limit if paged else None,
            offset=offset if paged else 0)
    body = {"start": start, "end": end, **found}
    return await render(body, found["items"], RECORD_COLUMNS, format, lang,
                        f"service-records-{start}-{end}", RECORD_LABELS)
