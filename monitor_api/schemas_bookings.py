"""Models of certifications, bookings and service records."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from instrushare.protocol import Identifier
from monitor_api.schemas import Label, Moment, Money, Text, UnitName, example_config


class CertLevel(StrEnum):
    SELF = "self"
    """May operate the instrument alone."""
    ASSISTED = "assisted"
    """May use it only with the facility's operator."""


class BookingKind(StrEnum):
    SELF = "self"
    ASSISTED = "assisted"
    SAMPLE = "sample"


class BookingPurpose(StrEnum):
    """The national platform's classes of use."""

    RESEARCH = "research"
    DEVELOPMENT = "development"
    TEACHING = "teaching"
    OTHER = "other"


class BookingStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    VOID = "void"
    """Approved, but nobody used the instrument within the void period after its start: the
    window was released (a no-show)."""


class CertificationIn(BaseModel):
    model_config = example_config({
        "user_id": "u-li", "instrument_id": "nmr-600", "level": "self",
        "valid_from": "2026-01-01T00:00:00+08:00", "valid_until": "2027-01-01T00:00:00+08:00",
        "issued_by": "王工"})

    user_id: Identifier
    instrument_id: Identifier
    level: CertLevel
    valid_from: Moment
    valid_until: Moment | None = None
    issued_by: Text = ""

    @model_validator(mode="after")
    def _order(self) -> CertificationIn:
        if self.valid_until is not None and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class Certification(BaseModel):
    id: int
    user_id: str
    instrument_id: str
    level: CertLevel
    valid_from: datetime
    valid_until: datetime | None
    issued_by: str
    issued_at: datetime
    revoked_at: datetime | None


MAX_BOOKING = timedelta(days=31)
"""The longest window one booking holds: longer use is booked in several."""


class BookingIn(BaseModel):
    model_config = example_config({
        "instrument_id": "nmr-600", "kind": "self", "start": "2026-12-01T09:00:00+08:00",
        "end": "2026-12-01T12:00:00+08:00", "purpose": "research"})

    instrument_id: Identifier
    kind: BookingKind
    start: Moment
    end: Moment
    purpose: BookingPurpose = BookingPurpose.OTHER

    @model_validator(mode="after")
    def _window(self) -> BookingIn:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.end - self.start < timedelta(minutes=1):
            raise ValueError("a booking lasts at least a minute")
        if self.end - self.start > MAX_BOOKING:
            raise ValueError("a booking lasts at most 31 days")
        return self


class Booking(BaseModel):
    id: int
    instrument_id: str
    instrument_name: str
    institution_id: str = Field(description="The instrument's unit.")
    institution_name: UnitName
    user_id: str
    user_name: str
    kind: BookingKind
    start: datetime
    end: datetime
    status: BookingStatus
    purpose: BookingPurpose
    note: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Label = Field(default="", description="A reason for the user; one of spaces only is"
                        " none, and leaves the booking's note as it was.")


class ServiceRecordIn(BaseModel):
    model_config = example_config(
        {"contract_no": "SY-2026-0042", "fee_rmb": "1800.00", "voucher_rmb": "900.00"})

    contract_no: Text = ""
    fee_rmb: Money = Decimal(0)
    voucher_rmb: Money = Decimal(0)

    @model_validator(mode="after")
    def _voucher(self) -> ServiceRecordIn:
        if self.voucher_rmb > self.fee_rmb:
            raise ValueError("the voucher cannot exceed the fee")
        return self


class RatingIn(BaseModel):
    model_config = example_config({"rating": 5, "comment": "数据质量好，服务及时"})

    rating: int = Field(ge=1, le=5, description="1 (poor) to 5 (excellent)")
    comment: Text = ""


class ServiceRecord(BaseModel):
    booking_id: int
    contract_no: str
    fee_rmb: Decimal
    voucher_rmb: Decimal
    rating: int | None
    comment: str
    rated_at: datetime | None
    updated_at: datetime
