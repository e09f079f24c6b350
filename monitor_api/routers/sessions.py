"""An instrument's session log: the usage sessions its figures are made of, one by one."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from monitor_api.auth import Caller, Role
from monitor_api.db import DbConn, Settings
from monitor_api.exports import FILE_RESPONSES, FILE_ZONE, Format, Lang, render
from monitor_api.queries.sessions import instrument_sessions
from monitor_api.routers.registry import visible_instrument
from monitor_api.routers.status import check_span
from monitor_api.schemas import Limit, Moment, Offset, Page
from monitor_api.schemas_bookings import BookingKind

router = APIRouter(tags=["status"])


class UsageSession(BaseModel):
    start: datetime
    end: datetime | None = Field(description="null while the session is still open.")
    last_ts: datetime = Field(description="Its latest running sample.")
    running_s: float = Field(
        description="Running time, unclipped: to its end, or to its latest sample while open.")
    counted: bool = Field(
        description="Long enough for the instrument's noise filter (min_session_s): only "
                    "counted sessions enter the figures.")
    user_id: str | None = Field(
        description="Whom its time counts for: the user its gateway reported, else the user "
                    "of the booking it started in; null: unknown.")
    user_name: str | None
    user_from: Literal["reported", "booking"] | None = Field(
        description="Where user_id comes from.")
    booking_kind: BookingKind | None = Field(
        description="The kind of the booking user_id was taken from.")
    outside: bool = Field(description="user_id is an outside user: its time is external.")
    uncertified: bool = Field(
        description="Its user operated the instrument (reported, or of a self-operated "
                    "booking) without a certification valid at its start.")


COLUMNS = [
    ("start", "开始时间", "Start"), ("end", "结束时间", "End"),
    ("running_s", "运行时长(秒)", "Running (s)"), ("counted", "计入统计", "Counted"),
    ("user_id", "用户编号", "User"), ("user_name", "用户姓名", "User name"),
    ("user_from", "用户来源", "User from"), ("booking_kind", "预约方式", "Booking kind"),
    ("outside", "外单位", "Outside user"), ("uncertified", "无资质使用", "Uncertified"),
]
LABELS = {
    "user_from": {"reported": ("网关上报", "reported"), "booking": ("按预约", "booking")},
    "booking_kind": {"self": ("自主操作", "self-operated"),
                     "assisted": ("工作人员协助", "operator-assisted"),
                     "sample": ("送样测试", "sample submission")},
}


@router.get("/instruments/{instrument_id}/sessions", response_model=Page[UsageSession],
            responses=FILE_RESPONSES)
async def session_log(
    conn: DbConn,
    caller: Caller,
    settings: Settings,
    instrument_id: str,
    start: Moment,
    end: Moment,
    format: Format = Format.JSON,
    lang: Lang = Lang.BOTH,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response | dict[str, Any]:
    """The usage sessions overlapping ``[start, end)``, in start order and not clipped to it,
    each with whom its time counts for, by the rules of docs/metrics.md: why an instrument's
    figures are what they are. A file holds every session of the period, JSON one page.

    A registered user gets their own sessions of a listed instrument only: the log names
    whom each session's time counts for."""
    check_span(start, end)
    await visible_instrument(conn, caller, instrument_id)
    found = await instrument_sessions(
        conn, instrument_id=instrument_id, lo=start, hi=end, grace=settings.no_show_grace,
        user_id=caller.user_id if caller.role is Role.USER else None,
        limit=limit if format is Format.JSON else None,
        offset=offset if format is Format.JSON else 0)
    days = (moment.astimezone(FILE_ZONE).date() for moment in (start, end))  # as the file's
    name = f"sessions-{instrument_id}-{'-'.join(map(str, days))}"
    return await render(found, found["items"], COLUMNS, format, lang, name, LABELS,
                        sheet="sessions")
