"""Every XLSX export, opened as a spreadsheet program would: its sheet has a whole name."""

from __future__ import annotations

import io

import openpyxl

from monitor_api.exports import XLSX_TYPE
from tests.api.conftest import Api

PARAMS = {"start": "2025-03-01", "end": "2025-03-31", "category": "0104", "as_of": "2025-12-31",
          "days": "30", "format": "xlsx"}
"""Enough for every export, each given those it takes."""
MOMENTS = {"start": "2025-03-01T00:00:00+08:00", "end": "2025-04-01T00:00:00+08:00"}
"""The period as times, for the exports that take times rather than days."""
SHEETS = {
    "/reports/utilisation": "utilisation-instrument",
    "/reports/service-records": "service-records",
    "/evaluation/2025/instruments": "evaluation-2025-instruments",
    "/evaluation/2025/institutions": "evaluation-2025-institutions",
    "/evaluation/2025/low-utilisation": "low-utilisation-2025",
    "/evaluation/silent": "silent-30d",
    "/evaluation/overdue-registrations": "overdue-registrations",
    "/evaluation/2025/duplicate-review": "duplicate-review-2025-0104",
    "/evaluation/2025/published/institutions": "published-2025-institutions",
    "/evaluation/2025/published/instruments": "published-2025-instruments",
    "/evaluation/2025/reported-use": "reported-use-2025",
    "/evaluation/2025/assessments": "assessments-2025",
    "/instruments/nmr/sessions": "sessions",
}
"""Each export's sheet: the file's name without the period's dates, or for one that would
run past Excel's 31 characters, a shorter whole name."""


def test_every_export_names_its_sheet_in_whole(api: Api) -> None:
    with api.as_("admin") as c:
        taken = {
            path.replace("{year}", "2025").replace("{instrument_id}", "nmr"):
            {p["name"] for p in methods["get"]["parameters"] if p["in"] == "query"}
            for path, methods in c.get("/openapi.json").json()["paths"].items()
            if XLSX_TYPE in methods.get("get", {}).get("responses", {}).get("200", {})
            .get("content", {})}
        assert sorted(taken) == sorted(SHEETS)  # a new export gets its sheet name checked here
        published = c.put("/evaluation/2025/publication", json={"note": ""})
        assert published.status_code == 200, published.text
        sheets = {}
        for path, names in sorted(taken.items()):
            times = MOMENTS if path.startswith("/instruments") else {}
            params = {k: v for k, v in (PARAMS | times).items() if k in names}
            response = c.get(path, params=params)
            assert response.status_code == 200, (path, response.text)
            book = openpyxl.load_workbook(io.BytesIO(response.content))
            sheets[path] = book.sheetnames
    assert sheets == {path: [name] for path, name in SHEETS.items()}
