"""The figures of a utilisation report row, shared by /reports/utilisation and the
evaluation's low-utilisation list (definitions: docs/metrics.md)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from monitor_api.schemas import example_config

FIGURES_EXAMPLE: dict[str, Any] = {
    "key": "xrd-1", "name": "X射线衍射仪", "instruments": 1, "sessions": 12,
    "effective_hours": 30.5, "external_hours": 0.0, "openness_ratio": 0.0,
    "availability": None, "outside_users": 0, "outside_organisations": 0,
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
    name: str = Field(description="Instrument or institution name; the code or region otherwise.")
    instruments: int = Field(description="Instruments in the group (1 per instrument).")
    sessions: int = Field(description="Usage sessions counted.")
    effective_hours: float = Field(description="Effective machine hours.")
    external_hours: float = Field(description="Hours of service to outside users.")
    openness_ratio: float | None = Field(description="External / effective hours.")
    availability: float | None = Field(
        description="Share of the period neither offline nor in fault; null when not computed"
        " (availability=false, and in the low-utilisation list)."
    )
    outside_users: int = Field(description="Distinct outside users.")
    outside_organisations: int = Field(description="Distinct outside organisations.")
    bookings: int = Field(description="Approved or completed bookings starting in the period.")
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
