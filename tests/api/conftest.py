"""A real uvicorn server per test on a fresh database, and helpers to seed the registry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from ingest._decode import Decoder
from ingest._registry import InstrumentRegistry
from ingest._store import BatchStore
from instrushare.protocol import DataMessage, Sample, Topics, dumps
from monitor_api import ApiSettings
from monitor_api.auth import Role
from monitor_api.cli import create_token
from tests.api_server import serve

NEXT_WEEK = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=7)).date().isoformat()
"""A day whose bookings still lie ahead however long the suite runs (Asia/Shanghai)."""


@dataclass
class Api:
    """A running API: its base URL, the database behind it and tokens per role."""

    url: str
    database_url: str
    settings: ApiSettings
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def as_(self, who: str) -> httpx.Client:
        return self.client(self.tokens[who])

    def token(self, role: Role, *, institution_id: str | None = None,
              user_id: str | None = None) -> str:
        return asyncio.run(create_token(self.settings, role=role, institution_id=institution_id,
                                        user_id=user_id))

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


def write_through_ingest(
    database_url: str, samples: Sequence[tuple[datetime, str, str | None]], *,
    received: datetime,
) -> int:
    """Store samples of 'nmr' (gateway 'gw') as an ingest worker does, in one message sent and
    received at ``received`` (the ingest refuses samples more than 30 days older); return how
    many messages were new."""
    message = dumps(DataMessage(
        v=1, gateway="gw", instrument="nmr", seq=1, bd_seq=1, created_at=received,
        historical=False,
        samples=[Sample(ts=ts, state=state, user=user)  # type: ignore[arg-type]
                 for ts, state, user in samples]))
    store = BatchStore(conninfo=database_url, session_max_gap=timedelta(minutes=30))
    decoder = Decoder(prefix="p", registry=InstrumentRegistry(loader=store.load_registry))
    try:
        result = store.write([decoder.decode((Topics("p").data("gw", "nmr"), message, 0, 1,
                                              received.timestamp()))])
    finally:
        store.close()
    return result.fresh


def make_settings(database_url: str, **overrides: Any) -> ApiSettings:
    """Test settings; the background jobs are off unless asked for, so tests see exactly the
    rollup rows their own reports store and the bookings their own requests void."""
    return ApiSettings(**{"database_url": database_url, "sse_poll_s": 0.2, "pool_min_size": 1,
                          "pool_max_size": 4, "rollup_interval_s": 0,
                          "booking_sweep_interval_s": 0, "fleet_gauge_interval_s": 0,
                          **overrides})


SEED = [
    # institutions: a university with an analysis centre (sub-unit), a firm, an incubated lab
    "INSERT INTO institution (id, name, parent_id, tier, region) VALUES"
    " ('uni', '东北大学', NULL, 'voucher', '沈阳'),"
    " ('uni-ac', '东北大学分析测试中心', 'uni', 'voucher', ''),"
    " ('other', '大连理工大学', NULL, 'service', '大连'),"
    " ('incub', '孵化实验室', NULL, 'incubation', '沈阳')",
    "INSERT INTO instrument (id, name, institution_id, category_code, value_rmb, open_to_outside)"
    " VALUES ('nmr', '核磁共振波谱仪', 'uni-ac', '010401', 5200000, true),"
    " ('sem', '扫描电镜', 'uni-ac', '010203', 2100000, false),"
    " ('xrd', 'X射线衍射仪', 'other', '010501', 800000, true),"
    " ('inc1', '孵化仪器', 'incub', '020101', 400000, true)",
    "UPDATE instrument i SET listing = catalogue_entry(i), listed_at = now(), listed_by = 'seed'",
    "INSERT INTO platform_user (id, name, institution_id, organisation, approved) VALUES"
    " ('in1', '校内用户', 'uni', '东北大学', true),"
    " ('out1', '外单位用户', 'other', '大连理工大学', true),"
    " ('firm1', '企业用户', NULL, '沈阳某科技公司', true),"
    " ('new1', '待审用户', 'other', '大连理工大学', false)",
]


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    """Seeded registry, a running server and one token per role (lab manager of 'uni')."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in SEED:
            conn.execute(statement)
    settings = make_settings(database_url)
    with serve(settings) as url:
        a = Api(url=url, database_url=database_url, settings=settings)
        a.tokens = {
            "admin": a.token(Role.ADMIN),
            "manager": a.token(Role.LAB_MANAGER, institution_id="uni"),
            "other_manager": a.token(Role.LAB_MANAGER, institution_id="other"),
            "evaluator": a.token(Role.EVALUATOR),
            "user": a.token(Role.USER, user_id="out1"),
            "inside_user": a.token(Role.USER, user_id="in1"),
            "firm": a.token(Role.USER, user_id="firm1"),
            "unapproved": a.token(Role.USER, user_id="new1"),
        }
        yield a
