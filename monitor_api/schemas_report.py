"""The figures of a utilisation report row, shared by /reports/utilisation and the
evaluation's low-utilisation list (definitions: docs/metrics.md)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from monitor_api.schemas import UnitName, example_config
from monitor_api.schemas_bookings import BookingPurpose

FIGURES_EXAMPLE: dict[str, Any] = {
    "key": "xrd-1", "name": "X射线衍射仪", "name_en": None, "instruments": 1, "sessions": 12,
    "effective_hours": 30.5, "external_hours": 0.0, "openness_ratio": 0.0,
    "availability": None, "faults": None, "outside_users": 0, "outside_organisations": 0,
    "bookings": 3, "no_shows": 0, "unbooked_hours": 21.0,
    "uncertified_hours": 0.0, "uncertified_sessions": 0,
    "unattributed_hours": 2.5, "service_income_rmb": 0.0,
    "external_income_rmb": 0.0, "voucher_rmb": 0.0, "voucher_share": None,
    "average_rating": None, "ratings": 0}


class Figures(BaseModel):
    """One row of /reports/utilisation (an instrument, unit, institution, category or region),
    and of the evaluation's low-utilisation list."""

    model_config = example_config(FIGURES_EXAMPLE)

    key: str = Field(description="The group: instrument or institution id, category or region.")
    name: str = Field(
        description="Instrument or institution name; the category's name in the national"
        " classification, or its code when it has none; the region.")
    name_en: str | None = Field(
        description="``name`` in English where the platform has one (a category's); null"
        " otherwise.")
    instruments: int = Field(description="Instruments in the group (1 per instrument).")
    sessions: int = Field(description="Usage sessions counted.")
    effective_hours: float = Field(description="Effective machine hours.")
    external_hours: float = Field(description="Hours of service to outside users.")
    openness_ratio: float | None = Field(description="External / effective hours.")
    availability: float | None = Field(
        description="Share of the period gone, while on the platform, neither offline nor in"
        " fault; null when not computed (availability=false, and in the low-utilisation list)"
        " or when no instrument was on the platform yet."
    )
    faults: int | None = Field(
        description="Faults that began in the period (a fault sample after another state or"
        " after silence); null when availability is not computed."
    )
    outside_users: int = Field(description="Distinct outside users.")
    outside_organisations: int = Field(description="Distinct outside organisations.")
    bookings: int = Field(
        description="Approved, completed or void bookings starting in the period.")
    no_shows: int = Field(description="Bookings not turned up to.")
    unbooked_hours: float = Field(description="Running hours outside any booking.")
    uncertified_hours: float = Field(description="Hours by users without certification.")
    uncertified_sessions: int = Field(description="Sessions by users without certification.")
    unattributed_hours: float = Field(description="Hours not attributed to a user.")
    service_income_rmb: float = Field(description="Service fees charged (RMB).")
    external_income_rmb: float = Field(description="Fees charged to outside users (RMB).")
    voucher_rmb: float = Field(description="Fees paid with innovation vouchers (RMB).")
    voucher_share: float | None = Field(description="Voucher / service income.")
    average_rating: float | None = Field(description="Mean user rating, two decimals.")
    ratings: int = Field(description="Ratings given.")


class ServiceWay(StrEnum):
    """The national platform's ways of service, from the booking's kind."""

    INSTRUMENT_USE = "instrument_use"
    """The user operates the instrument (a self-operated booking)."""
    TECHNICAL_SERVICE = "technical_service"
    """The facility's operator runs it with the user (operator-assisted)."""
    COMMISSIONED_TEST = "commissioned_test"
    """The facility measures submitted samples (sample submission)."""


class ServiceRecordRow(BaseModel):
    """One row of /reports/service-records: an approved or completed booking."""

    model_config = example_config({
        "booking_id": 42, "contract_no": "SY-2026-0042", "instrument_id": "nmr-600",
        "instrument_name": "核磁共振波谱仪", "category_code": "010401",
        "institution_id": "neu-ac", "institution_name": "东北大学分析测试中心",
        "user_id": "u-li", "user_name": "李工", "organisation": "沈阳某科技公司",
        "user_type": "external",
        "service_way": "technical_service", "purpose": "development", "status": "completed",
        "start": "2026-03-10T01:00:00Z", "end": "2026-03-10T04:00:00Z",
        "booked_hours": 3.0, "service_hours": 2.75, "fee_rmb": "1800.00",
        "voucher_rmb": "900.00", "rating": 5, "comment": "数据质量好"})

    booking_id: int
    contract_no: str
    instrument_id: str
    instrument_name: str
    category_code: str | None
    institution_id: str
    institution_name: UnitName
    user_id: str
    user_name: str
    organisation: str
    user_type: Literal["internal", "external"] = Field(
        description="external: an approved user of another top-level institution.")
    service_way: ServiceWay
    purpose: BookingPurpose
    status: Literal["approved", "completed"]
    start: datetime
    end: datetime
    booked_hours: float = Field(description="Length of the booked window.")
    service_hours: float = Field(
        description="Running time inside the window (any user, noise excluded).")
    fee_rmb: Decimal
    voucher_rmb: Decimal
    rating: int | None = Field(description="The user's 1-5 satisfaction rating, if given.")
    comment: str
