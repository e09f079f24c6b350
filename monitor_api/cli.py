"""``instrushare api``: serve the API, or print a new admin token to get started."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Annotated

import typer

from instrushare.signals import ignoring_repeats
from monitor_api.auth import Role
from monitor_api.settings import ApiSettings

Port = Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")]


def listen(host: str, port: int) -> socket.socket:
    """The API's socket, bound before the app starts: an address in use or unknown fails at
    once, OSError saying which (uvicorn, binding it after the app's startup, logs the error
    and may go on to wait for the app's background work)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                      ) from None
    return sock


def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Port = 8000,
    create_admin_token: Annotated[
        bool, typer.Option(help="Print a new admin token and exit (shown once, stored hashed).")
    ] = False,
    label: Annotated[str, typer.Option(help="Label stored with a created token.")] = "cli",
) -> None:
    """Serve the monitor API and the web dashboard at / (DATABASE_URL; INSTRUSHARE_API_*
    settings). The first login: --create-admin-token."""
    settings = ApiSettings()
    if create_admin_token:  # the token alone on stdout, for TOKEN=$(...)
        token_id, token = asyncio.run(issue_token(settings, role=Role.ADMIN, label=label))
        typer.echo(token)
        typer.echo(f"token {token_id} (label {label!r}); GET /tokens lists the tokens issued,"
                   f" DELETE /tokens/{token_id} revokes this one", err=True)
        return
    import uvicorn

    from instrushare.db import check_schema
    from monitor_api.app import create_app

    check_schema(settings.database_url)  # not there, or not migrated: one line, at once

    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="info"))
    # uvicorn takes a second SIGINT as "force quit", cancelling the app's shutdown: not the
    # copy that ``timeout -s INT`` sends to the process group. It installs handle_exit while
    # it serves, so the instance's is replaced.
    server.handle_exit = ignoring_repeats(  # type: ignore[method-assign,assignment]
        server.handle_exit)
    # uvicorn stops on SIGINT and SIGTERM, then raises them again for the handlers it found
    # (for a program embedding it): the default one would end the process with 143 after the
    # clean shutdown. Its own handler only asks it to stop, harmless then, and it also stops
    # a server signalled before it serves.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, server.handle_exit)
    listening = listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    logging.getLogger("monitor_api").info("listening on http://%s:%d/ (API docs at /docs)",
                                          shown, port)
    server.run(sockets=[listening])


async def issue_token(
    settings: ApiSettings, *, role: Role, institution_id: str | None = None,
    user_id: str | None = None, label: str = "",
) -> tuple[int, str]:
    """Create a token directly in the database (bootstrap, scripts): its id and itself."""
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row

    from monitor_api.auth import create_token as store

    async with await AsyncConnection.connect(
        settings.database_url, row_factory=dict_row
    ) as conn:
        return await store(conn, role=role, institution_id=institution_id, user_id=user_id,
                           label=label)


async def create_token(
    settings: ApiSettings, *, role: Role, institution_id: str | None = None,
    user_id: str | None = None, label: str = "",
) -> str:
    """``issue_token``'s token alone."""
    _, token = await issue_token(settings, role=role, institution_id=institution_id,
                                 user_id=user_id, label=label)
    return token
