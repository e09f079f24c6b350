"""CSV and XLSX renderings of report rows with Chinese, English or bilingual headers."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fastapi.responses import Response
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from starlette.concurrency import run_in_threadpool

from monitor_api.settings import TIMEZONE

if TYPE_CHECKING:
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}, XLSX_TYPE: {}}}}
"""OpenAPI ``responses`` of a route that ``render``s: JSON, or CSV and XLSX files."""


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"


class Lang(StrEnum):
    ZH = "zh"
    EN = "en"
    BOTH = "both"


FILE_ZONE = ZoneInfo(TIMEZONE)
"""Times in files are in the zone whose days the periods are counted in."""
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet program read a CSV cell as a formula (OWASP: CSV injection)."""

Labels = Mapping[str, Mapping[str, tuple[str, str]]]
"""Per column, the (Chinese, English) words for the codes it holds: files read as words."""
YES_NO = {True: ("是", "yes"), False: ("否", "no")}
"""Every yes/no column's words, rather than Python's True and False."""
UNIT_NAME = ("institution_name", "单位名称", "Institution name")
"""The column after a row's ``institution_id``: the unit's registered name, which is what a
reader knows it by."""
SHARES = frozenset({"openness_ratio", "availability", "voucher_share", "open_share"})
"""Columns holding a share of 1 (0.2396): a workbook shows them as percentages (23.96%), as
the dashboard does, and keeps the exact value."""
MONEY_SUFFIX = "_rmb"
"""Columns named so hold yuan: files show them with two decimals (1000.50, never 1000.5)."""
_PERCENT = "0.00%"
_YUAN = "#,##0.00"
_DATE = re.compile(r"-\d{4}-\d{2}-\d{2}")
"""A period's dates in a file name, which a sheet name leaves out."""
SHEET_NAME_MAX = 31
"""Excel's limit on a sheet name: a longer one is refused, never cut mid-word."""
NOT_IN_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""What XML 1.0 cannot hold, and so no XLSX cell: control characters and the noncharacters
U+FFFE and U+FFFF (openpyxl's own pattern knows only the first and writes a workbook no
program opens)."""


def _in(lang: Lang, zh: str, en: str) -> str:
    if lang is Lang.ZH:
        return zh
    if lang is Lang.EN:
        return en
    return f"{zh} {en}"


def headers(columns: Sequence[tuple[str, str, str]], lang: Lang) -> list[str]:
    return [_in(lang, zh, en) for _, zh, en in columns]


def _values(row: dict[str, Any], columns: Sequence[tuple[str, str, str]], lang: Lang,
            labels: Labels) -> list[Any]:
    values = []
    for key, _, _ in columns:
        value = row.get(key)
        words: tuple[str, str] | None = None
        if isinstance(value, bool):
            words = YES_NO[value]
        elif isinstance(value, str):
            words = labels.get(key, {}).get(value)
        values.append(_in(lang, *words) if words else value)
    return values


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]],
           lang: Lang, labels: Labels | None = None) -> bytes:
    """UTF-8 with a byte-order mark, so spreadsheet programs read the Chinese headers. Text
    that a spreadsheet would take for a formula (a name typed as ``=HYPERLINK(...)``) gets a
    leading apostrophe, which they show as text."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers(columns, lang))
    money = _money(columns)
    for row in rows:
        writer.writerow([_csv_cell(v, m) for v, m
                         in zip(_values(row, columns, lang, labels or {}), money, strict=True)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _moment(value: datetime) -> str:
    """2026-11-29T06:00:00+08:00: the day the period counts it in, at a glance."""
    return value.astimezone(FILE_ZONE).isoformat()


def _money(columns: Sequence[tuple[str, str, str]]) -> list[bool]:
    return [key.endswith(MONEY_SUFFIX) for key, _, _ in columns]


def _is_amount(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _csv_cell(value: Any, money: bool) -> Any:
    if value is None:
        return ""
    if money and _is_amount(value):
        return f"{value:.2f}"
    if isinstance(value, datetime) and value.tzinfo is not None:
        return _moment(value)
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def to_xlsx(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]],
            lang: Lang, title: str, labels: Labels | None = None) -> bytes:
    if len(title) > SHEET_NAME_MAX:
        raise ValueError(f"sheet name {title!r} is longer than {SHEET_NAME_MAX} characters")
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=title)
    sheet.append(headers(columns, lang))
    formats = [_PERCENT if key in SHARES else _YUAN if money else None
               for (key, _, _), money in zip(columns, _money(columns), strict=True)]
    for row in rows:
        sheet.append([_cell(sheet, v, f) for v, f
                      in zip(_values(row, columns, lang, labels or {}), formats, strict=True)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _cell(sheet: WriteOnlyWorksheet, value: Any, number_format: str | None) -> Any:
    """Text is always a text cell, never a formula, with the characters XML cannot hold
    shown as U+FFFD: what users type (names, comments) is data, whatever it looks like.
    A number is shown in its column's ``number_format`` (a share as a percentage, yuan with
    two decimals) and keeps its exact value; a moment is a date-time cell in the periods'
    zone (Excel's have none), which sorts, filters and subtracts as one."""
    if number_format is not None and _is_amount(value):
        cell = WriteOnlyCell(sheet, value)
        cell.number_format = number_format
        return cell
    if isinstance(value, list | tuple | set):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, datetime) and value.tzinfo is not None:
        cell = WriteOnlyCell(sheet, value.astimezone(FILE_ZONE).replace(tzinfo=None))
        cell.number_format = "yyyy-mm-dd hh:mm:ss"
        return cell
    if not isinstance(value, str):
        return value
    cell = WriteOnlyCell(sheet, NOT_IN_XML.sub("\ufffd", value))
    cell.data_type = "s"
    return cell


async def render(
    body: dict[str, Any], rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str, str]], fmt: Format, lang: Lang, name: str,
    labels: Labels | None = None, *, sheet: str | None = None,
) -> Response | dict[str, Any]:
    """JSON returns ``body``, which the route's response model then checks and serialises
    (so the body is what the OpenAPI schema says); CSV and XLSX return ``rows`` as a file,
    written in a worker thread: a workbook of a few thousand instruments takes the better part
    of a second, during which the event loop serves the live board and its streams. The file
    is ``name``, its sheet ``sheet`` (by default ``name`` without the period's dates)."""
    if fmt is Format.JSON:
        return body
    if fmt is Format.CSV:
        text = await run_in_threadpool(to_csv, rows, columns, lang, labels)
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    book = await run_in_threadpool(to_xlsx, rows, columns, lang,
                                   sheet or _DATE.sub("", name), labels)
    return Response(book, media_type=XLSX_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
