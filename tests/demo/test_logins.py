"""The demo's printed logins work against whichever database the demo is using."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from instrushare.demo import default_data_dir
from instrushare.demo.stack import LOGIN_FILE, _accepted
from instrushare.demo.stack import _login_tokens as _tokens_in_loop
from monitor_api.settings import ApiSettings


def _login_tokens(database_url: str, data_dir: Path, institution: str) -> dict[str, str]:
    """In a thread of its own, as in the demo: it runs asyncio, and the browser tests leave
    Playwright's event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_tokens_in_loop, ApiSettings(database_url=database_url), data_dir,
                           institution=institution, user="firm-1").result()


def _database(make_database: Callable[[], str]) -> str:
    url = make_database()
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO institution (id, name) VALUES ('inst-a', 'Institute A')")
        conn.execute("INSERT INTO platform_user (id, organisation, approved)"
                     " VALUES ('firm-1', 'Firm', true)")
    return url


def test_logins_follow_the_database_in_use(
    make_database: Callable[[], str], tmp_path: Path
) -> None:
    embedded, external = _database(make_database), _database(make_database)

    first = _login_tokens(embedded, tmp_path, "inst-a")
    assert _accepted(embedded, first)
    assert _login_tokens(embedded, tmp_path, "inst-a") == first  # kept across runs

    # the same data directory with DATABASE_URL set: the old tokens mean nothing there
    second = _login_tokens(external, tmp_path, "inst-a")
    assert set(second.values()).isdisjoint(first.values())
    assert _accepted(external, second)
    assert (tmp_path / LOGIN_FILE).read_text().splitlines() == [
        f"{role}={token}" for role, token in second.items()
    ]

    with psycopg.connect(external) as conn:  # a revoked login is replaced too
        conn.execute("UPDATE api_token SET revoked_at = now() WHERE label = 'demo admin'")
    assert _login_tokens(external, tmp_path, "inst-a")["admin"] != second["admin"]


def test_data_dir_is_per_user_not_per_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".local" / "share" / "instrushare" / "demo"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_data_dir() == tmp_path / "data" / "instrushare" / "demo"
