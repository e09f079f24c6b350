"""The FastAPI application: ``create_app(settings)`` builds it, the lifespan owns the pool."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import Depends, FastAPI, Request, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from monitor_api import web
from monitor_api.body_limit import BodyLimit
from monitor_api.db import Pool, make_pool
from monitor_api.errors import ERROR_RESPONSES, install_error_handlers, refuse_nul_in_url
from monitor_api.fleet_gauges import FleetGauges
from monitor_api.periodic import Job, running
from monitor_api.rollup import fill_rollups
from monitor_api.routers import (
    assessments,
    bookings,
    categories,
    certifications,
    evaluation,
    health,
    publication,
    registry,
    reported_use,
    reports,
    sessions,
    status,
    users,
)
from monitor_api.settings import ApiSettings
from monitor_api.single_flight import SingleFlight
from monitor_api.status_feed import StatusFeed
from monitor_api.strict_query import refuse_unknown_query
from monitor_api.void_bookings import void_all_lapsed

logger = logging.getLogger("monitor_api")

DESCRIPTION = """
Registry, live status, bookings, utilisation metrics and annual evaluation of large
scientific instruments. Authenticate with `Authorization: Bearer <token>`; roles are
admin, lab_manager, evaluator and user. Errors are JSON: `{"error": code, "message": text}`.
Lists are paged with `limit` and `offset` and report `total`.
"""


class ApiMetrics:
    """Prometheus instruments on an injected registry (tests use a fresh one)."""

    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "instrushare_api_requests", "HTTP requests served",
            ["method", "route", "status"], registry=registry,
        )
        self.latency = Histogram(
            "instrushare_api_request_seconds", "Time to produce a response",
            ["method", "route"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.pool_size = Gauge("instrushare_api_pool_size", "Connections in the pool",
                               registry=registry)
        self.pool_waiting = Gauge("instrushare_api_pool_waiting",
                                  "Requests waiting for a connection", registry=registry)
        self.event_streams = Gauge("instrushare_api_event_streams",
                                   "Open status event streams", registry=registry)
        self.status_polls = Counter(
            "instrushare_api_status_polls",
            "Polls of status changes, one per interval for all event streams together",
            registry=registry)


def _route_name(request: Request) -> str:
    """The route template (``/bookings/{booking_id}``), so labels stay few."""
    return str(getattr(request.scope.get("route"), "path", "unmatched"))


def _background_jobs(pool: Pool, settings: ApiSettings, registry: CollectorRegistry) -> list[Job]:
    async def fill() -> str:
        done = await fill_rollups(pool, timeout=settings.heartbeat_timeout,
                                  months=settings.rollup_months, now=datetime.now(UTC),
                                  grace=settings.no_show_grace)
        return f"filled for {done} instruments, {settings.rollup_months} months"

    return [
        Job("rollups", fill, settings.rollup_interval_s),
        Job("lapsed bookings", lambda: void_all_lapsed(pool, settings),
            settings.booking_sweep_interval_s),
        Job("fleet gauges", FleetGauges(pool, timeout=settings.heartbeat_timeout,
                                        registry=registry).update,
            settings.fleet_gauge_interval_s),
    ]


def create_app(
    settings: ApiSettings, *, metrics_registry: CollectorRegistry | None = None
) -> FastAPI:
    """Build the app from ``settings``, which whoever starts it read from the environment;
    nothing connects until the lifespan starts."""
    metrics = ApiMetrics(registry=metrics_registry or CollectorRegistry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = make_pool(settings)
        await pool.open()
        app.state.pool = pool
        app.state.status_feed = feed = StatusFeed(
            pool, timeout=settings.heartbeat_timeout, grace=settings.no_show_grace,
            poll_s=settings.sse_poll_s,
            on_poll=metrics.status_polls.inc)
        logger.info("monitor_api started (pool %d-%d connections)",
                    settings.pool_min_size, settings.pool_max_size)
        try:
            async with running(_background_jobs(pool, settings, metrics.registry)):
                yield
        finally:
            await feed.close()
            await pool.close()
            logger.info("monitor_api stopped")

    app = FastAPIOffline(
        title="instrushare monitor API", version="1", description=DESCRIPTION,
        lifespan=lifespan, responses=ERROR_RESPONSES, static_url="/docs-assets",
        # nothing fetched from the internet: no online validator, and no ReDoc, whose page
        # loads its logo from its maker's site
        redoc_url=None, swagger_ui_parameters={"validatorUrl": None},
        dependencies=[Depends(refuse_nul_in_url), Depends(refuse_unknown_query)],
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.evaluations = SingleFlight()
    install_error_handlers(app)
    app.add_middleware(BodyLimit, larger={"/instruments/import": registry.MAX_IMPORT_BYTES})
    for module in (health, registry, categories, users, status, sessions, certifications,
                   bookings, reports, evaluation, assessments, publication, reported_use):
        app.include_router(module.router)
    web.install(app)

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        status = 500  # an error no handler turned into a response: answered 500 outside
        try:
            response = await call_next(request)
            status = response.status_code
        finally:
            route = _route_name(request)
            metrics.requests.labels(request.method, route, str(status)).inc()
            metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        stats = request.app.state.pool.get_stats()
        metrics.pool_size.set(stats.get("pool_size", 0))
        metrics.pool_waiting.set(stats.get("requests_waiting", 0))
        metrics.event_streams.set(request.app.state.status_feed.streams)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
