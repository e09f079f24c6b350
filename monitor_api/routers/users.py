"""Platform users (registration and approval) and API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, model_validator

from instrushare.protocol import Identifier
from monitor_api.auth import Admin, Caller, Manager, Reader, Role, create_token
from monitor_api.db import DbConn, fetch_one
from monitor_api.errors import BadRequest, Forbidden, NotFound
from monitor_api.queries.common import Where, page, update_columns
from monitor_api.schemas import (
    Label,
    Limit,
    Name,
    Offset,
    Page,
    Text,
    User,
    UserIn,
    unaffiliated,
)

router = APIRouter(tags=["users"])


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    institution_id: Identifier | None = None
    organisation: Label | None = None
    email: Text | None = None
    approved: bool | None = None


class TokenIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"role": "lab_manager", "institution_id": "dlut-ac"}]},
    )

    role: Role
    institution_id: Identifier | None = None
    user_id: Identifier | None = None
    label: Text = ""

    @model_validator(mode="after")
    def _scope(self) -> TokenIn:
        """A lab manager's token is scoped by its institution, a user's by who they are
        (their institution is the user's own); no other field applies to a role."""
        needs = {Role.LAB_MANAGER: "institution_id", Role.USER: "user_id"}.get(self.role)
        for name in ("institution_id", "user_id"):
            given = getattr(self, name) is not None
            if name == needs and not given:
                raise ValueError(f"a token of role {self.role.value} needs {name}")
            if name != needs and given:
                raise ValueError(f"{name} does not apply to role {self.role.value}")
        return self


class TokenOut(BaseModel):
    id: int
    token: str
    role: Role


class TokenInfo(BaseModel):
    """A token as stored: never the token itself, which exists only as its hash."""

    id: int
    role: Role
    institution_id: str | None
    user_id: str | None
    label: str
    created_at: datetime
    revoked_at: datetime | None


@router.get("/users/me", response_model=User)
async def me(conn: DbConn, caller: Caller) -> dict[str, Any]:
    if caller.user_id is None:
        raise NotFound("this token is not bound to a platform user")
    row = await fetch_one(conn, "SELECT * FROM platform_user WHERE id = %s", (caller.user_id,))
    if row is None:
        raise NotFound(f"no user {caller.user_id!r}")
    return row


@router.get("/users", response_model=Page[User])
async def list_users(
    conn: DbConn,
    caller: Reader,
    institution_id: str | None = None,
    approved: bool | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    where = Where()
    if not caller.reads_all:
        where.add("institution_id = ANY(%(mine)s)", mine=list(caller.institutions))
    if institution_id is not None:
        where.in_tree("institution_id", institution_id)
    if approved is not None:
        where.add("approved = %(approved)s", approved=approved)
    return await page(
        conn, select="SELECT * FROM platform_user WHERE {where}", where=where, order="id",
        limit=limit, offset=offset,
    )


@router.get("/users/{user_id}", response_model=User)
async def get_user(conn: DbConn, caller: Reader, user_id: str) -> dict[str, Any]:
    row = await fetch_one(conn, "SELECT * FROM platform_user WHERE id = %s", (user_id,))
    if row is None or not (caller.reads_all or row["institution_id"] in caller.institutions):
        raise NotFound(f"no user {user_id!r}")
    return row


@router.post("/users", response_model=User, status_code=201)
async def register_user(conn: DbConn, caller: Manager, body: UserIn) -> dict[str, Any]:
    """Admins register anyone; lab managers register members of their own institution."""
    if caller.role is not Role.ADMIN and body.institution_id not in caller.institutions:
        raise Forbidden("lab managers register users of their own institution only")
    row = await fetch_one(
        conn,
        "INSERT INTO platform_user (id, name, institution_id, organisation, email, approved)"
        " VALUES (%(id)s, %(name)s, %(institution_id)s, %(organisation)s, %(email)s,"
        " %(approved)s) RETURNING *",
        body.model_dump(),
    )
    assert row is not None
    return row


@router.patch("/users/{user_id}", response_model=User)
async def update_user(
    conn: DbConn, caller: Manager, user_id: str, body: UserPatch
) -> dict[str, Any]:
    """Approve or edit a user (lab managers: users of their own institution)."""
    row = await fetch_one(conn, "SELECT * FROM platform_user WHERE id = %s", (user_id,))
    if row is None or not caller.may_manage(row["institution_id"]):  # as when read: 404
        raise NotFound(f"no user {user_id!r}")
    values = body.model_dump(exclude_unset=True)
    if not caller.may_manage(values.get("institution_id", row["institution_id"])):
        raise Forbidden("lab managers manage users of their own institution only")
    merged = {**row, **values}
    if problem := unaffiliated(merged["institution_id"], merged["organisation"]):
        raise BadRequest(problem)
    new = await update_columns(
        conn, table="platform_user", key=user_id, values=values,
        allowed=("name", "institution_id", "organisation", "email", "approved"),
    )
    assert new is not None
    return new


@router.post("/tokens", response_model=TokenOut, status_code=201)
async def issue_token(conn: DbConn, _: Admin, body: TokenIn) -> dict[str, Any]:
    """Create an API token; it is shown once and stored only as a hash."""
    token_id, token = await create_token(
        conn, role=body.role, institution_id=body.institution_id, user_id=body.user_id,
        label=body.label,
    )
    return {"id": token_id, "token": token, "role": body.role}


@router.get("/tokens", response_model=Page[TokenInfo])
async def list_tokens(
    conn: DbConn,
    _: Admin,
    revoked: Annotated[bool | None, Query(
        description="Only revoked tokens (true) or only those still valid (false).")] = None,
    institution_id: str | None = None,
    user_id: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The tokens issued, newest first: which to revoke when one leaked or its holder left."""
    where = Where()
    if revoked is not None:
        where.add("(revoked_at IS NOT NULL) = %(revoked)s", revoked=revoked)
    if institution_id is not None:
        where.add("institution_id = %(inst)s", inst=institution_id)
    if user_id is not None:
        where.add("user_id = %(user)s", user=user_id)
    return await page(
        conn, select="SELECT id, role, institution_id, user_id, label, created_at, revoked_at"
        " FROM api_token WHERE {where}", where=where, order="id DESC", limit=limit,
        offset=offset,
    )


@router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(conn: DbConn, _: Admin, token_id: int) -> None:
    row = await fetch_one(
        conn,
        "UPDATE api_token SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL"
        " RETURNING id",
        (token_id,),
    )
    if row is None:
        raise NotFound(f"no active token {token_id}")
