"""Reported against measured: the hours a unit reports for its instruments (what reached the
province in spreadsheets) next to the hours the platform measured, each flagged when they
differ by more than the tolerance in ``EvaluationRules``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from monitor_api.exports import UNIT_NAME, Labels
from monitor_api.settings import EvaluationRules

COLUMNS: list[tuple[str, str, str]] = [
    ("instrument_id", "仪器编号", "Instrument"),
    ("name", "名称", "Name"),
    ("institution_id", "单位", "Institution"),
    UNIT_NAME,
    ("reported_effective_hours", "填报有效机时(h)", "Reported effective hours"),
    ("measured_effective_hours", "实测有效机时(h)", "Measured effective hours"),
    ("effective_difference", "有效机时差(h)", "Effective hours difference"),
    ("finding", "有效机时判断", "Finding"),
    ("reported_external_hours", "填报对外服务机时(h)", "Reported external hours"),
    ("measured_external_hours", "实测对外服务机时(h)", "Measured external hours"),
    ("external_difference", "对外服务机时差(h)", "External hours difference"),
    ("external_finding", "对外服务机时判断", "External finding"),
    ("monitored_since", "纳入监测时间", "Monitored since"),
    ("reported_by", "填报人", "Reported by"),
    ("reported_at", "填报时间", "Reported at"),
]

_FINDINGS = {
    "consistent": ("相符", "consistent"),
    "over_reported": ("多报", "over-reported"),
    "under_reported": ("少报", "under-reported"),
    "partly_monitored": ("未全年监测", "partly monitored"),
}
LABELS: Labels = {"finding": _FINDINGS, "external_finding": _FINDINGS}
FLAGGED = ("over_reported", "under_reported")


def finding(reported: float, measured: float, *, whole_year: bool, rules: EvaluationRules) -> str:
    """``consistent`` when the difference stays within the larger of ``report_tolerance`` x
    measured and ``report_tolerance_hours``; else over- or under-reported. An instrument
    first heard from after the year began was not measured all year: ``partly_monitored``."""
    if not whole_year:
        return "partly_monitored"
    difference = reported - measured
    if abs(difference) <= max(rules.report_tolerance * measured, rules.report_tolerance_hours):
        return "consistent"
    return "over_reported" if difference > 0 else "under_reported"


def compare(
    reports: list[dict[str, Any]], measured: dict[str, dict[str, Any]], *, year_start: datetime,
    rules: EvaluationRules,
) -> list[dict[str, Any]]:
    """One row per report, flagged ones first, largest difference first. An instrument never
    heard from counts as monitored all year: reported hours with no data are what to flag."""
    out = []
    for report in reports:
        figures = measured.get(report["instrument_id"], {})
        since = report["monitored_since"]
        whole_year = since is None or since <= year_start + timedelta(days=1)
        row = {key: report[key] for key in (
            "instrument_id", "name", "institution_id", "institution_name", "monitored_since",
            "reported_by", "reported_at")}
        for part in ("effective", "external"):
            said = float(report[f"{part}_hours"])
            seen = float(figures.get(f"{part}_hours", 0.0))
            row[f"reported_{part}_hours"] = said
            row[f"measured_{part}_hours"] = round(seen, 2)
            row[f"{part}_difference"] = round(said - seen, 2)
        row["finding"] = finding(row["reported_effective_hours"], row["measured_effective_hours"],
                                 whole_year=whole_year, rules=rules)
        row["external_finding"] = finding(
            row["reported_external_hours"], row["measured_external_hours"],
            whole_year=whole_year, rules=rules)
        out.append(row)
    out.sort(key=lambda r: (r["finding"] not in FLAGGED and r["external_finding"] not in FLAGGED,
                            -abs(r["effective_difference"]), r["instrument_id"]))
    return out
