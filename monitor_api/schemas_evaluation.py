"""Response models of the /evaluation routes (JSON bodies; CSV and XLSX hold the rows).

The routes build their bodies as dicts and return them through ``render``, so these
models document the JSON only; tests/api/test_smoke.py checks real bodies against them.
``extra="forbid"`` makes a key added to a body without its field here fail that check.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from instrushare.protocol import Identifier
from monitor_api.schemas import (
    LongText,
    Money,
    Page,
    Reason,
    Tier,
    UnitName,
    example_config,
)
from monitor_api.schemas_report import FIGURES_EXAMPLE, Figures
from monitor_api.settings import EvaluationRules

Grade = Literal["优秀", "良好", "合格", "不合格"]
"""Excellent, good, pass, fail; thresholds in ``EvaluationRules``."""
RunningState = Literal[
    "normal", "occasional_faults", "frequent_faults", "awaiting_repair", "awaiting_disposal"]
SharingMode = Literal["external", "internal", "not_shared"]

_INSTRUMENT: dict[str, Any] = {
    "instrument_id": "nmr-600", "name": "600 MHz 核磁共振波谱仪",
    "institution_id": "dlut-ac", "institution_name": "大连理工大学分析测试中心",
    "root_id": "dlut", "effective_hours": 600.0,
    "external_hours": 60.0, "openness_ratio": 0.1, "availability": 0.9712,
    "faults": 2, "running_state": "occasional_faults", "sharing_mode": "external",
    "monitored_since": "2024-12-10T01:12:00Z", "evaluated_days": 365.0,
    "target_hours": 1200.0,
    "operation": 20.0, "sharing": 20.0, "management": 39.71, "assessed": 0.0,
    "score": 79.71, "grade": "合格"}
_GRADES: dict[str, int] = {"优秀": 0, "良好": 0, "合格": 1, "不合格": 0}
"""The grade counts of a list holding ``_INSTRUMENT`` alone."""

_INSTITUTION: dict[str, Any] = {
    "institution_id": "dlut", "name": "大连理工大学", "instruments": 2, "open_share": 0.5,
    "effective_hours": 600.0, "external_hours": 60.0, "operation": 10.0,
    "sharing": 10.0, "management": 21.67, "assessed": 0.0, "score": 41.67,
    "grade": "不合格", "tier": "voucher", "stars": 0, "rank": 1}

_ASSESSMENT: dict[str, Any] = {
    "year": 2025, "institution_id": "dlut", "name": "大连理工大学", "mark": "85.00",
    "note": "支撑国家重点研发计划 3 项；仪器管理制度健全", "assessed_by": "admin:1",
    "assessed_at": "2026-01-20T02:00:00Z"}


_SILENT: dict[str, Any] = {
    "instrument_id": "sem-1", "name": "场发射扫描电子显微镜",
    "institution_id": "neu", "institution_name": "东北大学",
    "last_data": "2025-10-08T08:42:05.123000Z", "silent_days": 41, "awaiting_disposal": False}

_OVERDUE: dict[str, Any] = {
    "instrument_id": "xrd-1", "name": "X射线衍射仪", "institution_id": "neu",
    "institution_name": "东北大学", "value_rmb": "1850000.00", "accepted_on": "2025-01-06",
    "deadline": "2025-02-24", "deadline_estimated": False,
    "networked_on": None, "working_days_late": 219}


def _page_config(item: dict[str, Any], **fields: Any) -> ConfigDict:
    """A page model's configuration, its example holding ``fields`` and the one ``item``."""
    return example_config({**fields, "items": [item], "total": 1, "limit": 1000, "offset": 0})


class InstrumentYear(BaseModel):
    """What the evaluation and the duplicate-purchase review both say of an instrument."""

    instrument_id: str = Field(description="Instrument id.")
    name: str = Field(description="Instrument name.")
    institution_id: str = Field(description="Institution or unit the instrument belongs to.")
    institution_name: UnitName
    effective_hours: float = Field(description="Effective machine hours in the year.")
    external_hours: float = Field(description="Hours of service to outside users.")
    running_state: RunningState = Field(
        description="National running state: normal 正常, occasional_faults 偶有故障,"
        " frequent_faults 故障频繁, awaiting_repair 待修, awaiting_disposal 待报废"
        " (rules in docs/metrics.md)."
    )
    sharing_mode: SharingMode = Field(
        description="National sharing mode: external 对外共享, internal 内部共享,"
        " not_shared 不共享."
    )
    target_hours: float = Field(
        description="Full use for the days it is judged on (evaluated_days):"
        " full_use_hours pro rata, two decimals."
    )


class EvaluatedInstrument(InstrumentYear):
    model_config = example_config(_INSTRUMENT)

    root_id: str = Field(description="Top-level institution the unit belongs to.")
    openness_ratio: float | None = Field(
        description="External hours / effective hours; null without use."
    )
    availability: float | None = Field(
        description="Share of the evaluated days the instrument was neither offline nor in"
        " fault; null when not computed."
    )
    faults: int | None = Field(
        description="Faults that began in the year; null when availability was not computed."
    )
    monitored_since: datetime | None = Field(
        description="When the platform first heard from the instrument; null if never."
    )
    evaluated_days: float = Field(
        description="Days of the year it is judged on: from the later of 1 January and the"
        " earliest of monitored_since, networked_on and the day after its registration"
        " deadline, to the earlier of 31 December and now; hour targets are pro rata."
    )
    operation: float = Field(description="Operation score (hours against full use).")
    sharing: float = Field(description="Sharing score (openness against the target).")
    management: float = Field(
        description="Management score (registry complete, fees published, registered on"
        " time, data flowing)."
    )
    assessed: float = Field(
        description="Points from its institution's assessment: assessed_points x mark / 100."
    )
    score: float = Field(description="Total score out of 100, two decimals.")
    grade: Grade = Field(description="Grade from the score.")


class InstrumentEvaluation(Page[EvaluatedInstrument]):
    """Instruments by score, highest first (ties: sharing score, then id)."""

    model_config = _page_config(_INSTRUMENT, year=2025, first_year=2025, grades=_GRADES)

    year: int = Field(description="Year evaluated (the last, for a cycle of several).")
    first_year: int = Field(description="First year evaluated: ``year`` itself, or the first"
                                        " of the cycle of years ending with it (rules:"
                                        " ``cycle_years``).")
    grades: dict[Grade, int] = Field(
        description="How many instruments of the whole list (every page, whatever"
        " ``limit`` and ``offset``) have each grade; every grade is named, 0 when none has"
        " it. A grade chart needs only the first page.", examples=[_GRADES])


class EvaluatedInstitution(BaseModel):
    model_config = example_config(_INSTITUTION)

    institution_id: str = Field(description="Top-level institution (sub-units included).")
    name: str = Field(description="Institution name (its id when it has none).")
    instruments: int = Field(description="Instruments evaluated.")
    open_share: float = Field(
        description="Instrument openness rate: the share of them whose sharing mode is"
        " external (open to outside users at an institution that may serve them).")
    effective_hours: float = Field(description="Sum of the instruments' effective hours.")
    external_hours: float = Field(description="Sum of the instruments' external hours.")
    operation: float = Field(description="Mean operation score of the instruments.")
    sharing: float = Field(description="Mean sharing score of the instruments.")
    management: float = Field(description="Mean management score of the instruments.")
    assessed: float = Field(description="Points from the institution's assessment.")
    score: float = Field(description="Mean total score, two decimals.")
    grade: Grade = Field(description="Grade from the mean score.")
    tier: Tier = Field(description="The institution's tier.")
    stars: int | None = Field(
        ge=0, le=5,
        description="Star rating of a service or voucher institution: how many of the"
        " star_scores thresholds its score reaches (0-5); null for the incubation pool.",
    )
    rank: int = Field(description="1 for the highest score.")


class InstitutionEvaluation(Page[EvaluatedInstitution]):
    """Institutions ranked by the mean score of their instruments."""

    model_config = _page_config(_INSTITUTION, year=2025, first_year=2025)

    year: int = Field(description="Year evaluated (the last, for a cycle of several).")
    first_year: int = Field(description="First year evaluated: ``year`` itself, or the first"
                                        " of the cycle of years ending with it (rules:"
                                        " ``cycle_years``).")


_LOW: dict[str, Any] = {**FIGURES_EXAMPLE, "institution_id": "dlut-ac",
                        "institution_name": "大连理工大学分析测试中心", "threshold_hours": 400.0}


class LowUseFigures(Figures):
    model_config = example_config(_LOW)

    institution_id: str = Field(description="The unit owning the instrument.")
    institution_name: UnitName
    threshold_hours: float = Field(
        description="The instrument's threshold: the yearly hours pro rata for the part of"
        " the year it was on the platform (see evaluated_days), two decimals."
    )


class LowUtilisation(Page[LowUseFigures]):
    """Instruments whose effective hours stay below their threshold, by id."""

    model_config = _page_config(_LOW, year=2025, first_year=2025, below_hours=400.0)

    year: int = Field(description="Year evaluated (the last, for a cycle of several).")
    first_year: int = Field(description="First year evaluated: ``year`` itself, or the first"
                                        " of the cycle of years ending with it (rules:"
                                        " ``cycle_years``).")
    below_hours: float = Field(
        description="Threshold of an instrument on the platform all year: the yearly hours"
        " pro rata for the part of the year gone, two decimals."
    )


class SilentInstrument(BaseModel):
    model_config = example_config(_SILENT)

    instrument_id: str = Field(description="Instrument id.")
    name: str = Field(description="Instrument name.")
    institution_id: str = Field(description="Institution or unit the instrument belongs to.")
    institution_name: UnitName
    last_data: datetime | None = Field(
        description="Last data received, or when its gateway went offline; null if never."
    )
    silent_days: int | None = Field(description="Whole days since last_data; null if never.")
    awaiting_disposal: bool = Field(
        description="Marked for disposal (待报废) in the registry: silence to be expected, not"
        " a gateway to chase.")


class SilentInstruments(Page[SilentInstrument]):
    """Instruments silent for more than ``days`` days, never heard from first."""

    model_config = _page_config(_SILENT, days=30)

    days: int = Field(description="Days of silence applied.")


class OverdueRegistration(BaseModel):
    model_config = example_config(_OVERDUE)

    instrument_id: str = Field(description="Instrument id.")
    name: str = Field(description="Instrument name.")
    institution_id: str = Field(description="Institution or unit the instrument belongs to.")
    institution_name: UnitName
    value_rmb: Money = Field(description="Original value (RMB), at or above the threshold.")
    accepted_on: date = Field(description="Acceptance date.")
    deadline: date = Field(description="Last day to be networked (working days counted).")
    deadline_estimated: bool = Field(
        description="Part of the count fell in a year the official calendar does not know;"
        " Monday to Friday were counted as working days there."
    )
    networked_on: date | None = Field(
        description="Networked on; null if not yet on the day asked about."
    )
    working_days_late: int = Field(description="Working days past the allowed count.")


class OverdueRegistrations(Page[OverdueRegistration]):
    """Registrations networked late or not yet, by acceptance date."""

    model_config = _page_config(_OVERDUE)



class AssessmentIn(BaseModel):
    model_config = example_config({"mark": "85.00", "note": _ASSESSMENT["note"]})

    mark: Decimal = Field(ge=0, le=100, decimal_places=2,
                          description="Mark out of 100 for what the platform cannot measure.")
    note: Reason = Field(description="What the mark rests on (required).")


class Assessment(BaseModel):
    model_config = example_config(_ASSESSMENT)

    year: int = Field(description="Year assessed.")
    institution_id: str = Field(description="Top-level institution.")
    name: str = Field(description="Institution name.")
    mark: Decimal = Field(description="Mark out of 100.")
    note: str = Field(description="What the mark rests on.")
    assessed_by: str = Field(description="Role and token id of who entered it.")
    assessed_at: datetime = Field(description="When it was entered or last replaced.")


class Assessments(Page[Assessment]):
    """The year's assessments, by institution."""

    model_config = _page_config(_ASSESSMENT, year=2025)

    year: int = Field(description="Year assessed.")


_REVIEWED: dict[str, Any] = {
    "instrument_id": "nmr-600", "name": "600 MHz 核磁共振波谱仪", "institution_id": "dlut-ac",
    "institution_name": "大连理工大学分析测试中心", "region": "大连", "category_code": "010401",
    "value_rmb": "5200000.00", "sharing_mode": "external", "running_state": "normal",
    "effective_hours": 600.0, "external_hours": 60.0, "target_hours": 1200.0,
    "spare_hours": 600.0, "capacity": "spare"}


class ReviewedInstrument(InstrumentYear):
    model_config = example_config(_REVIEWED)

    region: str = Field(description="Region of its institution.")
    category_code: str = Field(description="Its six-digit category code.")
    value_rmb: Money | None = Field(description="Original value in RMB.")
    spare_hours: float = Field(description="Target minus effective hours, at least 0.")
    capacity: Literal["spare", "fully_used", "not_open", "out_of_service"] = Field(
        description="fully_used: at or above its target; else spare (outside users may book"
        " it and it works), not_open (they may not) or out_of_service (awaiting repair or"
        " disposal, or faulting frequently)."
    )


class DuplicateReview(Page[ReviewedInstrument]):
    """Instruments of the class asked for, shareable spare hours first."""

    model_config = _page_config(
        _REVIEWED, year=2025, category="0104", category_name="光谱仪器",
        category_name_en="Optical spectrometers", region="大连",
        verdict="spare_capacity", fully_used=0, shareable=1, shareable_hours=600.0)

    year: int = Field(description="Year whose use is reviewed.")
    category: str = Field(description="Category code or class asked for.")
    category_name: str | None = Field(
        description="Its name in the national classification (a six-digit code: its"
        " second-level class); null when the classification does not know it.")
    category_name_en: str | None = Field(description="``category_name`` in English.")
    region: str | None = Field(description="Region asked for; null: the whole province.")
    verdict: Literal["none_registered", "spare_capacity", "no_spare_capacity"] = Field(
        description="none_registered: no such instrument on the platform; spare_capacity: at"
        " least one can take more outside users; no_spare_capacity: all are fully used, not"
        " open or out of service."
    )
    fully_used: int = Field(description="Instruments at or above their full-use target.")
    shareable: int = Field(description="Instruments with spare hours outsiders may book.")
    shareable_hours: float = Field(description="Their spare hours together.")


class PublicationIn(BaseModel):
    model_config = example_config({"note": "经评审委员会审定，2025 年度考核结果予以公布"})

    note: LongText = Field(
        default="", description="What the publication rests on (a decision, a meeting).")


class Publication(BaseModel):
    """A year's published evaluation: who published it, when, and the rules it was scored by."""

    model_config = example_config({
        "year": 2025, "note": "经评审委员会审定，2025 年度考核结果予以公布",
        "published_by": "admin:1", "published_at": "2026-02-10T01:00:00Z",
        "institutions": 12, "instruments": 230, "rules": EvaluationRules().model_dump()})

    year: int = Field(description="Year published.")
    note: str = Field(description="What the publication rests on.")
    published_by: str = Field(description="Role and token id of who published it.")
    published_at: datetime = Field(description="When it was published or last replaced.")
    institutions: int = Field(description="Institutions in the published ranking.")
    instruments: int = Field(description="Instruments in the published results.")
    rules: EvaluationRules = Field(description="The rules the results were scored by.")


class PublishedInstitutions(InstitutionEvaluation):
    """The published ranking, as frozen when it was published."""

    model_config = _page_config(_INSTITUTION, year=2025, first_year=2025,
                                published_at="2026-02-10T01:00:00Z")

    published_at: datetime = Field(description="When the results were published.")


class PublishedInstruments(InstrumentEvaluation):
    """The published instrument results (a lab manager's own only), as frozen."""

    model_config = _page_config(_INSTRUMENT, year=2025, first_year=2025, grades=_GRADES,
                                published_at="2026-02-10T01:00:00Z")

    published_at: datetime = Field(description="When the results were published.")


class ReportedUseIn(BaseModel):
    """One line of a unit's report: an instrument's hours in the year."""

    model_config = ConfigDict(extra="forbid")

    instrument_id: Identifier
    effective_hours: Decimal = Field(ge=0, le=8784, decimal_places=2)
    external_hours: Decimal = Field(default=Decimal(0), ge=0, le=8784, decimal_places=2)

    @model_validator(mode="after")
    def _external_within_effective(self) -> ReportedUseIn:
        if self.external_hours > self.effective_hours:
            raise ValueError("external_hours cannot exceed effective_hours")
        return self


Finding = Literal["consistent", "over_reported", "under_reported", "partly_monitored"]

_COMPARED: dict[str, Any] = {
    "instrument_id": "nmr-600", "name": "600 MHz 核磁共振波谱仪", "institution_id": "dlut-ac",
    "institution_name": "大连理工大学分析测试中心", "reported_effective_hours": 1800.0,
    "measured_effective_hours": 950.5, "effective_difference": 849.5, "finding": "over_reported",
    "reported_external_hours": 300.0, "measured_external_hours": 280.0,
    "external_difference": 20.0, "external_finding": "consistent",
    "monitored_since": "2024-12-10T01:12:00Z",
    "reported_by": "lab_manager:7", "reported_at": "2026-01-15T02:00:00Z"}


class ComparedUse(BaseModel):
    model_config = example_config(_COMPARED)

    instrument_id: str = Field(description="Instrument id.")
    name: str = Field(description="Instrument name.")
    institution_id: str = Field(description="Institution or unit it belongs to.")
    institution_name: UnitName
    reported_effective_hours: float = Field(description="Effective hours the unit reported.")
    measured_effective_hours: float = Field(description="Effective hours measured in the year.")
    effective_difference: float = Field(description="Reported minus measured.")
    finding: Finding = Field(
        description="consistent within the tolerance, over_reported, under_reported, or"
        " partly_monitored: the platform heard from it only after the year began, so hours"
        " before that were never measured.")
    reported_external_hours: float = Field(description="External hours reported.")
    measured_external_hours: float = Field(description="External hours measured.")
    external_difference: float = Field(description="Reported minus measured.")
    external_finding: Finding = Field(description="The same judgement for external hours.")
    monitored_since: datetime | None = Field(description="When the platform first heard from it.")
    reported_by: str = Field(description="Role and token id of who reported it.")
    reported_at: datetime = Field(description="When it was reported.")


class ReportedAgainstMeasured(Page[ComparedUse]):
    """Reported instruments, those flagged first (largest difference first)."""

    model_config = _page_config(_COMPARED, year=2025, flagged=1)

    year: int = Field(description="Year reported.")
    flagged: int = Field(description="Reports over or under the measured hours.")
