"""The built-in web dashboard: static files under ``/ui/`` and the ``/whoami`` call it starts with.

The dashboard is plain HTML, CSS and ES modules shipped in ``monitor_api/static`` (no build
step, no CDN: the chart library is vendored), so it works on intranets without internet. It
authenticates like any API client, with a bearer token, and asks ``/whoami`` which role and
institutions the token has so it can offer the right pages and scope a lab manager's board.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from monitor_api.auth import Caller, Role
from monitor_api.db import DbConn, fetch_one

STATIC_DIR = Path(__file__).parent / "static"
UI_PATH = "/ui"

# Everything the pages load comes from this server: a browser refuses any other origin, so a
# stray CDN reference fails loudly in the browser tests instead of silently on an intranet.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:;"
        " connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none';"
        " frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["dashboard"])


class WhoAmI(BaseModel):
    """The caller's role and scope; ``institutions`` is a lab manager's institution tree,
    ``institution_name`` the name of its top, which the dashboard's header shows."""

    role: Role
    institution_id: str | None
    institution_name: str | None
    user_id: str | None
    institutions: list[str]


@router.get("/whoami", response_model=WhoAmI)
async def whoami(caller: Caller, conn: DbConn) -> dict[str, Any]:
    """Who the token belongs to (any role): the dashboard checks a pasted token with this."""
    named = None if caller.institution_id is None else await fetch_one(
        conn, "SELECT name FROM institution WHERE id = %s", (caller.institution_id,))
    return {
        "role": caller.role,
        "institution_id": caller.institution_id,
        "institution_name": None if named is None else named["name"],
        "user_id": caller.user_id,
        "institutions": sorted(caller.institutions),
    }


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse(f"{UI_PATH}/", status_code=307)


class DashboardFiles(StaticFiles):
    """Static files with a strict same-origin Content-Security-Policy and revalidation."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


def install(app: FastAPI) -> None:
    """Serve the dashboard at ``/ui/`` (``/`` redirects there) and add ``/whoami``."""
    app.include_router(router)
    app.mount(UI_PATH, DashboardFiles(directory=STATIC_DIR, html=True), name="ui")
