"""What Grafana does to a dashboard's SQL before PostgreSQL sees it, so tests can run the SQL.

Two steps, as in Grafana: the frontend interpolates template variables (``$institution``,
``$__interval``, ``$__interval_ms``), then the PostgreSQL data source's backend expands macros
(``$__timeFilter(col)`` and friends; grafana/grafana pkg/tsdb/grafana-postgresql-datasource
macros.go) with ``timescaledb: false``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards" / "json"
DATASOURCES_FILE = ROOT / "dashboards" / "provisioning" / "datasources" / "instrushare.yml"

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)\]\]")
_INTERVAL = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 7 * 86_400_000, "y": 365 * 86_400_000}
# Grafana rounds the computed interval to one of these (kbn.roundInterval), in ms.
_NICE_MS = [1, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 20_000, 30_000,
            60_000, 120_000, 300_000, 600_000, 900_000, 1_200_000, 1_800_000, 3_600_000,
            7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000, 604_800_000]


class MacroError(ValueError):
    """A macro Grafana's PostgreSQL data source would refuse."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def ms(self) -> int:
        return int((self.end - self.start).total_seconds() * 1000)


@dataclass(frozen=True, slots=True)
class Target:
    dashboard: str
    panel_id: int
    panel_title: str
    panel_interval: str | None
    target: Mapping[str, Any]


def parse_interval_ms(text: str) -> int:
    """Grafana's interval syntax (``30s``, ``5m``, ``1h``, ``1d``) in milliseconds."""
    match = _INTERVAL.match(text.strip().strip("'"))
    if not match:
        raise MacroError(f"cannot parse interval {text!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def format_interval(ms: int) -> str:
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def panel_interval_ms(time_range: TimeRange, min_interval: str | None,
                      max_data_points: int = 1000) -> int:
    """$__interval_ms as Grafana computes it: range / data points, rounded, at least the minimum."""
    raw = time_range.ms / max_data_points
    nice = next((n for n in _NICE_MS if n >= raw), _NICE_MS[-1])
    if min_interval:
        nice = max(nice, parse_interval_ms(min_interval))
    return nice


def _rfc3339(moment: datetime) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped, ``Z`` suffix."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _go_float(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def expand_macros(sql: str, time_range: TimeRange) -> str:
    """The backend step: Grafana's PostgreSQL macros to plain SQL (timescaledb disabled)."""

    def evaluate(name: str, args: list[str]) -> str:
        start, end = _rfc3339(time_range.start), _rfc3339(time_range.end)
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            if not args[0]:
                raise MacroError("missing time column argument for macro __timeFilter")
            return f"{args[0]} BETWEEN '{start}' AND '{end}'"
        if name == "__timeFrom":
            return f"'{start}'"
        if name == "__timeTo":
            return f"'{end}'"
        if name in ("__timeGroup", "__timeGroupAlias"):
            if len(args) < 2:
                raise MacroError(f"macro {name} needs time column and interval")
            seconds = _go_float(parse_interval_ms(args[1]) / 1000)
            group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
            return group + (' AS "time"' if name == "__timeGroupAlias" else "")
        if name == "__unixEpochFilter":
            lo, hi = int(time_range.start.timestamp()), int(time_range.end.timestamp())
            return f"{args[0]} >= {lo} AND {args[0]} <= {hi}"
        raise MacroError(f"unknown macro {name!r}")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        args = [a.strip(" ") for a in match.group(2).split(",")]
        if name == "__timeGroup":
            # Grafana's pre-5.3 compatibility: a ',' right after the call means alias it.
            after = sql.find(match.group(0)) + len(match.group(0))
            if after < len(sql) and sql[after] == ",":
                name = "__timeGroupAlias"
        return evaluate(name, args)

    return _MACRO.sub(replace, sql)


def quote_sql_values(values: Sequence[str]) -> str:
    """How the SQL data sources render a multi-value or All variable: 'a','b'."""
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


def interpolate(sql: str, variables: Mapping[str, str]) -> str:
    """The frontend step: known variables replaced, anything else (macros) left as written."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(4)
        return variables.get(name, match.group(0))

    return _VARIABLE.sub(replace, sql)


def render(sql: str, *, time_range: TimeRange, variables: Mapping[str, str],
           min_interval: str | None) -> str:
    """Dashboard SQL to what PostgreSQL receives from Grafana."""
    interval_ms = panel_interval_ms(time_range, min_interval)
    every = {"__interval": format_interval(interval_ms), "__interval_ms": str(interval_ms),
             **variables}
    return expand_macros(interpolate(sql, every), time_range)


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON by file name."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def all_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Top-level panels and those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets(datasource_type: str) -> list[Target]:
    """Every query target of that data source type across the dashboards."""
    found: list[Target] = []
    for name, dashboard in load_dashboards().items():
        for panel in all_panels(dashboard):
            for target in panel.get("targets", []):
                ds = target.get("datasource") or panel.get("datasource") or {}
                if ds.get("type") == datasource_type:
                    found.append(Target(name, panel["id"], panel["title"],
                                        panel.get("interval"), target))
    return found
