"""Migrated, empty PostgreSQL databases for the tests, made before the tests ask for them.

Each is a copy of one template migrated once per run. A copy still takes 0.1-0.4 s (the
server writes it to its WAL), on hundreds of tests: a thread of its own makes the next ones
and drops the used ones while the tests run, so a test finds its database waiting.
"""

from __future__ import annotations

import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
from psycopg import conninfo, sql

from instrushare.db import migrate

AHEAD = 2
"""Databases kept ready: a test that takes two (make_database) waits for none."""
WAIT_S = 120
"""How long a test waits for its database before the server is taken for unreachable."""


class DatabaseStock:
    def __init__(self, admin_url: str) -> None:
        self._admin_url = admin_url
        self._template = self._new_name("template")
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self._template)))
        migrate(self.url(self._template))
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-databases")
        self._ready: deque[Future[str]] = deque(self._worker.submit(self._copy)
                                                for _ in range(AHEAD))
        self._dropping: list[Future[None]] = []

    def url(self, name: str) -> str:
        return conninfo.make_conninfo(self._admin_url, dbname=name)

    def take(self) -> str:
        """A fresh database's name (a copy made now, if the server refused the one made)."""
        made = self._ready.popleft()
        self._ready.append(self._worker.submit(self._copy))
        return made.result(timeout=WAIT_S)

    def give_back(self, names: list[str]) -> None:
        """Drop ``names`` in the background: the next test need not wait for it."""
        self._dropping.append(self._worker.submit(self._drop, names))

    def close(self) -> None:
        """Drop the databases made and not taken, and the template, once the drops asked
        for are done; a drop that failed fails the run here."""
        unused = [f.result() for f in self._ready if f.exception() is None]
        self._worker.shutdown(wait=True)
        self._drop([*unused, self._template])
        for dropped in self._dropping:
            dropped.result()

    @staticmethod
    def _new_name(kind: str) -> str:
        return f"instrushare_{kind}_{uuid.uuid4().hex[:12]}"

    def _copy(self) -> str:
        name = self._new_name("test")
        self._execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(self._template)))
        return name

    def _drop(self, names: list[str]) -> None:
        for name in names:
            self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    def _execute(self, statement: sql.Composed) -> None:
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            conn.execute(statement)
