"""Request and response models shared by the routers: pagination and the registry."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Path, Query
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    computed_field,
    model_validator,
)

from instrushare.protocol import Identifier
from monitor_api.categories import category_name

T = TypeVar("T")


def _not_blank(value: str) -> str:
    """Some character that shows: not only spaces, nor invisible ones such as the zero-width
    space (U+200B) pasted with a name, which would list as an empty one."""
    if all(c.isspace() or unicodedata.category(c) in ("Cf", "Cc") for c in value):
        raise ValueError("may not be blank (only spaces or invisible characters)")
    return value


def _no_nul(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("may not contain the NUL character (U+0000)")
    return value


_NO_NUL = r"^[^\x00]*$"
"""Said in the OpenAPI schema; ``NoNul`` refuses a NUL first, in words, not as a pattern."""
NoNul = BeforeValidator(_no_nul)
Text = Annotated[str, StringConstraints(max_length=500, pattern=_NO_NUL), NoNul]
LongText = Annotated[str, StringConstraints(max_length=2000, pattern=_NO_NUL), NoNul]
Label = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500, pattern=_NO_NUL),
                  NoNul]
"""Optional text that names something (a place, a region, a maker, an organisation), without
surrounding spaces (Unicode's, the ideographic one included): one of spaces only is empty,
"not given", as an empty cell of the CSV import is, and "沈阳 " groups and filters with
"沈阳"."""
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200, pattern=_NO_NUL),
                 AfterValidator(_not_blank), NoNul]
"""What an institution, an instrument or a platform user is called: stripped as a ``Label``
is, and required, so some text must be left once the spaces around it are gone."""
Reason = Annotated[LongText, AfterValidator(_not_blank)]
"""What a judgement rests on: required, so some text, not only spaces."""
CategoryCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
CATEGORY_PREFIX = r"^[0-9]{2}(?:[0-9]{2}){0,2}$"
"""A category code or its first 2 or 4 digits: the class at level 3, 1 or 2."""
Category = Annotated[str | None, Query(
    pattern=CATEGORY_PREFIX,
    description="Category code (6 digits) or its level-1 or level-2 class (2 or 4 digits).",
)]
Money = Annotated[Decimal, Field(ge=0, le=Decimal("999999999999.99"), decimal_places=2)]
Limit = Annotated[int, Field(ge=1, le=1000)]
UnitName = Annotated[str, Field(
    description="Registered name of the institution or sub-unit institution_id names.")]
"""A row's unit by name beside its id: a reader knows units by name."""

FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2199, 12, 31)
"""The dates the API accepts: far enough from the ends of the calendar that a day or a
margin added or taken off never overflows, in Python or in PostgreSQL."""


def _check_day(value: date, *, beyond: str = "") -> date:
    """``beyond``: what the message adds after the range (where the day lies out of it)."""
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"dates must lie between {FIRST_DAY} and {LAST_DAY}{beyond}")
    return value


def _check_moment(value: datetime) -> datetime:
    """On an allowed day where it was written and in UTC, where it is stored and computed."""
    _check_day(value.date())
    utc = value.astimezone(UTC)
    _check_day(utc.date(), beyond=f", in UTC too: this time is {utc:%Y-%m-%dT%H:%M}Z")
    return value


_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")
"""A number as text. Each character has one way to match, so a long text that only looks like
a number until its end is refused in linear time (``\\d+\\.?\\d*`` tried every split of a
run of digits: quadratic, hours for a 1 MiB body, on the event loop)."""


def _written_out(value: object) -> object:
    """Dates and times as ISO 8601 text only: pydantic would take a number (in JSON or a query
    string) for Unix seconds, a reading the API never promises and a typo would slip by."""
    if (isinstance(value, int | float | Decimal) and not isinstance(value, bool)) or (
            isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("write dates as YYYY-MM-DD and times in ISO 8601 with an offset"
                         " (2026-03-10T09:00:00+08:00), not as a number")
    return value


def _date_only(value: object) -> object:
    """A day as ``YYYY-MM-DD``: pydantic would also take a time at midnight in any zone for
    its date, which is not the day in Asia/Shanghai the API means."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        raise ValueError("write a day as YYYY-MM-DD")
    return _written_out(value)


Day = Annotated[date, BeforeValidator(_date_only), AfterValidator(_check_day)]
"""A date between 1900-01-01 and 2199-12-31."""
Moment = Annotated[AwareDatetime, BeforeValidator(_written_out), AfterValidator(_check_moment)]
"""A date and time with an offset, on a day between 1900-01-01 and 2199-12-31."""
Offset = Annotated[int, Field(ge=0, le=1_000_000_000)]
Year = Annotated[int, Path(ge=2000, le=2100)]
"""A calendar year to evaluate, in a route's path."""


def example_config(*examples: dict[str, Any]) -> ConfigDict:
    """A model that refuses unknown fields (a typo is an error, not a silent default) and
    shows ``examples`` in the OpenAPI schema."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


class Page(BaseModel, Generic[T]):
    """One page of a list; ``total`` counts every matching item."""

    items: list[T]
    total: int = Field(description="Number of items in the whole list, not only this page.")
    limit: int = Field(description="Largest number of items on a page, as asked.")
    offset: int = Field(description="Items skipped before this page, as asked.")


def page_of(items: list[Any], *, limit: int, offset: int, **fields: Any) -> dict[str, Any]:
    """A ``Page`` body holding one page of ``items`` (all of them already in memory), with the
    route's own ``fields``."""
    return {**fields, "items": items[offset : offset + limit], "total": len(items),
            "limit": limit, "offset": offset}


class Tier(StrEnum):
    """Shenyang art. 7: listed only, may serve, may accept innovation vouchers."""

    INCUBATION = "incubation"
    SERVICE = "service"
    VOUCHER = "voucher"


class InstitutionIn(BaseModel):
    model_config = example_config(  # the university, then its unit the other examples use
        {"id": "dlut", "name": "大连理工大学", "tier": "voucher", "region": "大连",
         "kind": "university"},
        {"id": "dlut-ac", "name": "大连理工大学分析测试中心", "parent_id": "dlut",
         "tier": "voucher", "kind": "analysis centre"},
    )

    id: Identifier
    name: Name
    parent_id: Identifier | None = None
    tier: Tier = Tier.SERVICE
    region: Label = ""
    kind: Label = ""


class Institution(InstitutionIn):
    model_config = ConfigDict(extra="ignore")

    created_at: datetime


class InstitutionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    parent_id: Identifier | None = None
    tier: Tier | None = None
    region: Label | None = None
    kind: Label | None = None


class InstrumentSettingsFields(BaseModel):
    warmup_s: int = Field(default=0, ge=0, le=86400, description="Added before each session.")
    cooldown_s: int = Field(default=0, ge=0, le=86400, description="Added after each session.")
    min_session_s: int = Field(
        default=0, ge=0, le=86400, description="Shorter sessions are noise and not counted."
    )
    auto_approve: bool = Field(default=False, description="Eligible requests are approved at once.")


def misdated(accepted_on: date | None, networked_on: date | None) -> str | None:
    """What is wrong with an instrument's dates, if anything: it goes on the platform
    (networked) once accepted, not before."""
    if accepted_on is not None and networked_on is not None and networked_on < accepted_on:
        return f"networked_on {networked_on} is before accepted_on {accepted_on}"
    return None


class InstrumentFields(InstrumentSettingsFields):
    """An instrument's registry entry, as written and as read."""

    model_config = example_config(
        {"id": "nmr-600", "name": "600 MHz 核磁共振波谱仪", "institution_id": "dlut-ac",
         "model": "AVANCE NEO 600", "maker": "Bruker", "category_code": "010401",
         "value_rmb": "5200000.00", "accepted_on": "2025-03-10",
         "networked_on": "2025-04-01", "location": "B楼101", "open_to_outside": True,
         "fee_schedule": "校外 600 元/小时", "gateway_id": "gw-dlut-1"}
    )

    id: Identifier
    name: Name
    institution_id: Identifier
    model: Label = ""
    maker: Label = ""
    category_code: CategoryCode | None = None
    value_rmb: Money | None = None
    accepted_on: Day | None = None
    networked_on: Day | None = None
    owner_unit: Label = ""
    location: Label = ""
    open_to_outside: bool = True
    fee_schedule: Text = ""
    gateway_id: Identifier | None = None
    awaiting_disposal: bool = Field(
        default=False, description="Marked for disposal (待报废): its national running state."
    )


class InstrumentIn(InstrumentFields):
    """An instrument to register (POST /instruments, a line of the CSV import)."""

    # not Instrument's: a row stored before the check existed still reads
    @model_validator(mode="after")
    def _dates(self) -> InstrumentIn:
        if problem := misdated(self.accepted_on, self.networked_on):
            raise ValueError(problem)
        return self


class Instrument(InstrumentFields):
    model_config = ConfigDict(extra="ignore")

    institution_name: UnitName
    created_at: datetime
    monitored_since: datetime | None = Field(
        default=None, description="When the platform first heard from it (its earliest sample)."
    )
    listed_at: datetime | None = Field(
        default=None, description="When an admin last reviewed and listed its catalogue entry;"
        " null: not listed, registered users do not see it.")
    listed_by: str | None = Field(default=None, description="Who listed it (role:token id).")
    listing: dict[str, Any] | None = Field(
        default=None, description="The catalogue entry registered users see (name, model, maker,"
        " category_code, location, open_to_outside, fee_schedule) as last reviewed; null for"
        " registered users, who get those values in the fields themselves.")
    review_pending: bool = Field(
        default=False, description="The registry's catalogue fields differ from the listed entry"
        " or it is not listed: an admin has something to review.")

    @computed_field(  # type: ignore[prop-decorator]
        description="The class ``category_code`` falls in, in the national classification"
        " (metrics.md, Grouping); null when it names none.")
    @property
    def category_name(self) -> str | None:
        name = category_name(self.category_code)
        return name.zh if name else None

    @computed_field(  # type: ignore[prop-decorator]
        description="``category_name`` in English.")
    @property
    def category_name_en(self) -> str | None:
        name = category_name(self.category_code)
        return name.en if name else None


class InstrumentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    institution_id: Identifier | None = None
    model: Label | None = None
    maker: Label | None = None
    category_code: CategoryCode | None = None
    value_rmb: Money | None = None
    accepted_on: Day | None = None
    networked_on: Day | None = None
    owner_unit: Label | None = None
    location: Label | None = None
    open_to_outside: bool | None = None
    fee_schedule: Text | None = None
    gateway_id: Identifier | None = None
    awaiting_disposal: bool | None = None
    warmup_s: int | None = Field(default=None, ge=0, le=86400)
    cooldown_s: int | None = Field(default=None, ge=0, le=86400)
    min_session_s: int | None = Field(default=None, ge=0, le=86400)
    auto_approve: bool | None = None


def unaffiliated(institution_id: str | None, organisation: str | None) -> str | None:
    """What is wrong with a user's affiliation, if anything: platform users belong to an
    institution or name an organisation, by which reports count outside organisations."""
    if institution_id is None and not (organisation or "").strip():
        return "a user belongs to an institution (institution_id) or names an organisation"
    return None


class UserFields(BaseModel):
    """A platform user, as written and as read."""

    model_config = example_config(
        {"id": "u-li", "name": "李明", "institution_id": "dlut",
         "organisation": "大连理工大学", "email": "li@example.org", "approved": True}
    )

    id: Identifier
    name: Name
    institution_id: Identifier | None = None
    organisation: Label = ""
    email: Text = ""
    approved: bool = False


class UserIn(UserFields):
    """A platform user to register."""

    # not User's: a row stored before the check existed still reads
    @model_validator(mode="after")
    def _affiliation(self) -> UserIn:
        if problem := unaffiliated(self.institution_id, self.organisation):
            raise ValueError(problem)
        return self


class User(UserFields):
    model_config = ConfigDict(extra="ignore")

    name: str  # a user stored before names were required still reads
    created_at: datetime


class ImportResult(BaseModel):
    imported: int


class CategoryClass(BaseModel):
    code: str = Field(description="Two- or four-digit category code.", examples=["0102"])
    name: str = Field(description="Its name in the national classification.",
                      examples=["质谱仪器"])
    name_en: str = Field(description="The name in English.", examples=["Mass spectrometers"])


class Categories(BaseModel):
    """The named classes of the national classification, in code order."""

    items: list[CategoryClass]
