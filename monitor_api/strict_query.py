"""Refuse query parameters an endpoint does not take, and any given twice. A misspelt filter
(``instituton_id``), or one the endpoint has not (``institution_id`` on the evaluation's
lists), would otherwise be ignored, and the whole province answered as if it were the
institution asked for; of a filter given twice (``state=idle&state=running``) only the last
would count, when the caller may mean either or both. No parameter takes a list."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute

from monitor_api.errors import BadRequest


def _taken(request: Request, route: APIRoute) -> list[str] | None:
    """The query parameters the OpenAPI document gives the endpoint, which is what the
    documentation promises; None for a route it leaves out (the web pages)."""
    paths: dict[str, Any] = request.app.openapi()["paths"]  # built once, then kept
    operation = paths.get(route.path_format, {}).get(request.method.lower())
    if operation is None:
        return None
    return sorted(p["name"] for p in operation.get("parameters", ()) if p["in"] == "query")


def refuse_unknown_query(request: Request) -> None:
    route = request.scope.get("route")
    if not request.query_params or not isinstance(route, APIRoute):
        return
    taken = _taken(request, route)
    if taken is None:
        return
    unknown = sorted(set(request.query_params) - set(taken))
    if unknown:
        raise BadRequest(f"query.{unknown[0]}: this endpoint takes no such parameter (it takes"
                         f" {', '.join(taken) if taken else 'none'})")
    for name in taken:
        times = len(request.query_params.getlist(name))
        if times > 1:
            raise BadRequest(f"query.{name}: given {times} times; give it once (no parameter"
                             " takes a list)")
