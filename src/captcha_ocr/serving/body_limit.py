"""Refuse a request body over a byte limit before the server holds it whole.

An ASGI middleware for the KServe predictor's app. kserve parses the whole
JSON body before the predictor sees a single image, so the per-request limits
of ``serving.uploads`` come too late for memory: the body is already held,
several times over, as JSON and as Python objects.
Here a declared ``Content-Length`` over the limit is answered 413 at once;
a chunked body is read up to the limit, then handed on or refused.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    def __init__(self, app: App, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        # A chunked body's Content-Length means nothing (some parsers pass both on).
        declared = None if b"transfer-encoding" in headers else headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self.refuse(send, f"request of {int(declared)} bytes")
        elif declared is not None:
            await self.app(scope, receive, send)  # the server reads it to its length
        else:
            await self.chunked(scope, receive, send)

    async def chunked(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A body of undeclared length: read up to the limit, then hand it on whole."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self.refuse(send, f"request of more than {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break
        whole: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return whole.pop() if whole else await receive()

        await self.app(scope, replay, send)

    async def refuse(self, send: Send, what: str) -> None:
        body = json.dumps(
            {"error": f"{what}, limit {self.max_bytes}: send fewer or smaller images"}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the rest of the body is never read
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
