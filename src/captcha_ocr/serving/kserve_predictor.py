"""The registered model as a KServe predictor, on the V2 inference protocol.

    python -m captcha_ocr.serving.kserve_predictor --model_name captcha-ocr --model_dir /mnt/models

Runs in the serving environment (``requirements-serve.txt``: no TensorFlow, no MLflow):
the MLflow model in ``--model_dir`` (where KServe's storage initializer puts
the version's files) is opened as the demo opens it: its MLmodel is checked,
and its network reads under OpenVINO, the image's one runtime: the int8 network
when export kept it, else the float one (in float32, as onnxruntime reads it).
None of the code that came with the model runs.

``--workers N`` (kserve's option) serves from N processes, each opening the
network on its share of the cores (``available_cores``), less one for its event
loop; a process with one core reads small calls on its event loop.

Request (``POST /v2/models/<name>/infer``): one input ``image``, datatype
``BYTES``, shape ``[N]`` or ``[N, 1]``, each element a base64 PNG or JPEG;
the N images are one network call, shared with the requests that arrive
while the previous call runs (``serving.shared_calls``). Response: ``text`` (BYTES, ``[N]``) and
``confidence`` (FP64, ``[N]``), answered in front of kserve's app by
``serving.infer_route``. A bad request gets a 400 whose message names the
field, input or row, under the limits of ``serving.uploads``; a body over
``--max_request_bytes`` (64 MiB) gets a 413 before it is read. ``GET
/v2/models/<name>/ready`` and ``GET /v2/models/<name>`` (metadata) as in the
protocol.

Why the kserve SDK and not MLServer's MLflow runtime: that runtime needs the
full ``mlflow`` package (scipy, scikit-learn, pyarrow, ...) and pins
``fastapi<0.116``; this predictor needs the kserve SDK, OpenVINO, NumPy and
Pillow, and reads the model's files as data (docs/operations.md#kserve).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import traceback
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve.errors import InvalidInput, ModelNotReady
from kserve.metrics import PREDICT_HIST_TIME, get_labels
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from captcha_ocr.core.runtimes import available_cores
from captcha_ocr.serving.body_limit import BodyLimit
from captcha_ocr.serving.deploy import PREDICTOR_RUNTIME
from captcha_ocr.serving.infer_route import (
    BadRequest,
    InferRoute,
    Unavailable,
    image_values,
    infer_response,
)
from captcha_ocr.serving.shared_calls import SharedCalls, split_cores
from captcha_ocr.serving.uploads import (
    INPUT_COLUMN,
    MAX_REQUEST_BYTES,
    BadImages,
    declared_pixels,
    decode_values,
)

# Requests up to this many pixels (a hundred 200x50 captchas, about 25 ms at the
# 0.26 ms a captcha took to decode here) decode on the event loop; larger ones in a
# thread. Six 1x4194304 PNGs of 11 KB each held the loop (and /ready) for 2 s.
INLINE_PIXELS = 1_000_000
INPUT = {"name": INPUT_COLUMN, "datatype": "BYTES", "shape": [-1]}
OUTPUTS = [
    {"name": "text", "datatype": "BYTES", "shape": [-1]},
    {"name": "confidence", "datatype": "FP64", "shape": [-1]},
]


class CaptchaPredictor(kserve.Model):
    """The registered model in ``model_dir``, answering V2 inference requests."""

    def __init__(
        self,
        name: str,
        model_dir: str,
        workers: int = 1,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ):
        super().__init__(name)
        self.model_dir = model_dir
        self.max_request_bytes = max_request_bytes
        # On 2 cores, 1 network thread reads more requests/s than 2 (bench/README.md).
        self.network_threads, self.inline_images = split_cores(available_cores(), workers)
        self.reader: Any = None  # the network under its runtime, once loaded
        self.calls: SharedCalls | None = None  # concurrent requests share network calls
        self.opening: threading.Thread | None = None  # a worker opening its network

    def load(self) -> bool:
        from captcha_ocr.serving.readers import open_mlflow_reader

        # The model's files are read as data, as the demo reads them: its MLmodel is
        # checked, then its network opens under OpenVINO, by the code installed in
        # this image. Nothing that came with the model runs, and
        # MLflow's DataFrame checks are skipped (the V2 tensor is checked here).
        self.reader = reader = open_mlflow_reader(
            self.model_dir,
            folder=Path(self.model_dir),
            threads=self.network_threads,
            runtime=PREDICTOR_RUNTIME,
        )
        colour = (reader.channels,) if reader.channels > 1 else ()
        # Each batch size compiles on first use (about 0.15 s, padded to powers of
        # two): the sizes a call may read on the event loop compile here, before
        # it answers, not while probes and requests wait on it.
        size = 1
        while size <= max(1, self.inline_images):
            reader.read(np.full((size, reader.height, reader.width, *colour), 255, np.uint8))
            size *= 2
        self.calls = SharedCalls(reader.read, inline_images=self.inline_images)
        self.ready = True
        return self.ready

    def __getstate__(self) -> dict:
        # kserve starts each of --workers N in a spawned process, which gets this
        # predictor pickled: the network under its runtime does not pickle, and each
        # process opens its own.
        return {**self.__dict__, "reader": None, "calls": None, "opening": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        # A worker imports kserve's app afresh: it gets its own route and body limit.
        self.install_routes(kserve.model_server.app)
        if self.ready:
            # In the background: kserve's parent restarts a worker that does not
            # answer its ping within 5 s, and a worker answers only once unpickled.
            self.opening = threading.Thread(target=self._load_or_exit, name="open-network")
            self.opening.daemon = True
            self.opening.start()

    def _load_or_exit(self) -> None:
        """A worker that cannot open its network ends, and kserve's parent starts
        another: it must not stay up answering 500 to every request."""
        try:
            self.load()
        except BaseException:
            traceback.print_exc()
            print(f"{self.name}: this worker could not open the network; it exits", flush=True)
            os._exit(1)

    def get_input_types(self) -> list[dict]:
        return [INPUT]

    def get_output_types(self) -> list[dict]:
        return OUTPUTS

    async def predict(self, payload, headers=None, response_headers=None) -> InferResponse:  # noqa: ARG002
        """kserve's own route, for what the infer route hands on (the binary extension)."""
        if not isinstance(payload, InferRequest):
            raise InvalidInput("expected a V2 inference request with an input 'image'")
        request = {
            "inputs": [
                {"name": t.name, "datatype": t.datatype, "shape": list(t.shape), "data": t.data}
                for t in payload.inputs
            ]
        }
        try:
            texts, confidence = await self.read(image_values(request))
        except (BadRequest, BadImages) as err:  # the message names the field or row
            raise InvalidInput(str(err)) from None
        except Unavailable:
            raise ModelNotReady(self.name) from None
        answer = infer_response(self.name, payload.id or str(uuid.uuid4()), texts, confidence)
        return InferResponse(
            response_id=answer["id"],
            model_name=self.name,
            infer_outputs=[
                InferOutput(o["name"], o["shape"], o["datatype"], data=o["data"])
                for o in answer["outputs"]
            ],
        )

    async def read(self, values: list[str]) -> tuple[list[str], np.ndarray]:
        """Base64 images to texts and confidences, sharing network calls with the
        requests that arrive meanwhile. BadImages names the row."""
        if not self.ready:  # unloaded through the repository API, or stopping
            raise Unavailable(f"Model with name {self.name} is not ready.")
        if self.calls is None and self.opening is not None:  # a worker still opening it
            await asyncio.to_thread(self.opening.join)
        if self.calls is None:
            raise Unavailable(f"{self.name}: the network did not open (see the log)")
        reader = self.reader
        decode = partial(decode_values, values, reader.height, reader.width, reader.channels)
        if declared_pixels(values) <= INLINE_PIXELS:
            images = decode()
        else:
            # A large image, or many, decodes in a thread (Pillow lets go of the GIL):
            # the event loop goes on answering other requests and the kubelet's probes.
            images = await asyncio.to_thread(decode)
        return await self.calls.read(images)

    def install_routes(self, app: Any) -> None:
        """Put the infer route and the body limit in front of kserve's app, once per
        process: ``BodyLimit(InferRoute(kserve's middleware and router))``. In front,
        not among its middleware, because kserve adds its own (a timing middleware
        that matches the route and writes two log lines) outside anything added
        before it starts, and that costs the event loop a fifth of a request."""
        if getattr(app, "captcha_ocr_front", False):
            return
        if app.middleware_stack is not None:  # too late: requests are being served
            raise RuntimeError("install_routes: kserve's app is already serving")
        build_kserve_stack = app.build_middleware_stack
        predict_seconds = PREDICT_HIST_TIME.labels(**get_labels(self.name))

        def build_stack() -> Any:
            route = InferRoute(build_kserve_stack(), self.name, self.read, predict_seconds.observe)
            return BodyLimit(route, self.max_request_bytes)

        app.build_middleware_stack = build_stack  # Starlette builds it on the first request
        app.captcha_ocr_front = True


def bind_to(host: str) -> None:
    """Make the REST server listen on ``host``: kserve 0.21 always binds 0.0.0.0."""
    import uvicorn

    original = uvicorn.Config.__init__

    def bound(self, *args, **kwargs):
        original(self, *args, **{**kwargs, "host": host})

    uvicorn.Config.__init__ = bound  # type: ignore[method-assign]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr-kserve",
        description=__doc__,
        parents=[kserve.model_server.parser],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    # kserve's own options (--model_name, --http_port, ...) come with its parser.
    parser.set_defaults(model_name="captcha-ocr")
    parser.add_argument("--model_dir", default="/mnt/models", help="the MLflow model's folder")
    # Loopback unless told: the serving image sets CAPTCHA_OCR_HOST to every
    # interface, since a pod is reached through its own IP.
    host = os.environ.get("CAPTCHA_OCR_HOST", "127.0.0.1")
    parser.add_argument("--host", default=host, help=f"address to bind (default {host})")
    parser.add_argument(
        "--max_request_bytes",
        type=positive_int,
        default=MAX_REQUEST_BYTES,
        help=f"larger request bodies get 413 before they are read (default {MAX_REQUEST_BYTES})",
    )
    args = parser.parse_args(argv)  # a mistyped option is an error, not a silent default
    bind_to(args.host)
    predictor = CaptchaPredictor(
        args.model_name, args.model_dir, args.workers, args.max_request_bytes
    )
    predictor.install_routes(kserve.model_server.app)
    predictor.load()
    if args.workers == 1 and args.event_loop != "asyncio":
        # kserve serves one process in asyncio.run() on the default loop, whatever
        # --event-loop says (its worker processes get uvloop through uvicorn). uvloop's
        # socket transports cost the event loop a fraction of asyncio's per request.
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.set_event_loop(asyncio.new_event_loop())  # kserve asks for the current loop
    kserve.ModelServer(http_port=args.http_port, enable_grpc=False, workers=args.workers).start(
        [predictor]
    )


if __name__ == "__main__":
    main()
