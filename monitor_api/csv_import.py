"""Validate an instrument list in CSV: every bad row is reported, nothing is taken half-way."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from pydantic import ValidationError

from monitor_api.schemas import InstrumentIn

REQUIRED = ("id", "name", "institution_id")
COLUMNS = frozenset(InstrumentIn.model_fields)
_TRUE = {"1", "true", "yes", "y", "是", "开放"}
_FALSE = {"0", "false", "no", "n", "否", "不开放"}
_BOOLS = {n for n, f in InstrumentIn.model_fields.items() if f.annotation is bool}
_INTS = {n for n, f in InstrumentIn.model_fields.items() if f.annotation is int}


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class Parsed:
    """The rows of a file with their line numbers, its errors and the columns it has."""

    rows: list[tuple[int, InstrumentIn]]
    errors: list[RowError]
    columns: frozenset[str] = frozenset()


def parse_instruments(text: str) -> Parsed:
    """Parse the file; ``errors`` is empty when it is clean."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return Parsed([], [RowError(1, "the file is empty; a header line is required")])
    except csv.Error as exc:
        return Parsed([], [RowError(1, f"unreadable CSV: {exc}")])
    unknown = [h for h in header if h not in COLUMNS]
    missing = [h for h in REQUIRED if h not in header]
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
    rows: list[tuple[int, InstrumentIn]] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    line = 1
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
        if len(record) != len(header):
            errors.append(RowError(start, f"expected {len(header)} fields, found {len(record)}"))
            continue
        try:
            values = _convert(dict(zip(header, record, strict=True)))
            item = InstrumentIn.model_validate(values)
        except (ValueError, ValidationError) as exc:
            errors.append(RowError(start, _reason(exc)))
            continue
        if item.id in seen:
            first = seen[item.id]
            errors.append(RowError(start, f"id {item.id!r} already appears on line {first}"))
            continue
        seen[item.id] = start
        rows.append((start, item))
    return Parsed(rows, errors, frozenset(header))


def _convert(raw: dict[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for key, cell in raw.items():
        cell = cell.strip()
        if cell == "":
            continue
        if key in _BOOLS:
            low = cell.lower()
            if low not in _TRUE | _FALSE:
                raise ValueError(f"{key}: {cell!r} is not yes/no")
            values[key] = low in _TRUE
        elif key in _INTS:
            values[key] = int(cell) if cell.isdigit() else cell
        else:
            values[key] = cell
    return values


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)
