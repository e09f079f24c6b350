"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


# HEAD too, as load balancers probe with either (kept out of the schema: the same operation)
@router.get("/healthz")
@router.head("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """The process is up (no dependencies checked)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "The database is unreachable"}})
@router.head("/readyz", include_in_schema=False)
async def readyz(request: Request) -> Any:
    """Ready when the database answers within two seconds."""
    pool = request.app.state.pool
    try:
        async with pool.connection(timeout=2.0) as conn:
            await conn.execute("SELECT 1")
    except Exception as exc:  # any failure means not ready; the reason is reported
        return JSONResponse(
            {"status": "unavailable", "error": "database", "message": type(exc).__name__},
            status_code=503,
        )
    return {"status": "ready"}
