"""The fleet's state as Prometheus gauges: instruments per state, those never heard from and
gateways online, across the province (no per-institution label: a fixed, small number of
series).

Prometheus otherwise sees the processes only; with these an alert can tell much of the fleet
going offline at once (the broker, the network, ingest) from one silent instrument, and a
graph shows the fleet by state over time. The states are the status board's, derived by its
own query, and every state is exported, 0 when no instrument is in it, so each has a series.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import CollectorRegistry, Gauge
from psycopg import sql

from instrushare.protocol import State
from monitor_api.db import Conn, Pool, fetch_all
from monitor_api.queries.status import BOARD

STATES = ("offline", *(s.value for s in State))
"""Every state of the board: ``offline``, derived, and those gateways report."""

_COUNTS = sql.SQL("""
SELECT {per_state}, count(*) FILTER (WHERE last_ts IS NULL) AS never_heard,
       (SELECT count(*) FROM gateway WHERE online) AS gateways_online
FROM ({board}) board
""").format(
    per_state=sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE state = {}) AS {}").format(
            sql.Literal(state), sql.Identifier(state))
        for state in STATES),
    board=sql.SQL(BOARD).format(where=sql.SQL("TRUE")),
)


@dataclass(frozen=True, slots=True)
class FleetCounts:
    instruments: dict[str, int]
    """Instruments per state, every state of ``STATES`` present."""
    never_heard: int
    """Instruments no sample ever came from (registered, not yet networked): all offline."""
    gateways_online: int


async def fleet_counts(conn: Conn, *, timeout: timedelta) -> FleetCounts:
    """Count the whole fleet in one statement."""
    (row,) = await fetch_all(conn, _COUNTS, {"timeout": timeout, "state": None,
                                             "as_listed": False})
    return FleetCounts(instruments={state: int(row[state]) for state in STATES},
                       never_heard=int(row["never_heard"]),
                       gateways_online=int(row["gateways_online"]))


class _Gauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.instruments = Gauge(
            "instrushare_instruments", "Instruments per state, as on the status board",
            ["state"], registry=registry)
        self.never_heard = Gauge(
            "instrushare_instruments_never_heard",
            "Instruments never heard from (counted offline too)", registry=registry)
        self.gateways_online = Gauge(
            "instrushare_gateways_online", "Gateways whose last word is that they are online",
            registry=registry)
        self.all = (self.instruments, self.never_heard, self.gateways_online)


class FleetGauges:
    """The gauges and the round that sets them. They join the registry at the first round
    that counted and leave it when a round fails, so that what ``/metrics`` shows is always
    a count just made: neither 0 before the first count (a fleet gone) nor a stale count
    while the database is out of reach (a fleet unchanged)."""

    def __init__(self, pool: Pool, *, timeout: timedelta, registry: CollectorRegistry) -> None:
        self._pool = pool
        self._timeout = timeout
        self._registry = registry
        self._gauges: _Gauges | None = None

    async def update(self) -> str:
        """One round (a ``periodic.Job``); logs nothing when it succeeds."""
        try:
            async with self._pool.connection() as conn:
                counts = await fleet_counts(conn, timeout=self._timeout)
        except Exception:
            self._withdraw()
            raise
        gauges = self._gauges = self._gauges or _Gauges(self._registry)
        for state, n in counts.instruments.items():
            gauges.instruments.labels(state).set(n)
        gauges.never_heard.set(counts.never_heard)
        gauges.gateways_online.set(counts.gateways_online)
        return ""

    def _withdraw(self) -> None:
        if self._gauges is not None:
            for gauge in self._gauges.all:
                self._registry.unregister(gauge)
            self._gauges = None
