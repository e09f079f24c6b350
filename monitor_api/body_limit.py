"""Request bodies are bounded: FastAPI reads a body whole before it checks the token, so
without a bound any client could make the API hold gigabytes."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor_api.errors import TooLarge, error_response

MAX_BODY_BYTES = 2**20
"""JSON bodies are a few hundred bytes; 1 MiB leaves ample room."""


class BodyLimit:
    """Refuses a body over its path's limit with 413: at once when its Content-Length says
    so, else (chunked) as soon as that much has arrived."""

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
        limit = self.larger.get(scope["path"], self.max_bytes)
        refusal = TooLarge(f"the request body may hold at most {_size(limit)}")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:  # a number, which the server holds the client to
            if int(length) > limit:
                await error_response(refusal)(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []  # chunked: read up to the limit here, then hand it on
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # gone before the body was complete
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > limit:
                await error_response(refusal)(scope, receive, send)
                return
            if not message.get("more_body"):
                break
        body: list[Message] = [{"type": "http.request", "body": b"".join(chunks),
                                "more_body": False}]

        async def replay() -> Message:
            return body.pop() if body else await receive()

        await self.app(scope, replay, send)


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n} bytes"
