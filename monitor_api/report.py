"""Utilisation figures: derive ratios from raw sums and group instruments (docs/metrics.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from monitor_api.categories import category_name
from monitor_api.settings import TIMEZONE

SHANGHAI = ZoneInfo(TIMEZONE)


class GroupBy(StrEnum):
    INSTRUMENT = "instrument"
    UNIT = "unit"
    """The owning unit itself (for example a department's analysis centre)."""
    INSTITUTION = "institution"
    """The top-level institution, sub-units included."""
    CATEGORY = "category"
    REGION = "region"


def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, end+1 00:00) in Asia/Shanghai: both dates are included."""
    lo = datetime.combine(start, time(), SHANGHAI)
    hi = datetime.combine(end + timedelta(days=1), time(), SHANGHAI)
    return lo, hi


def day_start(t: datetime) -> datetime:
    """Midnight (Asia/Shanghai) of ``t``'s day."""
    return datetime.combine(t.astimezone(SHANGHAI).date(), time(), SHANGHAI)


def month_start(t: datetime, *, up: bool = False) -> datetime:
    """Midnight (Asia/Shanghai) of the first day of ``t``'s month, or with ``up`` of the
    first month starting at or after ``t``."""
    start = datetime.combine(t.astimezone(SHANGHAI).date().replace(day=1), time(), SHANGHAI)
    if up and start < t:
        return month_start(start + timedelta(days=32))
    return start


# (key, Chinese, English): the order of columns in exports.
COLUMNS: list[tuple[str, str, str]] = [
    ("key", "对象", "Group"),
    ("name", "名称", "Name"),
    ("instruments", "仪器数", "Instruments"),
    ("sessions", "使用次数", "Sessions"),
    ("effective_hours", "有效工作机时(h)", "Effective machine hours"),
    ("external_hours", "对外服务机时(h)", "External service hours"),
    ("openness_ratio", "开放共享率", "Openness ratio"),
    ("availability", "可用率", "Availability"),
    ("faults", "故障次数", "Faults"),
    ("outside_users", "外单位用户数", "Outside users"),
    ("outside_organisations", "外单位数", "Outside organisations"),
    ("bookings", "预约数", "Bookings"),
    ("no_shows", "预约未到数", "No-shows"),
    ("unbooked_hours", "无预约使用机时(h)", "Unbooked use hours"),
    ("uncertified_hours", "无资质使用机时(h)", "Uncertified use hours"),
    ("uncertified_sessions", "无资质使用次数", "Uncertified sessions"),
    ("unattributed_hours", "未识别用户机时(h)", "Hours with unknown user"),
    ("service_income_rmb", "服务收入(元)", "Service income (RMB)"),
    ("external_income_rmb", "对外服务收入(元)", "External service income (RMB)"),
    ("voucher_rmb", "创新券金额(元)", "Innovation vouchers (RMB)"),
    ("voucher_share", "创新券占比", "Voucher share"),
    ("average_rating", "平均评价", "Average rating"),
    ("ratings", "评价数", "Ratings"),
]

_SUMS = (
    "sessions", "effective_s", "running_s", "external_s", "uncertified_s", "uncertified_sessions",
    "unattributed_s", "booked_s", "bookings", "no_shows", "income_rmb", "external_income_rmb",
    "voucher_rmb", "ratings", "rating_sum",
)


@dataclass(slots=True)
class _Acc:
    name: str
    name_en: str | None
    instruments: int = 0
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_SUMS, 0.0))
    up_s: float = 0.0
    on_s: float = 0.0
    faults: int = 0
    up_known: int = 0
    users: set[str] = field(default_factory=set)
    orgs: set[str] = field(default_factory=set)


def _key(row: dict[str, Any], group_by: GroupBy,
         category_digits: int) -> tuple[str, str, str | None]:
    """The group ``row`` falls in: key, name, English name when the platform knows one."""
    if group_by is GroupBy.INSTRUMENT:
        return row["instrument_id"], row["name"], None
    if group_by is GroupBy.UNIT:
        return row["institution_id"], row["institution_id"], None
    if group_by is GroupBy.INSTITUTION:
        return row["root_id"], row["root_id"], None
    if group_by is GroupBy.CATEGORY:
        code = (row["category_code"] or "")[:category_digits]
        if not code:
            return "unknown", "未分类", "uncategorised"
        name = category_name(code)
        return (code, name.zh, name.en) if name else (code, code, None)
    if not row["region"]:
        return "unknown", "未填地区", "region not given"
    return row["region"], row["region"], None


def _ratio(num: float, den: float, digits: int = 4) -> float | None:
    return round(num / den, digits) if den > 0 else None


def summarise(
    rows: Iterable[dict[str, Any]],
    *,
    group_by: GroupBy,
    names: dict[str, str] | None = None,
    category_digits: int = 2,
) -> list[dict[str, Any]]:
    """Group per-instrument sums; ratios are recomputed from the group's sums.

    ``names`` maps group keys to display names (institution names for ``unit`` and
    ``institution``); a key it lacks is its own name."""
    groups: dict[str, _Acc] = {}
    for row in rows:
        key, name, name_en = _key(row, group_by, category_digits)
        acc = groups.get(key)
        if acc is None:
            acc = groups[key] = _Acc(name=(names or {}).get(key, name), name_en=name_en)
        acc.instruments += 1
        for k in _SUMS:
            acc.sums[k] += float(row[k] or 0)
        if row["up_s"] is not None:
            acc.up_s += float(row["up_s"])
            acc.on_s += row["on_s"]
            acc.faults += int(row["faults"])
            acc.up_known += 1
        acc.users.update(row["outside_users"])
        acc.orgs.update(row["outside_orgs"])
    return [_figures(key, acc) for key, acc in sorted(groups.items())]


def _figures(key: str, acc: _Acc) -> dict[str, Any]:
    s = acc.sums
    effective = s["effective_s"] / 3600
    return {
        "key": key,
        "name": acc.name,
        "name_en": acc.name_en,
        "instruments": acc.instruments,
        "sessions": int(s["sessions"]),
        "effective_hours": round(effective, 4),
        "external_hours": round(s["external_s"] / 3600, 4),
        "openness_ratio": _ratio(s["external_s"], s["effective_s"]),
        # of the time its instruments were on the platform; none of it: none to say
        "availability": _ratio(min(acc.up_s, acc.on_s), acc.on_s),
        "faults": acc.faults if acc.up_known else None,
        "outside_users": len(acc.users),
        "outside_organisations": len(acc.orgs),
        "bookings": int(s["bookings"]),
        "no_shows": int(s["no_shows"]),
        "unbooked_hours": round(max(s["running_s"] - s["booked_s"], 0.0) / 3600, 4),
        "uncertified_hours": round(s["uncertified_s"] / 3600, 4),
        "uncertified_sessions": int(s["uncertified_sessions"]),
        "unattributed_hours": round(s["unattributed_s"] / 3600, 4),
        "service_income_rmb": round(s["income_rmb"], 2),
        "external_income_rmb": round(s["external_income_rmb"], 2),
        "voucher_rmb": round(s["voucher_rmb"], 2),
        "voucher_share": _ratio(s["voucher_rmb"], s["income_rmb"]),
        "average_rating": _ratio(s["rating_sum"], s["ratings"], 2),
        "ratings": int(s["ratings"]),
    }
