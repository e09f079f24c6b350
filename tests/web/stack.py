"""The running stack behind the browser tests: a seeded database and the API served by uvicorn.

The seed is ground truth the tests compare pages with: two institutions (one with a sub-unit),
five instruments with live status, two users, ten days of usage sessions and a day of power
samples. Everything is relative to the moment of seeding, so the data is always recent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from monitor_api import ApiSettings
from monitor_api.auth import Role, hash_token, new_token
from monitor_api.settings import TIMEZONE
from tests.api_server import serve

INSTITUTIONS = [
    # id, name, parent, tier, region
    ("neu", "东北大学", None, "voucher", "沈阳"),
    ("neu-ac", "东北大学分析测试中心", "neu", "voucher", "沈阳"),
    ("dut", "大连理工大学", None, "service", "大连"),
]
INSTRUMENTS = [
    # id, name, institution, category, value
    ("nmr-600", "600 MHz 核磁共振波谱仪", "neu-ac", "010401", 5_200_000),
    ("sem-1", "扫描电子显微镜", "neu-ac", "010203", 2_100_000),
    ("tem-1", "透射电子显微镜", "neu", "010202", 8_000_000),
    ("xrd-1", "X射线衍射仪", "dut", "010501", 800_000),
    ("ms-1", "液相色谱质谱联用仪", "dut", "010101", 1_500_000),
]
LIVE_STATES = {
    # instrument: (state, power W, user); tem-1 never reported, so it is offline
    "nmr-600": ("running", 850.0, "u-out"),
    "sem-1": ("idle", 60.0, None),
    "xrd-1": ("fault", 5.0, None),
    "ms-1": ("off", 0.0, None),
}
USERS = [("u-in", "校内用户", "neu"), ("u-out", "外单位用户", "dut")]
POWER_STEP = timedelta(minutes=5)
SHANGHAI = ZoneInfo(TIMEZONE)
"""The zone of the platform's days, its exports and every time the dashboard shows."""


@dataclass(frozen=True)
class SeededSession:
    instrument: str
    user: str
    start: datetime
    end: datetime


def seeded_sessions(now: datetime) -> list[SeededSession]:
    """nmr-600 (neu): 2 h a day for ten days, alternately an inside and an outside user;
    xrd-1 (dut): 1 h a day for five days by a neu user, i.e. outside for dut."""
    base = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    sessions = [
        SeededSession("nmr-600", "u-out" if day % 2 else "u-in", base - timedelta(days=day),
                      base - timedelta(days=day) + timedelta(hours=2))
        for day in range(1, 11)
    ]
    sessions += [
        SeededSession("xrd-1", "u-in", base - timedelta(days=day),
                      base - timedelta(days=day) + timedelta(hours=1))
        for day in range(1, 6)
    ]
    return sessions


def power_at(index: int) -> tuple[str, float]:
    """The seeded nmr-600 trace: running (800-900 W) one hour in three, idle otherwise."""
    if (index // 12) % 3 == 0:
        return "running", 800.0 + (index % 12) * 8
    return "idle", 60.0


@dataclass
class Stack:
    """A running API over a seeded database, tokens per role, and the seed's ground truth."""

    url: str
    database_url: str
    settings: ApiSettings
    seeded_at: datetime
    sessions: list[SeededSession]
    tokens: dict[str, str] = field(default_factory=dict)

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def token(self, role: Role, *, institution_id: str | None = None,
              user_id: str | None = None) -> str:
        """Stored like ``instrushare api --create-admin-token`` does, without an event loop
        (Playwright's sync API runs one in this thread)."""
        token = new_token()
        self.sql(
            "INSERT INTO api_token (token_hash, role, institution_id, user_id, label)"
            " VALUES (%s, %s, %s, %s, 'web test')",
            (hash_token(token), role.value, institution_id, user_id),
        )
        return token


def seed(database_url: str, now: datetime) -> list[SeededSession]:
    sessions = seeded_sessions(now)
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO institution (id, name, parent_id, tier, region)"
            " VALUES (%s, %s, %s, %s, %s)",
            INSTITUTIONS,
        )
        cur.executemany(
            "INSERT INTO instrument (id, name, institution_id, category_code, value_rmb,"
            " accepted_on, networked_on, model, maker, location)"
            " VALUES (%s, %s, %s, %s, %s, DATE '2024-03-01', DATE '2024-04-01', 'M-1',"
            " 'Maker', 'B101')",
            INSTRUMENTS,
        )
        cur.execute("UPDATE instrument i SET listing = catalogue_entry(i), listed_at = now(),"
                    " listed_by = 'seed'")
        cur.executemany(
            "INSERT INTO platform_user (id, name, institution_id, approved)"
            " VALUES (%s, %s, %s, true)",
            USERS,
        )
        cur.execute(
            "INSERT INTO gateway (id, bd_seq, online, changed_at, instruments, dropped)"
            " VALUES ('gw-seed', 1, true, %s, %s, 3)",
            (now, list(LIVE_STATES)),
        )
        cur.executemany(
            "INSERT INTO instrument_status (instrument_id, gateway_id, state, since, user_id,"
            " power_w, last_ts) VALUES (%s, 'gw-seed', %s, %s, %s, %s, %s)",
            [(i, state, now - timedelta(hours=1), user, power, now)
             for i, (state, power, user) in LIVE_STATES.items()],
        )
        cur.executemany(
            "INSERT INTO usage_session (instrument_id, start_ts, end_ts, last_ts, user_id)"
            " VALUES (%s, %s, %s, %s, %s)",
            [(s.instrument, s.start, s.end, s.end, s.user) for s in sessions],
        )
        served = sessions[0]  # nmr-600 (neu) by u-out (dut): a service to an outside user
        cur.execute(
            "INSERT INTO booking (instrument_id, user_id, kind, start_ts, end_ts, status, purpose)"
            " VALUES (%s, %s, 'sample', %s, %s, 'completed', 'research') RETURNING id",
            (served.instrument, served.user, served.start, served.end),
        )
        booking = cur.fetchone()
        assert booking is not None
        cur.execute("INSERT INTO service_record (booking_id, contract_no, fee_rmb, rating)"
                    " VALUES (%s, 'SY-1', 1800, 5)", booking)
        start = now - timedelta(hours=24)
        samples = []
        for n in range(int(timedelta(hours=24) / POWER_STEP)):
            state, power = power_at(n)
            samples.append(("nmr-600", start + n * POWER_STEP, state, power, "gw-seed", n))
        cur.executemany(
            "INSERT INTO state_sample (instrument_id, ts, state, power_w, gateway_id, seq)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            samples,
        )
    return sessions


@contextmanager
def running_stack(database_url: str) -> Iterator[Stack]:
    now = datetime.now(UTC)
    sessions = seed(database_url, now)
    settings = ApiSettings(database_url=database_url, sse_poll_s=0.5, sse_keepalive_s=5,
                           pool_min_size=1, pool_max_size=6)
    with serve(settings) as url:
        stack = Stack(url=url, database_url=database_url, settings=settings, seeded_at=now,
                      sessions=sessions)
        stack.tokens = {
            "admin": stack.token(Role.ADMIN),
            "evaluator": stack.token(Role.EVALUATOR),
            "neu_manager": stack.token(Role.LAB_MANAGER, institution_id="neu"),
            "dut_manager": stack.token(Role.LAB_MANAGER, institution_id="dut"),
            "outside_user": stack.token(Role.USER, user_id="u-out"),
            "inside_user": stack.token(Role.USER, user_id="u-in"),
        }
        yield stack
