"""Service records in the national platform's shape: one row per approved or completed booking
starting in a period, with its contract, fee, voucher and rating, the user's type, the way and
purpose of the service, and the running time measured inside its window
(docs/metrics.md, "Service records")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql

from monitor_api.db import Conn, fetch_all
from monitor_api.exports import UNIT_NAME, Labels
from monitor_api.queries.common import ROOTS_CTE, Where, page

_SELECT = ROOTS_CTE + """
SELECT b.id AS booking_id, coalesce(r.contract_no, '') AS contract_no,
       b.instrument_id, i.name AS instrument_name, i.category_code, i.institution_id,
       o.name AS institution_name,
       b.user_id, u.name AS user_name, u.organisation,
       -- outside as the reports count it: an approved user of another top-level institution
       CASE WHEN coalesce(u.approved AND ur.root IS DISTINCT FROM ir.root, false)
            THEN 'external' ELSE 'internal' END AS user_type,
       CASE b.kind WHEN 'self' THEN 'instrument_use' WHEN 'assisted' THEN 'technical_service'
                   ELSE 'commissioned_test' END AS service_way,
       b.purpose, b.status, b.start_ts AS start, b.end_ts AS "end",
       round(date_part('epoch', b.end_ts - b.start_ts)::numeric / 3600, 4)::float8
           AS booked_hours,
       -- by anyone: operators run assisted and sample work
       round(running_seconds(b.instrument_id, b.start_ts, b.end_ts)::numeric / 3600, 4)::float8
           AS service_hours,
       coalesce(r.fee_rmb, 0.00) AS fee_rmb, coalesce(r.voucher_rmb, 0.00) AS voucher_rmb,
       r.rating, coalesce(r.comment, '') AS comment
FROM booking b
JOIN instrument i ON i.id = b.instrument_id
JOIN roots ir ON ir.id = i.institution_id
JOIN institution o ON o.id = i.institution_id
JOIN platform_user u ON u.id = b.user_id
LEFT JOIN roots ur ON ur.id = u.institution_id
LEFT JOIN service_record r ON r.booking_id = b.id
WHERE b.status IN ('approved', 'completed') AND {where}
"""

_ORDER = "b.start_ts, b.id"

COLUMNS: list[tuple[str, str, str]] = [
    ("booking_id", "预约编号", "Booking"),
    ("contract_no", "合同编号", "Contract no."),
    ("instrument_id", "仪器编号", "Instrument"),
    ("instrument_name", "仪器名称", "Instrument name"),
    ("category_code", "仪器分类代码", "Category code"),
    ("institution_id", "所属单位", "Owner unit"),
    UNIT_NAME,
    ("user_id", "用户编号", "User"),
    ("user_name", "用户名称", "User name"),
    ("organisation", "用户单位", "User organisation"),
    ("user_type", "用户类型", "User type"),
    ("service_way", "服务方式", "Service way"),
    ("purpose", "用途", "Purpose"),
    ("status", "状态", "Status"),
    ("start", "开始时间", "Start"),
    ("end", "结束时间", "End"),
    ("booked_hours", "预约机时(h)", "Booked hours"),
    ("service_hours", "服务机时(h)", "Service hours"),
    ("fee_rmb", "收费(元)", "Fee (RMB)"),
    ("voucher_rmb", "创新券(元)", "Innovation voucher (RMB)"),
    ("rating", "满意度(1-5)", "Satisfaction (1-5)"),
    ("comment", "用户评价", "User comment"),
]

LABELS: Labels = {
    "user_type": {"internal": ("内部", "internal"), "external": ("外部", "external")},
    "service_way": {
        "instrument_use": ("使用仪器", "instrument use"),
        "technical_service": ("技术服务", "technical service"),
        "commissioned_test": ("委托测试", "commissioned test"),
    },
    "purpose": {
        "research": ("科研", "research"), "development": ("开发", "development"),
        "teaching": ("教学", "teaching"), "other": ("其他", "other"),
    },
    "status": {"approved": ("已批准", "approved"), "completed": ("已完成", "completed")},
}


def _where(lo: datetime, hi: datetime, institutions: list[str] | None,
           instrument_id: str | None) -> Where:
    where = Where()
    where.add("b.start_ts >= %(lo)s AND b.start_ts < %(hi)s", lo=lo, hi=hi)
    if institutions is not None:
        where.add("i.institution_id = ANY(%(insts)s)", insts=institutions)
    if instrument_id is not None:
        where.add("b.instrument_id = %(inst)s", inst=instrument_id)
    return where


async def service_records(
    conn: Conn, *, lo: datetime, hi: datetime, institutions: list[str] | None,
    instrument_id: str | None, limit: int | None = None, offset: int = 0,
) -> dict[str, Any]:
    """The records of bookings starting in [lo, hi): one page, or with no ``limit`` all of
    them (for files)."""
    where = _where(lo, hi, institutions, instrument_id)
    if limit is not None:
        return await page(conn, select=_SELECT, where=where, order=_ORDER, limit=limit,
                          offset=offset)
    rows = await fetch_all(
        conn, sql.SQL(_SELECT + " ORDER BY " + _ORDER).format(where=where.sql()), where.params
    )
    return {"items": rows, "total": len(rows), "limit": len(rows), "offset": 0}
