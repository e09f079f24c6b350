"""Small SQL helpers: WHERE clauses from optional filters, paging, column updates, the
institution tree, the checks of the institution, region and category a caller filters on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from psycopg import sql

from monitor_api.auth import Principal, Role
from monitor_api.categories import CATEGORY_NAMES, category_name
from monitor_api.db import Conn, fetch_all, fetch_one
from monitor_api.errors import BadRequest

ROOTS_CTE = """
WITH RECURSIVE roots(id, root, region) AS (
    SELECT id, id, region FROM institution WHERE parent_id IS NULL
    UNION ALL
    SELECT c.id, r.root, CASE WHEN c.region <> '' THEN c.region ELSE r.region END
    FROM institution c JOIN roots r ON c.parent_id = r.id
)
"""
"""Every institution with its top-level one and its region (its own, else its parent's), in
one pass (``institution_root()`` per row costs a recursive query each)."""

INSTITUTION_ROOTS = ROOTS_CTE + "SELECT id, root FROM roots"
"""Every institution with its top-level one."""

TREE_CTE = """
WITH RECURSIVE tree(id) AS (
    SELECT id FROM institution WHERE id = %(institution)s
    UNION SELECT c.id FROM institution c JOIN tree ON c.parent_id = tree.id
)
"""
"""``tree``: the institution ``%(institution)s`` and its sub-units, all levels down; every
``institution_id`` filter means this (an analysis centre is part of its university)."""


async def institution_tree(conn: Conn, institution: str) -> frozenset[str]:
    """The institution and its sub-units, all levels down."""
    rows = await fetch_all(conn, TREE_CTE + "SELECT id FROM tree", {"institution": institution})
    return frozenset(r["id"] for r in rows)


async def named_tree(conn: Conn, institution_id: str) -> frozenset[str]:
    """``institution_tree`` of the ``institution_id`` a caller filters on. An id that names no
    institution (a typo) is refused rather than answered with an empty list, which would read
    as an institution without instruments or use."""
    tree = await institution_tree(conn, institution_id)
    if not tree:
        raise BadRequest(f"institution_id: no institution {institution_id!r}")
    return tree


async def check_filters(conn: Conn, *, region: str | None = None,
                        category: str | None = None) -> None:
    """Refuse a ``region`` or ``category`` filter that matches nothing registered (a typo,
    another spelling): its empty answer would read as "nothing there". Absent filters pass."""
    if region is not None and await fetch_one(
        conn, "SELECT 1 FROM institution WHERE region = %s AND region <> ''", (region,),
    ) is None:
        raise BadRequest(f"region: no institution is registered in {region!r}"
                         " (each institution's region is in GET /institutions)")
    if category is not None and not await _known_category(conn, category):
        raise BadRequest(f"category: the national classification has no class {category!r} and"
                         " no instrument is registered in it (GET /categories lists the classes)")


async def _known_category(conn: Conn, category: str) -> bool:
    """A class the national classification names, a code in one, or the start of a code some
    instrument is registered or listed with."""
    named = category in CATEGORY_NAMES if len(category) < 6 else category_name(category)
    if named:
        return True
    return await fetch_one(
        conn, "SELECT 1 FROM instrument WHERE category_code LIKE %(c)s"
        " OR listing->>'category_code' LIKE %(c)s LIMIT 1", {"c": category + "%"},
    ) is not None


class Where:
    """Collect ``AND``-ed conditions with their parameters."""

    def __init__(self) -> None:
        self.parts: list[sql.Composable] = []
        self.params: dict[str, Any] = {}

    def add(self, condition: str, **params: Any) -> None:
        self.parts.append(sql.SQL(condition))
        self.params.update(params)

    def sql(self) -> sql.Composable:
        if not self.parts:
            return sql.SQL("TRUE")
        return sql.SQL(" AND ").join(self.parts)

    def in_tree(self, column: str, institution: str) -> None:
        """``column`` is ``institution`` or one of its sub-units (``TREE_CTE``)."""
        self.add(f"{column} IN ({TREE_CTE} SELECT id FROM tree)", institution=institution)

    def visible_to(self, caller: Principal, *, user_column: str | None) -> None:
        """Users see their own rows, lab managers their institution tree's (instrument ``i``).

        With ``user_column`` None the rows are the instrument registry, which users see as a
        catalogue: listed instruments only; lab managers still see only their tree's."""
        if caller.role is Role.USER and user_column is None:
            self.add("i.listing IS NOT NULL")
        elif caller.role is Role.USER:
            self.add(f"{user_column} = %(me)s", me=caller.user_id)
        elif caller.role is Role.LAB_MANAGER:
            self.add("i.institution_id = ANY(%(mine)s)", mine=list(caller.institutions))


async def window_total(
    rows: list[dict[str, Any]], offset: int,
    first_page: Callable[[], Awaitable[dict[str, Any]]],
) -> int:
    """The list's length, from the page's ``count(*) OVER ()`` column ``n``; a page past the
    end has no rows to carry it, so the first page is asked."""
    if rows:
        return int(rows[0]["n"])
    return int((await first_page())["total"]) if offset else 0


async def page(
    conn: Conn,
    *,
    select: str,
    where: Where,
    order: str,
    limit: int,
    offset: int,
    binary: bool = False,
) -> dict[str, Any]:
    """Run ``select`` (a query with a ``{where}`` slot) as one page plus the total count."""
    base = sql.SQL(select).format(where=where.sql())
    count = await fetch_one(
        conn, sql.SQL("SELECT count(*) AS n FROM ({}) AS q").format(base), where.params
    )
    rows = await fetch_all(
        conn,
        sql.SQL("{} ORDER BY {} LIMIT %(_limit)s OFFSET %(_offset)s").format(
            base, sql.SQL(order)
        ),
        {**where.params, "_limit": limit, "_offset": offset},
        binary=binary,
    )
    return {"items": rows, "total": count["n"] if count else 0, "limit": limit, "offset": offset}


async def update_columns(
    conn: Conn, *, table: str, key: str, values: Mapping[str, Any], allowed: Sequence[str]
) -> dict[str, Any] | None:
    """UPDATE only the given, whitelisted columns; return the new row (None if missing)."""
    cols = [c for c in values if c in allowed]
    if not cols:
        return await fetch_one(
            conn,
            sql.SQL("SELECT * FROM {} WHERE id = %(_key)s").format(sql.Identifier(table)),
            {"_key": key},
        )
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in cols
    )
    return await fetch_one(
        conn,
        sql.SQL("UPDATE {} SET {} WHERE id = %(_key)s RETURNING *").format(
            sql.Identifier(table), assignments
        ),
        {**{c: values[c] for c in cols}, "_key": key},
    )


async def tune_for_reports(conn: Conn) -> None:
    """For the rest of the transaction: large sorts and hashes stay in memory (a yearly report
    joins ~1M rows), and no JIT compilation, which the reports' far too high row estimates
    would trigger and which costs more than it saves."""
    await conn.execute("SET LOCAL work_mem = '64MB'")
    await conn.execute("SET LOCAL jit = off")
