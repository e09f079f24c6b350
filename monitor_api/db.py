"""The connection pool owned by the app's lifespan, and the request dependency that lends it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import Depends, Request
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from monitor_api.settings import ApiSettings

Conn = AsyncConnection[DictRow]
Pool = AsyncConnectionPool[Conn]
Connect = Callable[[], AbstractAsyncContextManager[Conn]]
"""Lends a connection, committed when returned, as ``Pool.connection`` does: for work that
runs as several transactions or on several connections at once."""


def make_pool(settings: ApiSettings) -> Pool:
    """Build a closed pool; the lifespan opens it (``open=False`` then ``await pool.open()``)."""
    return AsyncConnectionPool(
        settings.database_url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.pool_timeout_s,
        kwargs={"row_factory": dict_row, "options": "-c TimeZone=UTC"},
        connection_class=AsyncConnection[DictRow],
        open=False,
        name="monitor_api",
    )


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_conn(request: Request) -> AsyncIterator[Conn]:
    """One pooled connection per request; committed when the handler returns normally."""
    pool: Pool = request.app.state.pool
    async with pool.connection() as conn:
        yield conn


def get_pool(request: Request) -> Pool:
    """The pool itself, for work that runs on several connections at once (large reports)."""
    pool: Pool = request.app.state.pool
    return pool


DbConn = Annotated[Conn, Depends(get_conn, scope="function")]
DbPool = Annotated[Pool, Depends(get_pool)]
Settings = Annotated[ApiSettings, Depends(get_settings)]


async def fetch_all(
    conn: Conn, query: Any, params: Any = None, *, prepare: bool | None = None,
    binary: bool = False,
) -> list[dict[str, Any]]:
    """``prepare=False`` keeps a query from becoming a server-side prepared statement, whose
    generic plan ignores the parameters' values (array sizes, dates); ``binary`` results
    load faster (timestamps above all) where there are many rows."""
    cur = await conn.execute(query, params, prepare=prepare, binary=binary)
    return list(await cur.fetchall())


async def fetch_one(conn: Conn, query: Any, params: Any = None) -> dict[str, Any] | None:
    cur = await conn.execute(query, params)
    return await cur.fetchone()
