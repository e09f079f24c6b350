"""CSV and XLSX renderings of report rows with Chinese, English or bilingual headers."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from fastapi.responses import Response
from openpyxl import Workbook
from starlette.concurrency import run_in_threadpool

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"


class Lang(StrEnum):
    ZH = "zh"
    EN = "en"
    BOTH = "both"


def headers(columns: Sequence[tuple[str, str, str]], lang: Lang) -> list[str]:
    if lang is Lang.ZH:
        return [zh for _, zh, _ in columns]
    if lang is Lang.EN:
        return [en for _, _, en in columns]
    return [f"{zh} {en}" for _, zh, en in columns]


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]],
           lang: Lang) -> bytes:
    """UTF-8 with a byte-order mark, so spreadsheet programs read the Chinese headers."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers(columns, lang))
    for row in rows:
        writer.writerow(["" if row.get(k) is None else row.get(k) for k, _, _ in columns])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]],
            lang: Lang, title: str) -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=title[:31])
    sheet.append(headers(columns, lang))
    for row in rows:
        sheet.append([_cell(row.get(k)) for k, _, _ in columns])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple | set):
        return ", ".join(str(v) for v in value)
    if hasattr(value, "tzinfo") and getattr(value, "tzinfo", None) is not None:
        return value.isoformat()
    return value


async def render(
    body: dict[str, Any], rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str, str]], fmt: Format, lang: Lang, name: str,
) -> Response | dict[str, Any]:
    """JSON returns ``body``, which the route's response model then checks and serialises
    (so the body is what the OpenAPI schema says); CSV and XLSX return ``rows`` as a file,
    written in a worker thread: a workbook of a few thousand instruments takes the better part
    of a second, during which the event loop serves the live board and its streams."""
    if fmt is Format.JSON:
        return body
    if fmt is Format.CSV:
        text = await run_in_threadpool(to_csv, rows, columns, lang)
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    book = await run_in_threadpool(to_xlsx, rows, columns, lang, name)
    return Response(book, media_type=XLSX_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
