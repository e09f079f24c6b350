"""The monitor API served by uvicorn in a thread on a free port, for API and browser tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from monitor_api import ApiSettings, create_app
from tests.services import free_port


class _Server(uvicorn.Server):
    """uvicorn's server as a test needs it: no signal handlers (it runs in a thread other than
    the main one), and it stops as soon as told to. uvicorn looks whether to stop every
    0.1 s and then waits 0.1 s for connections to close: ~0.18 s for each of the hundreds of
    tests that start a server, whose clients have closed their connections by then."""

    def install_signal_handlers(self) -> None:
        pass

    async def main_loop(self) -> None:
        while not await self.on_tick(0):  # tick 0 also refreshes the Date header
            await asyncio.sleep(0.005)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """``uvicorn.Server.shutdown`` without its fixed 0.1 s wait for connections."""
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            await asyncio.wait_for(self._wait_tasks_to_complete(),
                                   timeout=self.config.timeout_graceful_shutdown)
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel()
        await self.lifespan.shutdown()


@contextmanager
def serve(settings: ApiSettings) -> Iterator[str]:
    """Yield the base URL while the API (and its dashboard) runs."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=3,  # open event streams never end by themselves
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, name="api-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
