"""InferRoute, the KServe predictor's V2 infer route, driven as an ASGI server would.

The predictor in the serving venv answers through it for real
(tests/serving/test_kserve_predictor.py); here each answer is checked on its own.
"""

from __future__ import annotations

import asyncio
import json
import re

import numpy as np
import pytest

from captcha_ocr.serving.infer_route import InferRoute, Unavailable
from captcha_ocr.serving.uploads import BadImages

NAME = "captcha-ocr"
INFER = f"/v2/models/{NAME}/infer"


def nested(depth: int) -> str:
    """Stands for lists nested ``depth`` deep; ``serve`` writes them into the JSON
    (too deep for the json module to write)."""
    return f"nested:{depth}"


def with_nesting(raw: bytes) -> bytes:
    return re.sub(rb'"nested:(\d+)"', lambda m: b"[" * int(m[1]) + b"]" * int(m[1]), raw)


def tensor(data, name="image", datatype="BYTES", shape=None) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


async def read_lengths(values: list[str]) -> tuple[list[str], np.ndarray]:
    """Stands in for the network: each image's text is its length."""
    if "bad" in values:
        raise BadImages(f"row {values.index('bad')}: not a readable image")
    if "crash" in values:
        raise RuntimeError("the runtime failed")
    if "closed" in values:
        raise Unavailable(f"{NAME}: the network did not open")
    return [str(len(v)) for v in values], np.linspace(0.5, 1, len(values))


def serve(body, path=INFER, method="POST", headers=(), sent=None):
    """(status, JSON answer or None, what kserve's app saw, seconds observed);
    ``sent`` gets the ASGI messages sent."""
    passed_on: list[str] = []
    observed: list[float] = []

    async def kserve_app(scope, receive, send):
        passed_on.append(scope["path"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    raw = body if isinstance(body, bytes) else with_nesting(json.dumps(body).encode())
    incoming = [
        {"type": "http.request", "body": raw[:10], "more_body": True},
        {"type": "http.request", "body": raw[10:], "more_body": False},
    ]
    sent = [] if sent is None else sent

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    route = InferRoute(kserve_app, NAME, read_lengths, observed.append)
    asyncio.run(route(scope, receive, send))
    answer = json.loads(sent[1]["body"]) if sent and sent[0]["status"] != 299 else None
    return sent[0]["status"] if sent else None, answer, passed_on, observed


def test_a_batch_is_read_and_answered_as_the_v2_protocol_says():
    sent: list[dict] = []
    status, answer, passed_on, observed = serve(
        {"id": "r1", "inputs": [tensor(["a", "bbb"])]}, sent=sent
    )
    assert (status, passed_on, len(observed)) == (200, [], 1)
    assert dict(sent[0]["headers"]) == {
        b"content-type": b"application/json",
        b"content-length": str(len(sent[1]["body"])).encode(),
    }
    assert answer["model_name"] == NAME and answer["id"] == "r1"
    text, confidence = answer["outputs"]
    assert text == {
        "name": "text",
        "shape": [2],
        "datatype": "BYTES",
        "parameters": None,
        "data": ["1", "3"],
    }
    assert confidence["datatype"] == "FP64" and confidence["data"] == [0.5, 1.0]


def test_a_body_that_starts_with_a_byte_order_mark_is_read():
    body = b"\xef\xbb\xbf" + json.dumps({"inputs": [tensor(["abc"])]}).encode()
    status, answer, _, _ = serve(body)
    assert status == 200 and answer["outputs"][0]["data"] == ["3"]


def test_a_column_of_images_and_no_id_are_read_too():
    status, answer, _, _ = serve({"inputs": [tensor([["ab"], ["c"]], shape=[2, 1])]})
    assert status == 200 and answer["outputs"][0]["data"] == ["2", "1"]
    assert answer["id"]  # the protocol lets the request leave it out, never the response


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "the body is not JSON"),
        ([], "expected a V2 inference request with an input 'image'"),
        ({"inputs": 3}, "expected a V2 inference request with an input 'image'"),
        ({"inputs": [tensor(["a"], name="pic")]}, "expected one input 'image', got ['pic']"),
        ({"inputs": [tensor(["a"]), tensor(["b"])]}, "expected one input 'image', got ['image'"),
        ({"inputs": [tensor([1.0], datatype="FP32")]}, "datatype FP32, expected BYTES"),
        ({"inputs": [tensor(["a"], shape=["1"])]}, "shape ['1'], expected [N] or [N, 1]"),
        ({"inputs": [tensor(["a"], shape=[1, 2])]}, "shape [1, 2], expected [N] or [N, 1]"),
        ({"inputs": [{**tensor(["a"]), "data": "a"}]}, "data must be a list of base64 images"),
        ({"inputs": [tensor(["a"], shape=[3])]}, "shape says 3 images, data holds 1"),
        ({"id": 7, "inputs": [tensor(["a"])]}, "id must be a string, not 7"),
        ({"id": 0, "inputs": [tensor(["a"])]}, "id must be a string, not 0"),
        ({"id": [], "inputs": [tensor(["a"])]}, "id must be a string, not []"),
        ({"inputs": [tensor(["a"], shape=[True])]}, "shape [True], expected [N] or [N, 1]"),
        # Shown short: a value nested near JSON's limit must not recurse out of the stack.
        ({"inputs": [tensor(["a"], name=nested(1000))]}, "expected one input 'image', got"),
        ({"inputs": [tensor(["a"], shape=nested(1000))]}, "shape [[[[[[[...]]]]]]], expected"),
        ({"id": nested(1000), "inputs": [tensor(["a"])]}, "id must be a string"),
        ({"inputs": [tensor(["a", "bad"])]}, "row 1: not a readable image"),
    ],
)
def test_a_bad_request_is_a_400_that_names_the_field(body, error):
    status, answer, passed_on, observed = serve(body)
    assert status == 400 and error in answer["error"], answer
    assert passed_on == [] and observed == []


def test_a_network_that_did_not_open_is_a_503_and_a_failed_read_a_500():
    status, answer, _, observed = serve({"inputs": [tensor(["closed"])]})
    assert status == 503 and "did not open" in answer["error"] and observed == []
    status, answer, _, observed = serve({"inputs": [tensor(["crash"])]})
    # As kserve's own handler words it.
    assert (status, answer) == (500, {"error": "RuntimeError : the runtime failed"})
    assert observed == []


@pytest.mark.parametrize(
    ("path", "method", "headers"),
    [
        (f"/v2/models/{NAME}", "GET", ()),  # metadata
        (f"/v2/models/{NAME}/ready", "GET", ()),
        ("/v2/models/other/infer", "POST", ()),
        (INFER, "GET", ()),
        # The protocol's binary extension, and a CloudEvent, are kserve's to parse.
        (INFER, "POST", [(b"inference-header-content-length", b"20")]),
        (INFER, "POST", [(b"ce-specversion", b"1.0")]),
        (INFER, "POST", [(b"content-type", b"application/cloudevents+json")]),
    ],
)
def test_every_other_request_goes_on_to_kserve(path, method, headers):
    status, _, passed_on, _ = serve({"inputs": [tensor(["a"])]}, path, method, headers)
    assert (status, passed_on) == (299, [path])


def test_a_client_that_leaves_before_its_body_is_read_gets_nothing():
    sent: list[dict] = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    route = InferRoute(None, NAME, read_lengths)  # type: ignore[arg-type]
    scope = {"type": "http", "method": "POST", "path": INFER, "headers": []}
    asyncio.run(route(scope, receive, send))
    assert sent == []
