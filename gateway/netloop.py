"""One network thread for many MQTT clients, on epoll instead of paho's per-client select().

paho's own loop (``loop_start``) costs a thread and a socket pair per client and relies on
``select()``, which fails for descriptors above 1023: a process running thousands of gateways
(the fleet simulator) needs one loop driving all clients through paho's external-loop hooks.

All selector changes happen in the loop thread; other threads only mark a client as having
data to write, or schedule a call, and wake the loop.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

logger = logging.getLogger("gateway")


class NetworkLoop:
    """Drives attached paho clients: reads, writes, keepalives, and timed calls."""

    MISC_INTERVAL_S = 1.0

    _default: NetworkLoop | None = None
    _default_lock = threading.Lock()

    def __init__(self, *, name: str = "gateway-mqtt") -> None:
        self.name = name
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._dirty: set[mqtt.Client] = set()
        self._calls: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._clients: set[mqtt.Client] = set()
        self._socks: dict[mqtt.Client, socket.socket] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False

    @classmethod
    def default(cls) -> NetworkLoop:
        """The process-wide loop, started on first use."""
        with cls._default_lock:
            if cls._default is None or not cls._default.running:
                cls._default = cls()
                cls._default.start()
            return cls._default

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    @property
    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    # -- clients -------------------------------------------------------------------------
    def attach(self, client: mqtt.Client) -> None:
        """Route a client's network events through this loop (before it connects)."""
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = None
        self.call_soon(lambda: self._clients.add(client))

    def detach(self, client: mqtt.Client) -> None:
        def drop() -> None:
            self._clients.discard(client)
            self._dirty.discard(client)
            sock = self._socks.pop(client, None)
            if sock is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)

        self.call_soon(drop)

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.call_later(0.0, fn)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._calls, (time.monotonic() + delay, next(self._counter), fn))
        self._wake()

    # -- paho socket hooks (socket open/close run in the loop thread) --------------------
    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._socks[client] = sock
        self._selector.register(sock, selectors.EVENT_READ, client)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        current = self._socks.get(client)
        if current is not None and current is sock:
            del self._socks[client]
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(current)

    def _on_socket_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        with self._lock:
            self._dirty.add(client)
        if not self.in_loop:
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")

    # -- the loop ------------------------------------------------------------------------
    def _run(self) -> None:
        next_misc = time.monotonic() + self.MISC_INTERVAL_S
        while not self._stopping:
            with self._lock:
                due = self._calls[0][0] if self._calls else next_misc
                dirty = bool(self._dirty)
            timeout = 0.0 if dirty else max(0.0, min(due, next_misc) - time.monotonic())
            try:
                events = self._selector.select(timeout)
            except OSError:
                logger.exception("network loop select failed")
                time.sleep(0.1)
                continue
            for key, mask in events:
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(4096)
                    continue
                client: mqtt.Client = key.data
                if mask & selectors.EVENT_READ:
                    self._read(client)
                if mask & selectors.EVENT_WRITE:
                    self._write(client)
            self._flush_dirty()
            self._run_calls()
            now = time.monotonic()
            if now >= next_misc:
                next_misc = now + self.MISC_INTERVAL_S
                for client in list(self._clients):
                    self._guard(client.loop_misc, True)

    def _read(self, client: mqtt.Client) -> None:
        """Read until the socket holds nothing more: over TLS, records already received and
        decrypted wait inside the SSL object, where ``select`` does not see them."""
        self._guard(client.loop_read, True)
        sock = self._socks.get(client)
        while isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._guard(client.loop_read, True)
            sock = self._socks.get(client)

    def _flush_dirty(self) -> None:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        for client in dirty:
            if client in self._socks:
                self._write(client)

    def _write(self, client: mqtt.Client) -> None:
        self._guard(client.loop_write, True)
        sock = self._socks.get(client)
        if sock is None:
            return
        events = selectors.EVENT_READ
        if client.want_write():
            events |= selectors.EVENT_WRITE
        with contextlib.suppress(KeyError, ValueError):
            if self._selector.get_key(sock).events != events:
                self._selector.modify(sock, events, client)

    def _run_calls(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._calls or self._calls[0][0] > now:
                    return
                _, _, fn = heapq.heappop(self._calls)
            try:
                fn()
            except Exception:
                logger.exception("network loop: scheduled call failed")

    @staticmethod
    def _guard(step: Callable[[], object], wanted: object) -> None:
        if not wanted:
            return
        try:
            step()
        except Exception:
            logger.exception("network loop: client step failed")
