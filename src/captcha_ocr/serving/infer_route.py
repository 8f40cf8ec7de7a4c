"""The KServe predictor's V2 infer route, answered ahead of kserve's router.

    POST /v2/models/<name>/infer

kserve answers this route through FastAPI's router, its data plane and its
pydantic request and response models, inside its middleware. Under load that
costs the event loop more per request than decoding the image and running the
network together (bench/README.md, "The infer route in front of kserve"), and
the event loop is what a busy predictor waits on. Here the route is an ASGI
layer in front of kserve's whole app, inside only the body limit
(``serving.body_limit``): it parses the body with orjson, checks the request as
the protocol says, reads, and answers the protocol's JSON with the fields
kserve's response has. kserve's ``request_predict_seconds`` histogram is still
observed; its timing and latency log lines are not written (uvicorn's access
line is). Every other request goes on to kserve: ready, metadata, /metrics,
other models, a body in the protocol's binary extension
(``Inference-Header-Content-Length``) and a CloudEvent.

A request kserve would answer 422 with pydantic's details (a body that is not
JSON, a missing field) gets a 400 here that names the field.
"""

from __future__ import annotations

import logging
import reprlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson

from captcha_ocr.serving.body_limit import App, Receive, Scope, Send
from captcha_ocr.serving.uploads import INPUT_COLUMN, BadImages

Read = Callable[[list[str]], Awaitable[tuple[list[str], np.ndarray]]]
Observe = Callable[[float], None]
# Bodies kserve parses its own way: the protocol's binary extension, and CloudEvents
# (binary mode: ce-* headers; structured: their content type), answered as events.
BINARY_EXTENSION = b"inference-header-content-length"
CLOUD_EVENT = b"ce-specversion"
CLOUD_EVENT_TYPE = b"application/cloudevents+json"
log = logging.getLogger(__name__)


class BadRequest(ValueError):
    """A request the protocol does not allow; the message names the field."""


class Unavailable(RuntimeError):
    """The network is not open in this process: answer 503, as kserve does."""


def image_values(request: Any) -> list[str]:
    """The base64 images of a V2 request (a dict, as JSON gives it); BadRequest names
    what is wrong."""
    inputs = request.get("inputs") if isinstance(request, dict) else None
    if not isinstance(inputs, list) or not all(isinstance(t, dict) for t in inputs):
        raise BadRequest(f"expected a V2 inference request with an input {INPUT_COLUMN!r}")
    # A value from the request is shown through reprlib: short, and never deep enough
    # to recurse out of the stack (JSON nests up to 1024 lists).
    names = sorted(reprlib.repr(t.get("name")).strip("'") for t in inputs)
    if names != [INPUT_COLUMN]:
        raise BadRequest(f"expected one input {INPUT_COLUMN!r}, got {names}")
    tensor = inputs[0]
    datatype, shape, data = tensor.get("datatype"), tensor.get("shape"), tensor.get("data")
    if datatype != "BYTES":
        shown = reprlib.repr(datatype).strip("'")
        raise BadRequest(f"input {INPUT_COLUMN!r}: datatype {shown}, expected BYTES")
    if (
        not isinstance(shape, list)
        or not all(type(n) is int and n >= 0 for n in shape)  # not a bool, not a float
        or len(shape) not in (1, 2)
        or shape[1:] not in ([], [1])
    ):
        shown = reprlib.repr(shape)
        raise BadRequest(f"input {INPUT_COLUMN!r}: shape {shown}, expected [N] or [N, 1]")
    if not isinstance(data, list):
        raise BadRequest(f"input {INPUT_COLUMN!r}: data must be a list of base64 images")
    values = [v for row in data for v in (row if isinstance(row, list) else [row])]
    if len(values) != shape[0]:
        raise BadRequest(
            f"input {INPUT_COLUMN!r}: shape says {shape[0]} images, data holds {len(values)}"
        )
    return [v.decode("ascii", "replace") if isinstance(v, bytes) else v for v in values]


def infer_response(model: str, request_id: str, texts: list[str], confidence: np.ndarray) -> dict:
    """The protocol's response, with the fields (and nulls) of kserve's."""
    return {
        "model_name": model,
        "model_version": None,
        "id": request_id,
        "parameters": None,
        "outputs": [
            output("text", "BYTES", texts),
            output("confidence", "FP64", confidence.astype(float).tolist()),
        ],
    }


def output(name: str, datatype: str, data: list) -> dict:
    return {
        "name": name,
        "shape": [len(data)],
        "datatype": datatype,
        "parameters": None,
        "data": data,
    }


class InferRoute:
    """ASGI: ``POST /v2/models/<model>/infer`` read by ``read``; the rest to ``app``."""

    def __init__(self, app: App, model: str, read: Read, observe: Observe | None = None):
        self.app, self.model, self.read, self.observe = app, model, read, observe
        self.path = f"/v2/models/{model}/infer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != self.path
            or any(
                name in (BINARY_EXTENSION, CLOUD_EVENT)
                or (name == b"content-type" and value.startswith(CLOUD_EVENT_TYPE))
                for name, value in scope["headers"]
            )
        ):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status, answer = await self.answer(b"".join(chunks))
        body = orjson.dumps(answer)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def answer(self, body: bytes) -> tuple[int, dict]:
        try:
            # JSON may start with a byte-order mark (RFC 8259 lets a parser skip it).
            request = orjson.loads(body.removeprefix(b"\xef\xbb\xbf"))
            values = image_values(request)
            request_id = request.get("id")
            if request_id is not None and not isinstance(request_id, str):
                raise BadRequest(f"id must be a string, not {reprlib.repr(request_id)}")
            request_id = request_id or str(uuid.uuid4())  # optional in a request, not an answer
        except orjson.JSONDecodeError as err:
            return 400, {"error": f"the body is not JSON: {err}"}
        except BadRequest as err:
            return 400, {"error": str(err)}
        started = time.perf_counter()
        try:
            texts, confidence = await self.read(values)
        except BadImages as err:  # the message names the row
            return 400, {"error": str(err)}
        except Unavailable as err:
            return 503, {"error": str(err)}
        except Exception as err:  # in front of kserve's handlers: answer as they would
            log.exception("reading %d image(s) failed", len(values))
            return 500, {"error": f"{type(err).__name__} : {err}"}
        if self.observe is not None:
            self.observe(time.perf_counter() - started)
        return 200, infer_response(self.model, request_id, texts, confidence)
