"""Annual evaluation: a score out of 100 and a grade per instrument and per institution.

The rules follow the national practice restated in docs/metrics.md; every weight and
threshold is in ``EvaluationRules``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from monitor_api.exports import UNIT_NAME, Labels
from monitor_api.report import period_bounds
from monitor_api.settings import EvaluationRules
from monitor_api.workdays import add_working_days

GRADES = (("优秀", "excellent"), ("良好", "good"), ("合格", "pass"), ("不合格", "fail"))
REGISTRY_FIELDS = ("model", "maker", "category_code", "value_rmb", "accepted_on", "location")

INSTRUMENT_COLUMNS: list[tuple[str, str, str]] = [
    ("instrument_id", "仪器编号", "Instrument"),
    ("name", "名称", "Name"),
    ("institution_id", "单位", "Institution"),
    UNIT_NAME,
    ("effective_hours", "有效工作机时(h)", "Effective machine hours"),
    ("external_hours", "对外服务机时(h)", "External service hours"),
    ("openness_ratio", "开放共享率", "Openness ratio"),
    ("availability", "可用率", "Availability"),
    ("faults", "故障次数", "Faults"),
    ("running_state", "运行状态", "Running state"),
    ("sharing_mode", "共享方式", "Sharing mode"),
    ("monitored_since", "纳入监测时间", "Monitored since"),
    ("evaluated_days", "评价天数", "Days evaluated"),
    ("target_hours", "满负荷机时(h)", "Full-use hours"),
    ("operation", "运行使用得分", "Operation score"),
    ("sharing", "共享效果得分", "Sharing score"),
    ("management", "组织管理得分", "Management score"),
    ("assessed", "评审得分", "Assessed score"),
    ("score", "总分", "Score"),
    ("grade", "等级", "Grade"),
]
INSTITUTION_COLUMNS: list[tuple[str, str, str]] = [
    ("rank", "排名", "Rank"),
    ("institution_id", "单位", "Institution"),
    ("name", "名称", "Name"),
    ("instruments", "仪器数", "Instruments"),
    ("open_share", "仪器开放率", "Instrument openness rate"),
    ("effective_hours", "有效工作机时(h)", "Effective machine hours"),
    ("external_hours", "对外服务机时(h)", "External service hours"),
    ("operation", "运行使用得分", "Operation score"),
    ("sharing", "共享效果得分", "Sharing score"),
    ("management", "组织管理得分", "Management score"),
    ("assessed", "评审得分", "Assessed score"),
    ("score", "总分", "Score"),
    ("grade", "等级", "Grade"),
    ("stars", "星级", "Stars"),
]


SCORES = ("operation", "sharing", "management", "assessed", "score")
HOURS = ("effective_hours", "external_hours")

LABELS: Labels = {
    "grade": {zh: (zh, en) for zh, en in GRADES},
    "running_state": {
        "normal": ("正常", "normal"),
        "occasional_faults": ("偶有故障", "occasional faults"),
        "frequent_faults": ("故障频繁", "frequent faults"),
        "awaiting_repair": ("待修", "awaiting repair"),
        "awaiting_disposal": ("待报废", "awaiting disposal"),
    },
    "sharing_mode": {
        "external": ("对外共享", "external"),
        "internal": ("内部共享", "internal"),
        "not_shared": ("不共享", "not shared"),
    },
}
"""The national platform's classes, as words in CSV and XLSX (codes in JSON)."""


@dataclass(frozen=True, slots=True)
class EvaluatedYear:
    """The calendar years an evaluation covers (``years`` of them, ending with the year it
    is named by) in Asia/Shanghai as seen at ``now``: their days, their bounds, and how much
    of them is gone."""

    start: date
    end: date
    lo: datetime
    hi: datetime
    now: datetime
    years: int = 1

    @property
    def until(self) -> datetime:
        """The end of the year, or now while it lasts."""
        return min(self.hi, self.now)

    @property
    def fraction(self) -> float:
        """The years gone: what yearly hours are multiplied by."""
        return max(min((self.now - self.lo) / (self.hi - self.lo), 1.0), 0.0) * self.years

    @property
    def year_s(self) -> float:
        """Seconds in one year of the cycle, on average."""
        return (self.hi - self.lo).total_seconds() / self.years


def first_year(year: int, years: int) -> int:
    """The first of the calendar years an evaluation of ``years`` named by ``year`` covers."""
    return year - years + 1


def evaluated_year(year: int, years: int = 1) -> EvaluatedYear:
    """The evaluation named by ``year``: it and the ``years`` - 1 years before it."""
    start, end = date(first_year(year, years), 1, 1), date(year, 12, 31)
    return EvaluatedYear(start, end, *period_bounds(start, end), now=datetime.now(UTC),
                         years=years)


@dataclass(frozen=True, slots=True)
class Span:
    """The part of the evaluated years an instrument is judged on: from the later of their
    start and the moment it was on the platform (``evaluated_span``), to the earlier of their
    end and now. Hours before it were not owed, so targets shrink with it."""

    since: datetime | None
    """When the platform first heard from the instrument; None: never."""
    lo: datetime
    hi: datetime
    year_s: float
    """Seconds in one year of the evaluated years."""

    @property
    def seconds(self) -> float:
        return (self.hi - self.lo).total_seconds()

    @property
    def fraction(self) -> float:
        """Years measured: what yearly hour targets are multiplied by."""
        return self.seconds / self.year_s


def evaluated_span(
    year: EvaluatedYear, *, since: datetime | None, due: datetime | None = None
) -> Span | None:
    """The instrument's span of the year: from the earlier of when the platform first heard
    from it (``since``) and when the registry says it was on the platform or had to be
    (``due``, ``due_on_platform``), so switching a gateway on late earns no smaller target.
    None when both lie after the year (it was not on the platform that year) or the year has
    not begun (nothing of it is gone to judge); with neither known it is judged on the whole
    year gone: it should have been reporting."""
    start = on_platform_since(since, due)
    lo = year.lo if start is None else max(year.lo, start)
    if lo >= year.until:
        return None
    return Span(since=since, lo=lo, hi=year.until, year_s=year.year_s)


def on_platform_since(since: datetime | None, due: datetime | None) -> datetime | None:
    """When an instrument counts as on the platform: the earlier of when the platform first
    heard from it and when the registry puts it there (``due_on_platform``); None when neither
    is known (it should have been reporting all along). Before it, the instrument was not
    owed hours nor data: it was not offline."""
    return min((t for t in (since, due) if t is not None), default=None)


@lru_cache(maxsize=2**16)
def due_on_platform(
    networked_on: date | None, accepted_on: date | None, working_days: int
) -> datetime | None:
    """When the registry puts the instrument on the platform: the day it was networked or,
    if earlier, the day after its registration deadline (``working_days`` after acceptance);
    None when the registry has neither date. Kept per dates: every report and evaluation asks
    it of each instrument (~25 us, 75 ms for 3,000)."""
    days = [] if networked_on is None else [networked_on]
    if accepted_on is not None:
        deadline = add_working_days(accepted_on, working_days).day
        if deadline < date.max:
            days.append(deadline + timedelta(days=1))
    return period_bounds(min(days), min(days))[0] if days else None


def subject_to_evaluation(value_rmb: float | None, rules: EvaluationRules) -> bool:
    """Below ``min_value_rmb`` an instrument is not evaluated; without a registered value it
    is (its incomplete registry costs it management points; leaving it out would reward
    that)."""
    return value_rmb is None or value_rmb >= rules.min_value_rmb


def rounded(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scores to two decimals and hours to four for publication: computed unrounded, then
    graded, rated and ranked by what is published (:func:`published`), an institution's
    hours summed before they are rounded, as the reports sum them."""
    return [{**i, **{k: published(i[k]) for k in SCORES},
             **{k: round(i[k], 4) for k in HOURS}} for i in items]


def published(score: float) -> float:
    """A score as published, two decimals: what grades, stars and ranks go by, so that a
    reader never finds 90.00 graded 良好."""
    return round(score, 2)


def grade(score: float, rules: EvaluationRules) -> str:
    if score >= rules.excellent:
        return GRADES[0][0]
    if score >= rules.good:
        return GRADES[1][0]
    if score >= rules.passing:
        return GRADES[2][0]
    return GRADES[3][0]


def grade_counts(items: list[dict[str, Any]]) -> dict[str, int]:
    """How many of ``items`` have each grade, every grade named (0 when none has it): what a
    grade chart draws from a list's first page, not from every page of it."""
    counts = dict.fromkeys((zh for zh, _ in GRADES), 0)
    for item in items:
        counts[item["grade"]] += 1
    return counts


def stars(score: float, tier: str | None, rules: EvaluationRules) -> int | None:
    """Star rating of a service or voucher institution: one per ``star_scores`` threshold
    reached; None for the incubation pool, which may not serve."""
    if tier not in ("service", "voucher"):
        return None
    return sum(1 for threshold in rules.star_scores if score >= threshold)


def running_state(
    registry: dict[str, Any], *, faults: int, fault_since: datetime | None, span: Span,
    rules: EvaluationRules,
) -> str:
    """The national running state, the first that applies: marked for disposal; in fault at
    the span's end for ``awaiting_repair_days``; ``frequent_faults`` or more faults in the
    span; any fault; else normal."""
    if registry["awaiting_disposal"]:
        return "awaiting_disposal"
    if fault_since is not None and span.hi - fault_since >= timedelta(
            days=rules.awaiting_repair_days):
        return "awaiting_repair"
    if faults >= rules.frequent_faults:
        return "frequent_faults"
    return "occasional_faults" if faults > 0 else "normal"


def sharing_mode(registry: dict[str, Any]) -> str:
    """Open to outside users at an institution that may serve them: external; else internal;
    marked for disposal: not shared."""
    if registry["awaiting_disposal"]:
        return "not_shared"
    if registry["open_to_outside"] and registry["tier"] != "incubation":
        return "external"
    return "internal"


def score_instrument(
    figures: dict[str, Any], registry: dict[str, Any], *, seconds: tuple[float, float],
    up_s: float | None, span: Span,
    fault_since: datetime | None, overdue: bool, mark: float | None, rules: EvaluationRules,
) -> dict[str, Any]:
    """Operation (hours against full use), sharing (openness against the target) and
    management (registry complete, fees published, registered on time, data flowing), over
    the instrument's ``span`` of the year, with its national running state and sharing mode;
    ``seconds``: its effective and external seconds, unrounded (``figures`` has hours to 4
    places; the result keeps them unrounded until :func:`rounded`); ``up_s``: its seconds up
    in the year; ``fault_since``: the start of the fault it is in at the span's end, if any;
    ``mark``: its institution's assessment, if any."""
    target_hours = rules.full_use_hours * max(span.fraction, 1e-9)
    effective_s, external_s = seconds
    operation = rules.operation_points * min(1.0, effective_s / 3600 / target_hours)
    openness = external_s / effective_s if effective_s > 0 else 0.0
    sharing = rules.sharing_points * min(1.0, openness / rules.sharing_target)
    filled = sum(1 for f in REGISTRY_FIELDS if registry.get(f) not in (None, ""))
    up_share = None if up_s is None or span.seconds <= 0 else min(1.0, up_s / span.seconds)
    quarter = rules.management_points / 4
    management = quarter * (
        filled / len(REGISTRY_FIELDS)
        + (1.0 if registry.get("fee_schedule") else 0.0)
        + (0.0 if overdue else 1.0)
        + (up_share or 0.0)
    )
    assessed = rules.assessed_points * (mark or 0.0) / 100
    score = operation + sharing + management + assessed
    return {
        "instrument_id": registry["id"],
        "name": registry["name"],
        "institution_id": registry["institution_id"],
        "institution_name": registry["institution_name"],
        "root_id": registry["root_id"],
        "effective_hours": effective_s / 3600,
        "external_hours": external_s / 3600,
        "openness_ratio": figures["openness_ratio"],
        "availability": None if up_share is None else round(up_share, 4),  # shown, not scored
        "faults": figures["faults"],
        "running_state": running_state(registry, faults=figures["faults"] or 0,
                                       fault_since=fault_since, span=span, rules=rules),
        "sharing_mode": sharing_mode(registry),
        "monitored_since": span.since,
        "evaluated_days": round(span.seconds / 86400, 2),
        "target_hours": round(target_hours, 2),
        "operation": operation,
        "sharing": sharing,
        "management": management,
        "assessed": assessed,
        "score": score,
        "grade": grade(published(score), rules),
    }


def score_institutions(
    scored: list[dict[str, Any]], institutions: dict[str, dict[str, Any]],
    rules: EvaluationRules,
) -> list[dict[str, Any]]:
    """Mean of the institution's instrument scores (sub-units included); ranked by score,
    ties broken on sharing; ``institutions``: name and tier by id. ``open_share``, the
    instrument openness rate of the national rules from 2026: the share of its instruments
    shared with outside users."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in scored:
        groups[item["root_id"]].append(item)
    out = []
    for root, items in groups.items():
        n = len(items)

        def mean(key: str, items: list[dict[str, Any]] = items, n: int = n) -> float:
            return float(sum(i[key] for i in items)) / n

        institution = institutions.get(root, {})
        out.append({
            "institution_id": root,
            "name": institution.get("name") or root,
            "instruments": n,
            "open_share": round(sum(i["sharing_mode"] == "external" for i in items) / n, 4),
            "effective_hours": sum(i["effective_hours"] for i in items),
            "external_hours": sum(i["external_hours"] for i in items),
            "operation": mean("operation"),
            "sharing": mean("sharing"),
            "management": mean("management"),
            "assessed": mean("assessed"),
            "score": mean("score"),
            "grade": grade(published(mean("score")), rules),
            "tier": institution.get("tier"),
            "stars": stars(published(mean("score")), institution.get("tier"), rules),
        })
    out.sort(key=lambda r: (-published(r["score"]), -published(r["sharing"]),
                            r["institution_id"]))
    for rank, row in enumerate(out, start=1):
        row["rank"] = rank
    return out
