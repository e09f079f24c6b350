"""Registry: institutions and instruments, CSV import, registration compliance."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from psycopg import sql
from starlette.concurrency import run_in_threadpool

from monitor_api.auth import Admin, Caller, Manager, Principal, Reader, Role
from monitor_api.csv_import import COLUMNS, RowError, csv_text, parse_instruments
from monitor_api.db import Conn, DbConn, Settings, fetch_all, fetch_one
from monitor_api.errors import BadRequest, Forbidden, NotFound
from monitor_api.queries.common import Where, check_filters, page, update_columns
from monitor_api.schemas import (
    Category,
    Day,
    ImportResult,
    Institution,
    InstitutionIn,
    InstitutionPatch,
    Instrument,
    InstrumentIn,
    InstrumentPatch,
    Limit,
    Offset,
    Page,
    misdated,
    page_of,
)
from monitor_api.schemas_evaluation import OverdueRegistrations
from monitor_api.settings import TIMEZONE
from monitor_api.workdays import add_working_days, working_days_between

router = APIRouter(tags=["registry"])

_INSTRUMENT_COLUMNS = sorted(COLUMNS - {"id"})
MAX_IMPORT_BYTES = 20 * 2**20
"""A list of 100,000 instruments with the usual columns takes about 6 MiB."""


@router.get("/institutions", response_model=Page[Institution])
async def list_institutions(
    conn: DbConn,
    _: Caller,
    parent_id: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    where = Where()
    if parent_id is not None:
        where.add("parent_id = %(parent)s", parent=parent_id)
    return await page(
        conn, select="SELECT * FROM institution WHERE {where}", where=where, order="id",
        limit=limit, offset=offset,
    )


@router.get("/institutions/{institution_id}", response_model=Institution)
async def get_institution(conn: DbConn, _: Caller, institution_id: str) -> dict[str, Any]:
    row = await fetch_one(conn, "SELECT * FROM institution WHERE id = %s", (institution_id,))
    if row is None:
        raise NotFound(f"no institution {institution_id!r}")
    return row


@router.post("/institutions", response_model=Institution, status_code=201)
async def create_institution(conn: DbConn, _: Admin, body: InstitutionIn) -> dict[str, Any]:
    row = await fetch_one(
        conn,
        "INSERT INTO institution (id, name, parent_id, tier, region, kind)"
        " VALUES (%(id)s, %(name)s, %(parent_id)s, %(tier)s, %(region)s, %(kind)s) RETURNING *",
        body.model_dump(),
    )
    assert row is not None
    return row


@router.patch("/institutions/{institution_id}", response_model=Institution)
async def update_institution(
    conn: DbConn, _: Admin, institution_id: str, body: InstitutionPatch
) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True)  # the database keeps the tree a tree
    row = await update_columns(
        conn, table="institution", key=institution_id, values=values,
        allowed=("name", "parent_id", "tier", "region", "kind"),
    )
    if row is None:
        raise NotFound(f"no institution {institution_id!r}")
    return row


@router.get("/instruments", response_model=Page[Instrument])
async def list_instruments(
    conn: DbConn,
    caller: Caller,
    institution_id: str | None = None,
    category: Category = None,
    open_to_outside: bool | None = None,
    review_pending: Annotated[bool | None, Query(
        description="Only instruments whose catalogue entry awaits review (true) or not.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The registry; a lab manager sees their own institution and its sub-units only, a
    registered user the catalogue: listed instruments as reviewed (filters included)."""
    where = Where()
    where.visible_to(caller, user_column=None)
    if institution_id is not None:
        where.in_tree("i.institution_id", institution_id)
    await check_filters(conn, category=category)
    if category is not None:
        where.add(f"{_catalogue(caller, 'category_code')} LIKE %(cat)s", cat=category + "%")
    if open_to_outside is not None:
        where.add(f"{_catalogue(caller, 'open_to_outside')}::boolean = %(open)s",
                  open=open_to_outside)
    if review_pending is not None:  # users see listed entries, none of them pending
        pending = "false" if caller.role is Role.USER else _PENDING
        where.add(f"({pending}) = %(pending)s", pending=review_pending)
    found = await page(conn, select=_SELECT + " WHERE {where}", where=where, order="i.id",
                       limit=limit, offset=offset)
    return {**found, "items": [as_seen_by(caller, row) for row in found["items"]]}


@router.get("/instruments/{instrument_id}", response_model=Instrument)
async def get_instrument(conn: DbConn, caller: Caller, instrument_id: str) -> dict[str, Any]:
    return await visible_instrument(conn, caller, instrument_id)


async def visible_instrument(conn: Conn, caller: Principal, instrument_id: str) -> dict[str, Any]:
    """The instrument as the caller sees it; 403 for a lab manager of another institution,
    404 for a registered user while it is not listed."""
    instrument = await instrument_row(conn, instrument_id)
    if caller.role is Role.LAB_MANAGER and instrument["institution_id"] not in caller.institutions:
        raise Forbidden(f"instrument {instrument_id!r} belongs to another institution")
    if caller.role is Role.USER and instrument["listing"] is None:
        raise NotFound(f"no instrument {instrument_id!r}")
    return as_seen_by(caller, instrument)


_PENDING = "catalogue_entry(i) IS DISTINCT FROM i.listing"
"""The registry's catalogue fields differ from the listed entry, or it is not listed."""
_SELECT = (f"SELECT i.*, u.name AS institution_name, {_PENDING} AS review_pending"
           " FROM instrument i JOIN institution u ON u.id = i.institution_id")
"""An instrument with its unit's registered name, which the catalogue shows everyone as
``GET /institutions`` does (a listed entry does not hold the unit)."""


def _catalogue(caller: Principal, column: str) -> str:
    """A catalogue field as the caller sees it: users the listed entry's, others the live one."""
    return f"(i.listing->>'{column}')" if caller.role is Role.USER else f"i.{column}"


_USERS_SEE = ("id", "institution_id", "institution_name", "created_at", "monitored_since",
              "listed_at")
"""What registered users see of an instrument besides its listed catalogue entry: not its
value, dates, owner unit, gateway or booking settings, which were not reviewed for them."""


def as_seen_by(caller: Principal, instrument: dict[str, Any]) -> dict[str, Any]:
    """Registered users get the listed catalogue entry, never the registry's live values,
    which may not have been reviewed yet (the fields they are not shown keep the model's
    defaults); everyone else the registry as it is."""
    if caller.role is not Role.USER:
        return instrument
    return {**{key: instrument.get(key) for key in _USERS_SEE}, **(instrument["listing"] or {})}


async def instrument_row(conn: Conn, instrument_id: str) -> dict[str, Any]:
    row = await fetch_one(conn, _SELECT + " WHERE i.id = %s", (instrument_id,))
    if row is None:
        raise NotFound(f"no instrument {instrument_id!r}")
    return row


def check_manages(principal: Principal, institution_id: str) -> None:
    if not principal.may_manage(institution_id):
        raise Forbidden(f"institution {institution_id!r} is outside your scope")


_FOREIGN_GATEWAYS = """
SELECT DISTINCT g.id FROM unnest(%(gateways)s::text[]) AS g(id)
JOIN instrument i ON i.gateway_id = g.id
    OR i.id IN (SELECT instrument_id FROM instrument_status WHERE gateway_id = g.id)
    OR i.id = ANY(SELECT unnest(instruments) FROM gateway WHERE id = g.id)
WHERE NOT i.institution_id = ANY(%(mine)s)
"""


async def foreign_gateways(conn: Conn, caller: Principal, gateway_ids: set[str]) -> set[str]:
    """Of ``gateway_ids``, those serving (bound to, reporting or announcing) an instrument
    outside a lab manager's institutions: binding one would show them another institution's
    gateway, and let it speak for their instrument."""
    if caller.role is not Role.LAB_MANAGER or not gateway_ids:
        return set()
    return {r["id"] for r in await fetch_all(
        conn, _FOREIGN_GATEWAYS, {"gateways": sorted(gateway_ids),
                                  "mine": sorted(caller.institutions)})}


async def check_gateway(conn: Conn, caller: Principal, gateway_id: str | None) -> None:
    if gateway_id is not None and await foreign_gateways(conn, caller, {gateway_id}):
        raise Forbidden(f"gateway_id: gateway {gateway_id!r} serves another institution's"
                        " instruments")


_INSERT = "INSERT INTO instrument (id, {cols}) VALUES (%(id)s, {vals}) RETURNING *".format(
    cols=", ".join(_INSTRUMENT_COLUMNS),
    vals=", ".join(f"%({c})s" for c in _INSTRUMENT_COLUMNS),
)


def _upsert(columns: frozenset[str]) -> sql.Composed:
    """Insert new instruments with defaults for absent columns; on existing ids update only
    the ``columns`` the file has."""
    names = [sql.Identifier(c) for c in ["id", *_INSTRUMENT_COLUMNS]]
    sets = [
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
        for c in _INSTRUMENT_COLUMNS if c in columns
    ]
    return sql.SQL(
        "INSERT INTO instrument ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}"
    ).format(
        sql.SQL(", ").join(names),
        sql.SQL(", ").join(sql.Placeholder(c) for c in ["id", *_INSTRUMENT_COLUMNS]),
        sql.SQL(", ").join(sets),
    )


@router.post("/instruments", response_model=Instrument, status_code=201)
async def create_instrument(conn: DbConn, caller: Manager, body: InstrumentIn) -> dict[str, Any]:
    """Register an instrument; registered users see it once an admin has listed it."""
    check_manages(caller, body.institution_id)
    await check_gateway(conn, caller, body.gateway_id)
    await conn.execute(_INSERT, body.model_dump())
    return await instrument_row(conn, body.id)


@router.patch("/instruments/{instrument_id}", response_model=Instrument)
async def update_instrument(
    conn: DbConn, caller: Manager, instrument_id: str, body: InstrumentPatch
) -> dict[str, Any]:
    current = await instrument_row(conn, instrument_id)
    check_manages(caller, current["institution_id"])
    values = body.model_dump(exclude_unset=True)
    if "institution_id" in values:
        check_manages(caller, values["institution_id"])
    await check_gateway(conn, caller, values.get("gateway_id"))
    merged = {**current, **values}
    if problem := misdated(merged["accepted_on"], merged["networked_on"]):
        raise BadRequest(problem)
    await update_columns(
        conn, table="instrument", key=instrument_id, values=values, allowed=_INSTRUMENT_COLUMNS
    )
    return await instrument_row(conn, instrument_id)


@router.post("/instruments/{instrument_id}/listing", response_model=Instrument)
async def list_instrument(
    conn: DbConn, caller: Admin, instrument_id: str
) -> dict[str, Any]:
    """List the instrument's catalogue entry as it stands, once reviewed: registered users
    see it, with these values, until the next review."""
    cur = await conn.execute(
        "UPDATE instrument i SET listing = catalogue_entry(i), listed_at = now(),"
        " listed_by = %s WHERE id = %s",
        (caller.signature, instrument_id))
    if cur.rowcount == 0:
        raise NotFound(f"no instrument {instrument_id!r}")
    return await instrument_row(conn, instrument_id)


@router.delete("/instruments/{instrument_id}/listing", response_model=Instrument)
async def unlist_instrument(
    conn: DbConn, _: Admin, instrument_id: str
) -> dict[str, Any]:
    """Take the instrument out of the catalogue: registered users no longer see or book it."""
    cur = await conn.execute(
        "UPDATE instrument SET listing = NULL, listed_at = NULL, listed_by = NULL"
        " WHERE id = %s", (instrument_id,))
    if cur.rowcount == 0:
        raise NotFound(f"no instrument {instrument_id!r}")
    return await instrument_row(conn, instrument_id)


@router.post(
    "/instruments/import",
    response_model=ImportResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "id,name,institution_id,category_code,value_rmb,accepted_on\n"
                    "nmr-600,核磁共振波谱仪,dlut-ac,010401,5200000,2025-03-10\n",
                }
            },
        }
    },
    responses={422: {"description": "Bad rows, each with its line number and reason"},
               413: {"description": "The file is larger than 20 MiB"}},
)
async def import_instruments(request: Request, conn: DbConn, caller: Manager) -> dict[str, int]:
    """Import or update instruments from CSV (UTF-8, header line of column names).

    New instruments get the defaults for columns the file leaves out; existing ones keep
    them: only the file's columns are updated. Every bad row is reported with its line
    number; nothing is written unless all rows pass.
    """
    text = await csv_text(request)  # at most MAX_IMPORT_BYTES (app.py)
    # tens of thousands of rows take a while to check: off the event loop
    parsed = await run_in_threadpool(parse_instruments, text)
    rows, errors = parsed.rows, parsed.errors
    if rows:
        ids = [item.id for _, item in rows]
        known = {
            r["id"] for r in await fetch_all(conn, "SELECT id FROM institution")
        }
        stored = {
            r["id"]: r for r in await fetch_all(
                conn, "SELECT id, institution_id, accepted_on, networked_on FROM instrument"
                " WHERE id = ANY(%s)", (ids,))
        }
        owners = {i: r["institution_id"] for i, r in stored.items()}
        foreign = await foreign_gateways(
            conn, caller, {item.gateway_id for _, item in rows if item.gateway_id is not None})
        for line, item in rows:
            # an existing instrument keeps the dates the file leaves out: check them together
            dates = {k: getattr(item, k) if k in parsed.columns or item.id not in stored
                     else stored[item.id][k] for k in ("accepted_on", "networked_on")}
            if problem := misdated(**dates):
                errors.append(RowError(line, problem))
            if item.institution_id not in known:
                errors.append(RowError(line, f"unknown institution {item.institution_id!r}"))
            elif not caller.may_manage(item.institution_id):
                errors.append(RowError(line, f"institution {item.institution_id!r} is not yours"))
            elif item.id in owners and not caller.may_manage(owners[item.id]):
                errors.append(
                    RowError(line, f"instrument {item.id!r} belongs to another institution")
                )
            if item.gateway_id in foreign:
                errors.append(RowError(line, f"gateway {item.gateway_id!r} serves another"
                                             " institution's instruments"))
    if errors:
        errors.sort(key=lambda e: e.line)
        raise BadRequest(
            f"{len(errors)} bad row(s); nothing was imported",
            details=[{"line": e.line, "reason": e.reason} for e in errors],
        )
    if not rows:
        raise BadRequest("the file has no instrument rows")
    async with conn.cursor() as cur:
        await cur.executemany(_upsert(parsed.columns), [item.model_dump() for _, item in rows])
    return {"imported": len(rows)}


@router.get("/compliance/overdue", response_model=OverdueRegistrations)
async def overdue_registrations(
    conn: DbConn,
    caller: Reader,
    settings: Settings,
    as_of: Day | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Instruments at or above the threshold not networked within N working days of acceptance."""
    mine = None if caller.reads_all else sorted(caller.institutions)
    items = await overdue_list(conn, mine, settings.compliance_threshold_rmb,
                               settings.compliance_working_days, as_of)
    return page_of(items, limit=limit, offset=offset)


async def overdue_list(
    conn: Conn, institutions: list[str] | None, threshold: float, days: int, as_of: date | None
) -> list[dict[str, Any]]:
    """Registrations at or above ``threshold`` not networked within ``days`` working days,
    each with its unit's name."""
    day = as_of or today()
    where = Where()
    where.add("i.value_rmb >= %(threshold)s AND i.accepted_on IS NOT NULL", threshold=threshold)
    where.add("i.accepted_on <= %(today)s", today=day)
    if institutions is not None:
        where.add("i.institution_id = ANY(%(mine)s)", mine=institutions)
    rows = await fetch_all(
        conn,
        sql.SQL(
            "SELECT i.id, i.name, i.institution_id, u.name AS institution_name, i.value_rmb,"
            " i.accepted_on, i.networked_on"
            " FROM instrument i JOIN institution u ON u.id = i.institution_id"
            " WHERE {} ORDER BY i.accepted_on, i.id"
        ).format(where.sql()),
        where.params,
    )
    out = []
    for row in rows:
        deadline = add_working_days(row["accepted_on"], days)
        joined = row["networked_on"]
        if joined is not None and joined > day:
            joined = None  # not yet networked on the day asked about
        checked = joined if joined is not None else day
        elapsed = working_days_between(row["accepted_on"], checked)
        if elapsed.days > days:
            out.append({
                "instrument_id": row["id"], "name": row["name"],
                "institution_id": row["institution_id"],
                "institution_name": row["institution_name"], "value_rmb": row["value_rmb"],
                "accepted_on": row["accepted_on"], "deadline": deadline.day,
                "deadline_estimated": deadline.estimated or elapsed.estimated,
                "networked_on": joined,
                "working_days_late": elapsed.days - days,
            })
    return out


def today() -> date:
    """Today in Asia/Shanghai, the calendar registration deadlines are counted in."""
    return datetime.now(ZoneInfo(TIMEZONE)).date()
