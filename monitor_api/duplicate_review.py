"""Duplicate-purchase review (查重评议): before a unit buys an instrument, the instruments of
the same class already on the platform, how much each was used in a year and whether any
that serves outside users had hours to spare, so that an idle duplicate is not bought.

Built on the annual evaluation's figures: "fully used" is its full-use target
(``full_use_hours`` pro rata for the days each instrument was monitored).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from monitor_api.evaluation import HOURS
from monitor_api.evaluation import LABELS as EVALUATION_LABELS
from monitor_api.exports import UNIT_NAME, Labels

USABLE_STATES = ("normal", "occasional_faults")
"""Running states in which an instrument's spare hours can be offered to others."""

COLUMNS: list[tuple[str, str, str]] = [
    ("instrument_id", "仪器编号", "Instrument"),
    ("name", "名称", "Name"),
    ("institution_id", "单位", "Institution"),
    UNIT_NAME,
    ("region", "地区", "Region"),
    ("category_code", "分类代码", "Category"),
    ("value_rmb", "原值(元)", "Value (RMB)"),
    ("sharing_mode", "共享方式", "Sharing mode"),
    ("running_state", "运行状态", "Running state"),
    ("effective_hours", "有效工作机时(h)", "Effective machine hours"),
    ("external_hours", "对外服务机时(h)", "External service hours"),
    ("target_hours", "满负荷机时(h)", "Full-use hours"),
    ("spare_hours", "富余机时(h)", "Spare hours"),
    ("capacity", "机时判断", "Capacity"),
]

LABELS: Labels = {
    **EVALUATION_LABELS,
    "capacity": {
        "spare": ("有富余可共享", "spare, shareable"),
        "fully_used": ("满负荷", "fully used"),
        "not_open": ("有富余未对外开放", "spare, not open to outside users"),
        "out_of_service": ("有富余但故障或待报废", "spare, but faulty or for disposal"),
    },
}


def capacity(item: dict[str, Any]) -> str:
    """``fully_used`` at or above its target; else ``spare`` when outside users may book it
    and it works, ``not_open`` when they may not, ``out_of_service`` when it does not."""
    if item["effective_hours"] >= item["target_hours"]:
        return "fully_used"
    if item["running_state"] not in USABLE_STATES:
        return "out_of_service"
    return "spare" if item["sharing_mode"] == "external" else "not_open"


def review(scored: list[dict[str, Any]], registry: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The instruments of ``scored`` that are in ``registry`` (the class and region asked
    for; id to region, category code and value), shareable spare hours first, and the
    verdict: ``none_registered``, ``spare_capacity`` (some can take more outside users) or
    ``no_spare_capacity``."""
    items = []
    for item in scored:
        found = registry.get(item["instrument_id"])
        if found is None:
            continue
        row = {key: item[key] for key in (
            "instrument_id", "name", "institution_id", "institution_name", "sharing_mode",
            "running_state", "target_hours")}
        row.update((key, round(item[key], 4)) for key in HOURS)  # as the evaluation shows them
        row.update(region=found["region"], category_code=found["category_code"],
                   value_rmb=found["value_rmb"],
                   spare_hours=round(max(0.0, row["target_hours"] - row["effective_hours"]), 2),
                   capacity=capacity(row))
        items.append(row)
    items.sort(key=lambda r: (r["capacity"] != "spare", -r["spare_hours"], r["instrument_id"]))
    counts = Counter(r["capacity"] for r in items)
    if not items:
        verdict = "none_registered"
    else:
        verdict = "spare_capacity" if counts["spare"] else "no_spare_capacity"
    return {
        "verdict": verdict,
        "fully_used": counts["fully_used"],
        "shareable": counts["spare"],
        "shareable_hours": round(sum(r["spare_hours"] for r in items
                                     if r["capacity"] == "spare"), 2),
        "items": items,
    }
