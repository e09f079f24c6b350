"""Bearer tokens (only their SHA-256 is stored) and the role checks every router uses.

Roles: ``admin`` (everything), ``lab_manager`` (their institution and its sub-units),
``evaluator`` (reads the whole province, writes nothing), ``user`` (books, sees their own).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from monitor_api.db import Conn, DbConn, DbPool, fetch_one
from monitor_api.errors import Forbidden, Unauthorized

TOKEN_PREFIX = "isk_"


class Role(StrEnum):
    ADMIN = "admin"
    LAB_MANAGER = "lab_manager"
    EVALUATOR = "evaluator"
    USER = "user"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling; ``institutions`` is a lab manager's institution and its sub-units."""

    role: Role
    token_id: int
    institution_id: str | None = None
    user_id: str | None = None
    institutions: frozenset[str] = field(default_factory=frozenset)

    @property
    def signature(self) -> str:
        """``role:token id``: who did something, as records store it."""
        return f"{self.role.value}:{self.token_id}"

    @property
    def reads_all(self) -> bool:
        return self.role in (Role.ADMIN, Role.EVALUATOR)

    def may_manage(self, institution_id: str) -> bool:
        """Admin anywhere, a lab manager within their institution tree."""
        return self.role is Role.ADMIN or (
            self.role is Role.LAB_MANAGER and institution_id in self.institutions
        )


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_token(
    conn: Conn,
    *,
    role: Role,
    institution_id: str | None = None,
    user_id: str | None = None,
    label: str = "",
) -> tuple[int, str]:
    """Store a new token's hash and return (id, token); the token is not recoverable later."""
    token = new_token()
    row = await fetch_one(
        conn,
        "INSERT INTO api_token (token_hash, role, institution_id, user_id, label)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (hash_token(token), role.value, institution_id, user_id, label),
    )
    assert row is not None
    return int(row["id"]), token


class _Bearer(HTTPBearer):
    """HTTPBearer that refuses another scheme by name: read as no header at all, ``Basic``
    credentials would be answered "no API token", which sends a client looking elsewhere."""

    async def __call__(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        scheme, _, _ = request.headers.get("Authorization", "").partition(" ")
        if scheme and scheme.lower() != "bearer":
            raise Unauthorized("the Authorization header must use the Bearer scheme:"
                               " `Authorization: Bearer <token>`")
        return await super().__call__(request)


NO_TOKEN = "no API token: send the header `Authorization: Bearer <token>`"

_bearer = _Bearer(auto_error=False, scheme_name="HTTPBearer",
                  description="API token: `Authorization: Bearer isk_...`")

_LOOKUP = """
WITH RECURSIVE t AS (
    SELECT id, role, institution_id, user_id FROM api_token
    WHERE token_hash = %s AND revoked_at IS NULL
), tree(id) AS (
    SELECT institution_id FROM t WHERE institution_id IS NOT NULL
    UNION
    SELECT i.id FROM institution i JOIN tree ON i.parent_id = tree.id
)
SELECT t.*, ARRAY(SELECT id FROM tree) AS institutions FROM t
"""


async def _principal(
    conn: Conn, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    if credentials is None:
        raise Unauthorized(NO_TOKEN)
    row = await fetch_one(conn, _LOOKUP, (hash_token(credentials.credentials),))
    if row is None:
        raise Unauthorized("unknown or revoked token")
    return Principal(
        role=Role(row["role"]),
        token_id=int(row["id"]),
        institution_id=row["institution_id"],
        user_id=row["user_id"],
        institutions=frozenset(row["institutions"]),
    )


async def current_principal(
    conn: DbConn,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Looked up on the request's connection, which the handler then uses too."""
    return await _principal(conn, credentials)


async def principal_holding_no_connection(
    pool: DbPool,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Looked up on a connection returned at once, for handlers that borrow several (reports):
    were each to hold one while waiting for more, concurrent reports could take every
    connection of the pool and wait for ever."""
    async with pool.connection() as conn:
        return await _principal(conn, credentials)


Caller = Annotated[Principal, Depends(current_principal)]
Lookup = Callable[..., Awaitable[Principal]]


def require(
    *roles: Role, lookup: Lookup = current_principal
) -> Callable[[Principal], Awaitable[Principal]]:
    """Dependency factory: the caller must hold one of ``roles`` (403 otherwise)."""
    allowed = frozenset(roles)

    async def check(principal: Principal = Depends(lookup)) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise Forbidden(f"role {principal.role.value!r} may not do this (needs one of {names})")
        return principal

    return check


Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Manager = Annotated[Principal, Depends(require(Role.ADMIN, Role.LAB_MANAGER))]
Reader = Annotated[Principal, Depends(require(Role.ADMIN, Role.LAB_MANAGER, Role.EVALUATOR))]
Evaluator = Annotated[Principal, Depends(require(Role.ADMIN, Role.EVALUATOR))]
Booker = Annotated[Principal, Depends(require(Role.USER))]
ReportReader = Annotated[Principal, Depends(require(
    Role.ADMIN, Role.LAB_MANAGER, Role.EVALUATOR, lookup=principal_holding_no_connection))]
ReportEvaluator = Annotated[Principal, Depends(require(
    Role.ADMIN, Role.EVALUATOR, lookup=principal_holding_no_connection))]
ReportAdmin = Annotated[Principal, Depends(require(
    Role.ADMIN, lookup=principal_holding_no_connection))]
"""For handlers that hold no connection of the request's and borrow from the pool instead."""
