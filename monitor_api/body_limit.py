"""Request bodies are bounded: FastAPI reads a body whole before it checks the token, so
without bounds any client could make the API hold gigabytes, or hold memory by never
finishing a body."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor_api.auth import NO_TOKEN
from monitor_api.errors import ApiError, RequestTimeout, TooLarge, Unauthorized, error_response

MAX_BODY_BYTES = 2**20
"""JSON bodies are a few hundred bytes; 1 MiB leaves ample room."""


class BodyLimit:
    """Refuses a body sent with no token at once (every endpoint that takes one needs a token)
    with 401; one over its path's limit with 413, at once when its Content-Length says so,
    else (chunked) as soon as that much has arrived; a chunked body that stalls with 408."""

    IDLE_S = 60.0
    """How long a chunked body may send nothing (nginx's ``client_body_timeout``)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES,
        larger: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")  # a number, which the server holds clients to
        declared = None if length is None else int(length)
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if (chunked or declared) and b"authorization" not in headers:
            await error_response(Unauthorized(NO_TOKEN))(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.max_bytes)
        if declared is not None:
            if declared > limit:
                await error_response(_too_large(limit))(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        try:
            body = await self._read(receive, limit)
        except ApiError as exc:
            await error_response(exc)(scope, receive, send)
            return
        sent: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> Message:
            return sent.pop() if sent else await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive, limit: int) -> bytes:
        """A chunked body whole, up to ``limit`` bytes."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.IDLE_S)
            except TimeoutError:
                raise RequestTimeout(f"the request body stalled: nothing arrived for"
                                     f" {self.IDLE_S:g} s") from None
            if message["type"] != "http.request":  # its answer goes nowhere, but is logged
                raise ApiError("the client went away before its request body was complete")
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > limit:
                raise _too_large(limit)
            if not message.get("more_body"):
                return b"".join(chunks)


def _too_large(limit: int) -> TooLarge:
    size = f"{limit // 2**20} MiB" if limit % 2**20 == 0 else f"{limit} bytes"
    return TooLarge(f"the request body may hold at most {size}")
