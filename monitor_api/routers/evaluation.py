"""Annual evaluation and the lists the province publishes: low use, silent, overdue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from monitor_api.auth import Evaluator, ReportEvaluator
from monitor_api.categories import category_name
from monitor_api.db import Conn, DbConn, DbPool, Pool, Settings, fetch_all
from monitor_api.duplicate_review import COLUMNS as REVIEW_COLUMNS
from monitor_api.duplicate_review import LABELS as REVIEW_LABELS
from monitor_api.duplicate_review import review
from monitor_api.evaluation import (
    INSTITUTION_COLUMNS,
    INSTRUMENT_COLUMNS,
    LABELS,
    EvaluatedYear,
    Span,
    due_on_platform,
    evaluated_span,
    evaluated_year,
    first_year,
    grade_counts,
    rounded,
    score_institutions,
    score_instrument,
    subject_to_evaluation,
)
from monitor_api.exports import FILE_RESPONSES, UNIT_NAME, Format, Lang, render
from monitor_api.queries.common import ROOTS_CTE, check_filters
from monitor_api.queries.faults import in_fault
from monitor_api.report import GroupBy, summarise
from monitor_api.routers.assessments import marks
from monitor_api.routers.registry import overdue_list, today
from monitor_api.routers.reports import utilisation_rows
from monitor_api.schemas import CATEGORY_PREFIX, Day, Limit, Offset, Year, page_of
from monitor_api.schemas_evaluation import (
    DuplicateReview,
    InstitutionEvaluation,
    InstrumentEvaluation,
    LowUtilisation,
    OverdueRegistrations,
    SilentInstruments,
)
from monitor_api.settings import ApiSettings, EvaluationRules
from monitor_api.single_flight import SingleFlight

router = APIRouter(tags=["evaluation"])


_SILENT_COLUMNS = [
    ("instrument_id", "仪器编号", "Instrument"), ("name", "名称", "Name"),
    ("institution_id", "单位", "Institution"), UNIT_NAME,
    ("last_data", "最后数据时间", "Last data"),
    ("silent_days", "静默天数", "Days silent"),
    ("awaiting_disposal", "待报废", "Awaiting disposal"),
]
_NEVER = "never"
"""The silent list's last data of an instrument never heard from, in a file."""
_LOW_COLUMNS = [
    ("key", "仪器编号", "Instrument"), ("name", "名称", "Name"),
    ("institution_id", "单位", "Institution"), UNIT_NAME,
    ("effective_hours", "有效工作机时(h)", "Effective machine hours"),
    ("external_hours", "对外服务机时(h)", "External service hours"),
    ("threshold_hours", "门槛机时(h)", "Threshold hours"),
]
_OVERDUE_COLUMNS = [
    ("instrument_id", "仪器编号", "Instrument"), ("name", "名称", "Name"),
    ("institution_id", "单位", "Institution"), UNIT_NAME,
    ("value_rmb", "原值(元)", "Value (RMB)"),
    ("accepted_on", "验收日期", "Accepted"), ("deadline", "入网期限", "Deadline"),
    ("deadline_estimated", "期限为估算", "Deadline estimated"),
    ("networked_on", "入网日期", "Networked"),
    ("working_days_late", "逾期工作日", "Working days late"),
]


async def _spans(conn: Conn, year: EvaluatedYear, working_days: int) -> dict[str, Span]:
    """Each instrument's span of the year (``evaluated_span``); those on the platform only
    after it have none and are not evaluated for it."""
    spans = {}
    for r in await fetch_all(
        conn, "SELECT id, monitored_since, networked_on, accepted_on FROM instrument"
    ):
        due = due_on_platform(r["networked_on"], r["accepted_on"], working_days)
        span = evaluated_span(year, since=r["monitored_since"], due=due)
        if span is not None:
            spans[r["id"]] = span
    return spans


Scored = tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]
"""Every instrument's scores (shared: callers copy before they change anything) and the
institutions' names and tiers by id."""


async def scored_year(request: Request, year: int, *, years: int | None = None) -> Scored:
    """The scores of the evaluation named by ``year`` over ``years`` calendar years (default:
    the configured cycle), computed once for the requests that ask at the same time."""
    settings: ApiSettings = request.app.state.settings
    years = years or settings.evaluation.cycle_years
    flights: SingleFlight[tuple[int, int], Scored] = request.app.state.evaluations
    return await flights.run((year, years), lambda: _score(request.app.state.pool, settings,
                                                           year, years))


async def _score(pool: Pool, settings: ApiSettings, year: int, years: int) -> Scored:
    evaluated = evaluated_year(year, years)
    rows = await utilisation_rows(pool, settings, start=evaluated.start,
                                  end=evaluated.end, institutions=None)
    rows = [r for r in rows if subject_to_evaluation(r["value_rmb"], settings.evaluation)]
    up = {r["instrument_id"]: r["up_s"] for r in rows}
    seconds = {r["instrument_id"]: (float(r["effective_s"] or 0), float(r["external_s"] or 0))
               for r in rows}
    figures = {f["key"]: f for f in summarise(rows, group_by=GroupBy.INSTRUMENT)}
    async with pool.connection() as conn:
        spans = await _spans(conn, evaluated, settings.compliance_working_days)
        faulty = await in_fault(conn, at=evaluated.until, timeout=settings.heartbeat_timeout)
        registry = {
            r["id"]: r for r in await fetch_all(
                conn,
                # the top-level institution's tier: a sub-unit serves as its institution does
                ROOTS_CTE + "SELECT i.*, u.name AS institution_name, r.root AS root_id,"
                " ii.tier FROM instrument i"
                " JOIN institution u ON u.id = i.institution_id"
                " JOIN roots r ON r.id = i.institution_id"
                " JOIN institution ii ON ii.id = r.root",
            )
        }
        # late in the evaluated years: still not networked, or networked late during them
        # (a registration late years ago is not held against every later year)
        overdue = {o["instrument_id"] for o in await overdue_list(
            conn, None, settings.compliance_threshold_rmb, settings.compliance_working_days,
            min(evaluated.end, today()),
        ) if o["networked_on"] is None or o["networked_on"] >= evaluated.start}
        institutions = {r["id"]: r for r in await fetch_all(
            conn, "SELECT id, name, tier FROM institution")}
        assessed = await marks(conn, year)
    scored = [
        score_instrument(figures[i], registry[i], seconds=seconds[i], up_s=up[i],
                         span=spans[i],
                         fault_since=faulty.get(i), overdue=i in overdue,
                         mark=assessed.get(registry[i]["root_id"]), rules=settings.evaluation)
        for i in sorted(figures) if i in spans
    ]
    return scored, institutions


def ranked(
    scored: list[dict[str, Any]], institutions: dict[str, dict[str, Any]],
    rules: EvaluationRules,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The instruments (highest score first, ties on sharing, then id) and the institutions
    ranked, scores to two decimals: what the evaluation lists and publishes."""
    instruments = rounded(scored)
    instruments.sort(key=lambda r: (-r["score"], -r["sharing"], r["instrument_id"]))
    return instruments, rounded(score_institutions(scored, institutions, rules))


@router.get("/evaluation/rules", response_model=EvaluationRules)
async def evaluation_rules(_: Evaluator, settings: Settings) -> EvaluationRules:
    """The weights and thresholds in force (docs/metrics.md explains each)."""
    return settings.evaluation


@router.get("/evaluation/{year}/instruments", response_model=InstrumentEvaluation,
            responses=FILE_RESPONSES)
async def evaluate_instruments(
    request: Request, _: ReportEvaluator, year: Year,
    format: Format = Format.JSON, lang: Lang = Lang.BOTH,
    limit: Limit = 1000, offset: Offset = 0,
) -> Response | dict[str, Any]:
    """Score and grade (优秀 / 良好 / 合格 / 不合格) of every instrument for one year (or the
    cycle of years ending with it)."""
    rules = request.app.state.settings.evaluation
    instruments, _institutions = ranked(*await scored_year(request, year), rules)
    body = page_of(instruments, limit=limit, offset=offset, year=year,
                   first_year=first_year(year, rules.cycle_years),
                   grades=grade_counts(instruments))
    return await render(body, instruments, INSTRUMENT_COLUMNS, format, lang,
                        f"evaluation-{year}-instruments", labels=LABELS)


@router.get("/evaluation/{year}/institutions", response_model=InstitutionEvaluation,
            responses=FILE_RESPONSES)
async def evaluate_institutions(
    request: Request, _: ReportEvaluator, settings: Settings, year: Year,
    format: Format = Format.JSON, lang: Lang = Lang.BOTH,
    limit: Limit = 1000, offset: Offset = 0,
) -> Response | dict[str, Any]:
    """Institutions ranked by the mean score of their instruments (ties: sharing score), with
    the star rating of service and voucher institutions."""
    _instruments, institutions = ranked(*await scored_year(request, year), settings.evaluation)
    body = page_of(institutions, limit=limit, offset=offset, year=year,
                   first_year=first_year(year, settings.evaluation.cycle_years))
    return await render(body, institutions, INSTITUTION_COLUMNS, format, lang,
                        f"evaluation-{year}-institutions", labels=LABELS)


@router.get("/evaluation/{year}/low-utilisation", response_model=LowUtilisation,
            responses=FILE_RESPONSES)
async def low_utilisation(
    pool: DbPool, _: ReportEvaluator, settings: Settings, year: Year,
    below_hours: Annotated[float | None, Query(ge=0, le=8784, allow_inf_nan=False)] = None,
    format: Format = Format.JSON, lang: Lang = Lang.BOTH,
    limit: Limit = 1000, offset: Offset = 0,
) -> Response | dict[str, Any]:
    """Instruments evaluated for the year whose effective hours stay below the threshold, pro
    rata for the part of the year each was on the platform."""
    evaluated = evaluated_year(year, settings.evaluation.cycle_years)
    yearly = below_hours if below_hours is not None else settings.evaluation.low_utilisation_hours
    threshold = yearly * evaluated.fraction
    rows = await utilisation_rows(pool, settings, start=evaluated.start,
                                  end=evaluated.end, institutions=None,
                                  with_availability=False)
    rows = [r for r in rows if subject_to_evaluation(r["value_rmb"], settings.evaluation)]
    async with pool.connection() as conn:
        spans = await _spans(conn, evaluated, settings.compliance_working_days)
    target = {i: yearly * span.fraction for i, span in spans.items()}
    # compared unrounded (33.332 h is below 33.3333 h), shown to two decimals
    below = {r["instrument_id"] for r in rows if r["instrument_id"] in target
             and float(r["effective_s"] or 0) / 3600 < target[r["instrument_id"]]}
    owner = {r["instrument_id"]: r for r in rows}
    low = [{**f, "institution_id": owner[f["key"]]["institution_id"],
            "institution_name": owner[f["key"]]["institution_name"],
            "threshold_hours": round(target[f["key"]], 2)}
           for f in summarise(rows, group_by=GroupBy.INSTRUMENT)
           if f["key"] in below]
    body = page_of(low, limit=limit, offset=offset, year=year,
                   first_year=evaluated.start.year, below_hours=round(threshold, 2))
    return await render(body, low, _LOW_COLUMNS, format, lang, f"low-utilisation-{year}")


@router.get("/evaluation/silent", response_model=SilentInstruments, responses=FILE_RESPONSES)
async def silent_instruments(
    conn: DbConn, _: Evaluator, settings: Settings,
    days: Annotated[int | None, Query(ge=1, le=3650)] = None,
    format: Format = Format.JSON, lang: Lang = Lang.BOTH,
    limit: Limit = 1000, offset: Offset = 0,
) -> Response | dict[str, Any]:
    """Instruments with no data, or an offline gateway, for more than ``days`` days."""
    n = days if days is not None else settings.evaluation.silent_days
    rows = await fetch_all(
        conn,
        """
        SELECT i.id AS instrument_id, i.name, i.institution_id, u.name AS institution_name,
               i.awaiting_disposal,
               CASE WHEN g.online IS FALSE THEN least(s.last_ts, g.changed_at)
                    ELSE s.last_ts END AS last_data
        FROM instrument i
        JOIN institution u ON u.id = i.institution_id
        LEFT JOIN instrument_status s ON s.instrument_id = i.id
        LEFT JOIN gateway g ON g.id = s.gateway_id
        WHERE s.instrument_id IS NULL OR s.last_ts < now() - %(span)s
           OR (g.online IS FALSE AND g.changed_at < now() - %(span)s)
        ORDER BY last_data NULLS FIRST, i.id
        """,
        {"span": timedelta(days=n)},
    )
    now = datetime.now(UTC)
    for r in rows:
        r["silent_days"] = (now - r["last_data"]).days if r["last_data"] else None
    body = page_of(rows, limit=limit, offset=offset, days=n)
    # a file says in words what JSON's null last_data means, as the dashboard does
    worded = [{**r, "last_data": r["last_data"] or _NEVER} for r in rows]
    return await render(body, worded, _SILENT_COLUMNS, format, lang, f"silent-{n}d",
                        labels={"last_data": {_NEVER: ("从未上报", "never reported")}})


@router.get("/evaluation/overdue-registrations", response_model=OverdueRegistrations,
            responses=FILE_RESPONSES)
async def overdue_registrations(
    conn: DbConn, _: Evaluator, settings: Settings, as_of: Day | None = None,
    format: Format = Format.JSON, lang: Lang = Lang.BOTH,
    limit: Limit = 1000, offset: Offset = 0,
) -> Response | dict[str, Any]:
    """Instruments at or above the threshold networked late or not yet (working days)."""
    items = await overdue_list(conn, None, settings.compliance_threshold_rmb,
                               settings.compliance_working_days, as_of)
    body = page_of(items, limit=limit, offset=offset)
    return await render(body, items, _OVERDUE_COLUMNS, format, lang,
                        f"overdue-registrations-{as_of or today()}")


@router.get("/evaluation/{year}/duplicate-review", response_model=DuplicateReview,
            responses=FILE_RESPONSES)
async def duplicate_review(
    request: Request, _: ReportEvaluator, year: Year,
    category: Annotated[str, Query(
        pattern=CATEGORY_PREFIX,
        description="Category code of the instrument to buy (6 digits), or its level-1 or"
        " level-2 class (2 or 4 digits).")],
    region: Annotated[str | None, Query(
        max_length=100, description="Only instruments in this region.")] = None,
    format: Format = Format.JSON, lang: Lang = Lang.BOTH,
    limit: Limit = 1000, offset: Offset = 0,
) -> Response | dict[str, Any]:
    """Duplicate-purchase review (查重评议): the instruments of a class, how much each was
    used in the year, and whether any that outside users may book had hours to spare."""
    async with request.app.state.pool.connection() as conn:
        # else its empty review would read as "buying is justified"
        await check_filters(conn, region=region, category=category)
    scored, _institutions = await scored_year(request, year, years=1)  # per calendar year
    async with request.app.state.pool.connection() as conn:
        registry = {r["id"]: r for r in await fetch_all(
            conn,
            ROOTS_CTE + "SELECT i.id, r.region, i.category_code, i.value_rmb"
            " FROM instrument i JOIN roots r ON r.id = i.institution_id"
            " WHERE i.category_code LIKE %(category)s"
            "   AND (%(region)s::text IS NULL OR r.region = %(region)s)",
            {"category": category + "%", "region": region},
        )}
    found = review(scored, registry)
    items = found.pop("items")
    name = category_name(category)
    body = page_of(items, limit=limit, offset=offset, year=year, category=category,
                   category_name=name and name.zh, category_name_en=name and name.en,
                   region=region, **found)
    return await render(body, items, REVIEW_COLUMNS, format, lang,
                        f"duplicate-review-{year}-{category}", labels=REVIEW_LABELS)
