"""Validate a list in CSV (instruments, reported use): every bad row is reported, nothing is
taken half-way."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Generic, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from monitor_api.errors import BadRequest, UnsupportedMedia, problem_text
from monitor_api.schemas import InstrumentIn

REQUIRED = ("id", "name", "institution_id")
COLUMNS = frozenset(InstrumentIn.model_fields)
_TRUE = {"1", "true", "yes", "y", "是", "开放"}
_FALSE = {"0", "false", "no", "n", "否", "不开放"}

MAX_ROWS = 200_000
"""Rows a file may hold (instruments, reported use). The body's size alone does not bound the
work: 20 MiB of minimal lines (``m1,n,uni``) are 1.4 million rows, which held over 2 GB once
parsed and took minutes to check and store; 100,000 instruments with the usual columns take
about 6 MiB."""

M = TypeVar("M", bound=BaseModel)


async def csv_text(request: Request) -> str:
    """The body of a CSV upload as text: sent as ``text/csv`` (a form or JSON body sent here by
    mistake would otherwise be read as a file full of bad lines) in UTF-8."""
    media, _, params = request.headers.get("content-type", "").partition(";")
    if media.strip().lower() != "text/csv":
        raise UnsupportedMedia(f"the body must be CSV (Content-Type: text/csv), not"
                               f" {media.strip() or 'untyped'}")
    charset = next((v.strip().strip('"').lower() for k, _, v in
                    (p.partition("=") for p in params.split(";")) if k.strip() == "charset"),
                   "utf-8")
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMedia(f"the file must be UTF-8 text, not {charset}")
    body = await request.body()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:  # mostly a spreadsheet's plain CSV, which is GBK in China
        line = body.count(b"\n", 0, exc.start) + 1
        raise BadRequest(f"the file is not UTF-8 text (line {line}): save it as CSV UTF-8"
                         " (the spreadsheet's 'CSV UTF-8' type; its plain CSV is often GBK)"
                         ) from exc


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class Parsed(Generic[M]):
    """The rows of a file with their line numbers, its errors and the columns it has."""

    rows: list[tuple[int, M]]
    errors: list[RowError]
    columns: frozenset[str] = frozenset()


def parse_instruments(text: str) -> Parsed[InstrumentIn]:
    """Parse an instrument list; ``errors`` is empty when it is clean."""
    return parse_rows(text, InstrumentIn, required=REQUIRED, key="id")


def parse_rows(text: str, model: type[M], *, required: Sequence[str], key: str,
               max_rows: int = MAX_ROWS) -> Parsed[M]:
    """Parse a file of ``model`` rows with a header line of its field names (``required``
    among them); ``key`` names the field no two rows may share. A file of more than
    ``max_rows`` rows is refused whole, as soon as its next row is read, with that one error."""
    columns = frozenset(model.model_fields)
    # newline=None: a lone CR ends a line too, as older Mac spreadsheets write them
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=None))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return Parsed([], [RowError(1, "the file is empty; a header line is required")])
    except csv.Error as exc:
        return Parsed([], [RowError(1, f"unreadable CSV: {exc}")])
    unknown = [h for h in header if h not in columns]
    missing = [h for h in required if h not in header]
    if unknown or missing or len(set(header)) != len(header):
        reason = "; ".join(
            part
            for part in (
                f"unknown columns: {', '.join(unknown)}" if unknown else "",
                f"missing columns: {', '.join(missing)}" if missing else "",
                "duplicate column names" if len(set(header)) != len(header) else "",
            )
            if part
        )
        return Parsed([], [RowError(1, reason)])
    rows: list[tuple[int, M]] = []
    errors: list[RowError] = []
    first: dict[str, int] = {}  # each key's first line, good or bad
    at = header.index(key)
    line = 1
    count = 0
    while True:
        start = line + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(start, f"unreadable CSV: {exc}"))
            break
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        count += 1
        if count > max_rows:
            return Parsed([], [RowError(start, f"the file holds more than {max_rows:,} rows:"
                                               f" split it into files of at most {max_rows:,}"
                                               " rows")], frozenset(header))
        problems = []
        named = record[at].strip() if at < len(record) else ""
        if named in first:
            problems.append(f"{key} {named!r} already appears on line {first[named]}")
        elif named:
            first[named] = start
        if len(record) != len(header):
            problems.append(f"expected {len(header)} fields, found {len(record)}")
        else:
            try:
                values = _convert(dict(zip(header, record, strict=True)), model)
                item = model.model_validate(values)
            except (ValueError, ValidationError) as exc:
                problems.append(_reason(exc))
        if problems:
            errors.append(RowError(start, "; ".join(problems)))
        else:
            rows.append((start, item))
    return Parsed(rows, errors, frozenset(header))


@cache
def _typed(model: type[BaseModel]) -> tuple[frozenset[str], frozenset[str]]:
    """The model's yes/no fields and its integer fields."""
    fields = model.model_fields.items()
    return (frozenset(n for n, f in fields if f.annotation is bool),
            frozenset(n for n, f in fields if f.annotation is int))


def _convert(raw: dict[str, str], model: type[BaseModel]) -> dict[str, object]:
    bools, ints = _typed(model)
    values: dict[str, object] = {}
    for key, cell in raw.items():
        cell = cell.strip()
        if cell == "":
            continue
        if key in bools:
            low = cell.lower()
            if low not in _TRUE | _FALSE:
                raise ValueError(f"{key}: {cell!r} is not yes/no")
            values[key] = low in _TRUE
        elif key in ints:
            values[key] = int(cell) if cell.isdigit() else cell
        else:
            values[key] = cell
    return values


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(problem_text(e["loc"], e["msg"]) for e in exc.errors())
    return str(exc)
