"""BodyLimit, the KServe predictor's guard on request size, driven as an ASGI server would."""

from __future__ import annotations

import asyncio
import json

import pytest

from captcha_ocr.serving.body_limit import BodyLimit


def serve(headers: list[tuple[bytes, bytes]], chunks: list[bytes], limit: int = 100):
    """(status, body the app received or the refusal) for one request."""
    seen: list[bytes] = []

    async def app(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        seen.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    incoming = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": headers}
    asyncio.run(BodyLimit(app, limit)(scope, receive, send))
    status = sent[0]["status"]
    return status, seen[0] if status == 200 else json.loads(sent[1]["body"])["error"]


def test_a_declared_length_over_the_limit_is_refused_unread():
    status, error = serve([(b"content-length", b"101")], [b"x" * 101])
    assert (status, error) == (413, "request of 101 bytes, limit 100: send fewer or smaller images")


@pytest.mark.parametrize("declared", [None, b"10"], ids=["chunked", "chunked with a length"])
def test_a_chunked_body_is_counted_whatever_length_it_declares(declared):
    headers = [(b"transfer-encoding", b"chunked")]
    headers += [(b"content-length", declared)] if declared else []
    assert serve(headers, [b"x" * 60, b"x" * 60])[0] == 413
    # Under the limit, the app gets the chunks whole, as one body.
    assert serve(headers, [b"a" * 40, b"b" * 40]) == (200, b"a" * 40 + b"b" * 40)


def test_a_body_within_its_declared_length_reaches_the_app():
    assert serve([(b"content-length", b"5")], [b"hello"]) == (200, b"hello")
