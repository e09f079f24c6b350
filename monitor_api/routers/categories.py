"""The national classification of research instruments, for pickers and client-side labels."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from monitor_api.auth import Caller
from monitor_api.categories import CATEGORY_NAMES
from monitor_api.schemas import Categories

router = APIRouter(tags=["registry"])


@router.get("/categories", response_model=Categories)
async def categories(_: Caller) -> dict[str, Any]:
    """The classes of the first two levels that have names, in code order: what
    ``category_name`` and the reports grouped by category name."""
    return {"items": [{"code": code, "name": name.zh, "name_en": name.en}
                      for code, name in sorted(CATEGORY_NAMES.items())]}
