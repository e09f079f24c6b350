"""``instrushare api``: serve the API, or print a new admin token to get started."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from monitor_api.auth import Role
from monitor_api.settings import ApiSettings


def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    create_admin_token: Annotated[
        bool, typer.Option(help="Print a new admin token and exit (shown once, stored hashed).")
    ] = False,
    label: Annotated[str, typer.Option(help="Label stored with a created token.")] = "cli",
) -> None:
    """Serve the monitor API (DATABASE_URL; INSTRUSHARE_API_* settings)."""
    settings = ApiSettings()
    if create_admin_token:
        typer.echo(asyncio.run(create_token(settings, role=Role.ADMIN, label=label)))
        return
    import uvicorn

    from monitor_api.app import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


async def create_token(
    settings: ApiSettings, *, role: Role, institution_id: str | None = None,
    user_id: str | None = None, label: str = "",
) -> str:
    """Create and return a token directly in the database (bootstrap, scripts)."""
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row

    from monitor_api.auth import create_token as store

    async with await AsyncConnection.connect(
        settings.database_url, row_factory=dict_row
    ) as conn:
        _, token = await store(conn, role=role, institution_id=institution_id,
                               user_id=user_id, label=label)
    return token
