"""A page to try a reader in the browser, and the JSON endpoint behind it.

    captcha-ocr demo [--model models:/captcha-ocr@champion] [--port 8000]

``GET /`` is the page: drop or choose a captcha, or click one of the test
images, and see the text, each character's confidence and which model version
answered. ``POST /api/read`` takes one image, as a multipart field ``file`` or
as JSON ``{"image": "<base64>"}``, and answers with JSON; a bad file gets a
4xx with ``{"error": "..."}`` that names what was wrong. ``GET /api/model``
says which model is loaded; ``GET /api/gallery`` lists the sample images.
Binds to 127.0.0.1 unless ``--host`` says otherwise.

What one client can make the server hold is bounded: a body of 2.7 MiB, read
within 30 s (408 after); an image of 2 MiB and 2048x2048 pixels (413);
``MAX_READING`` images decoded or read at once and ``MAX_ADMITTED`` requests
in hand in all (503 beyond, with Retry-After). Every response says
``nosniff`` and carries a Content-Security-Policy that lets only the page's
own script and style run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import numpy as np
from starlette.requests import ClientDisconnect, Request

from captcha_ocr import paths
from captcha_ocr.core.images import ImageError, ImageTooLarge
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.files import read_text_table
from captcha_ocr.serving.predict import DEFAULT_REGISTRY_URI, IMAGE_SUFFIXES, Predictor
from captcha_ocr.serving.uploads import MAX_IMAGE_BYTES

DEFAULT_PORT = 8000
GALLERY_SIZE = 12
# A base64 body is 4/3 of the image; multipart adds headers and boundaries.
MAX_BODY_BYTES = MAX_IMAGE_BYTES * 4 // 3 + 64 * 1024
TOO_BIG = f": images of up to {MAX_IMAGE_BYTES // 2**20} MiB are read"
BODY_TIMEOUT_SECONDS = 30.0
# Decoding an image at the pixel limit takes some 50 MB for a moment: two at
# once keep both cores busy; the others wait, holding only their bodies.
MAX_READING = 2
MAX_ADMITTED = 16


class BadRequest(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


class Admission:
    """The requests in hand: at most ``limit`` in all, ``reading`` of them decoding at once.

    Used from the event loop only, so a plain counter is safe.
    """

    def __init__(self, limit: int, reading: int):
        self.limit, self.count = limit, 0
        self.reading = asyncio.Semaphore(reading)

    @contextmanager
    def admit(self) -> Iterator[None]:
        if self.count >= self.limit:
            raise BadRequest(
                503,
                f"busy: {self.count} requests in hand, limit {self.limit}; try again shortly",
                {"Retry-After": "1"},
            )
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


class SecurityHeaders:
    """ASGI middleware: every response says nosniff and carries the page's CSP."""

    def __init__(self, app, csp: str):
        self.app = app
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"content-security-policy", csp.encode()),
        ]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def content_security_policy(page: str) -> str:
    """Only the page's own inline script and style run (by hash, so an edit to
    the page keeps working); images from here or the browser's blob: previews;
    requests to this server only."""

    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        digests = [base64.b64encode(hashlib.sha256(b.encode()).digest()) for b in bodies]
        return " ".join(f"'sha256-{d.decode()}'" for d in digests) or "'none'"

    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {hashes('script')}",
            f"style-src {hashes('style')}",
            "img-src 'self' blob:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def gallery_images(folder: Path | None = None, limit: int = GALLERY_SIZE) -> dict[str, Path]:
    """Sample images by file name: from ``folder``, else the pipeline's test split."""
    found: list[Path] = []
    if folder is not None:
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif paths.split_csv("test").is_file() and paths.RAW_IMAGES.is_dir():
        files = read_text_table(paths.split_csv("test"))["file"]
        found = [paths.RAW_IMAGES / f for f in files if (paths.RAW_IMAGES / f).is_file()]
    return {p.name: p for p in found[:limit]}


def image_from_json(body: bytes) -> tuple[str, bytes]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(400, f"request body is not valid JSON: {err}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
        raise BadRequest(400, 'expected JSON {"image": "<base64 PNG or JPEG>"}')
    value = payload["image"]
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]  # a data URL, as browsers make them
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(400, "field 'image': not valid base64") from None
    return str(payload.get("name") or "image"), data


async def image_from_form(request: Request, body: bytes) -> tuple[str, bytes]:
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=4)
    except Exception as err:  # the multipart parser raises several kinds
        raise BadRequest(400, f"malformed multipart body: {err}") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise BadRequest(400, "multipart field 'file' with an image is missing")
    return upload.filename or "upload", await upload.read()


def create_app(
    predictor: Predictor,
    gallery: dict[str, Path],
    max_admitted: int = MAX_ADMITTED,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
):
    """The FastAPI app around one loaded model."""
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException

    app = FastAPI(title="captcha-ocr demo", docs_url=None, redoc_url=None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Every error the page can meet has the same shape: {"error": "..."}.
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse({"error": message}, status_code=exc.status_code)

    page = resources.files("captcha_ocr").joinpath("serving/web/demo.html").read_text("utf-8")
    app.add_middleware(SecurityHeaders, csp=content_security_policy(page))
    admission = Admission(max_admitted, MAX_READING)
    # One model call at a time: the first one traces the graph, and two cores
    # gain nothing from more.
    lock = threading.Lock()
    reader = predictor.reader
    shape = (1, reader.height, reader.width) + ((reader.channels,) if reader.channels > 1 else ())
    blank = np.full(shape, 255, dtype=np.uint8)
    predictor.reader.read_characters(blank)

    def read(name: str, data: bytes) -> dict:
        if not data:
            raise BadRequest(400, f"{name}: empty file")
        try:
            image = predictor.decode(data)  # once, its size checked first
        except ImageTooLarge as err:
            raise BadRequest(413, f"{name}: {err}") from None
        except ImageError as err:
            raise BadRequest(400, f"{name}: {err}") from None
        with lock:
            (reading,) = predictor.read_characters([image])
        return {
            "file": name,
            "text": reading.text,
            "confidence": reading.confidence,
            "characters": [{"char": c, "confidence": s} for c, s in reading.characters],
            "model": predictor.source,
        }

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/model")
    def model() -> dict:
        return predictor.source

    @app.get("/api/gallery")
    def listing() -> list[dict]:
        return [{"name": n, "url": f"/gallery/{n}"} for n in gallery]

    @app.get("/gallery/{name}")
    def sample(name: str):
        if name not in gallery:
            return JSONResponse({"error": f"no gallery image {name!r}"}, status_code=404)
        return FileResponse(gallery[name])

    @app.post("/api/read")
    async def read_image(request: Request):
        from starlette.concurrency import run_in_threadpool

        try:
            with admission.admit():
                body = await read_body(request, body_timeout)
                name, data = await image_from_body(request, body)
                async with admission.reading:
                    return await run_in_threadpool(read, name, data)
        except BadRequest as err:
            return JSONResponse({"error": str(err)}, status_code=err.status, headers=err.headers)

    return app


async def image_from_body(request: Request, body: bytes) -> tuple[str, bytes]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return await image_from_form(request, body)
    if kind == "application/json":
        return image_from_json(body)
    raise BadRequest(
        415,
        f"content type {kind or '(none)'!r}: send multipart/form-data with a "
        "field 'file', or application/json with a field 'image'",
    )


async def read_body(request: Request, timeout: float = BODY_TIMEOUT_SECONDS) -> bytes:
    """The request body, refused when over the limit or not all there in ``timeout`` s."""
    try:
        return await asyncio.wait_for(read_body_bounded(request), timeout)
    except TimeoutError:
        raise BadRequest(408, f"request body not received within {timeout:g} s") from None


async def read_body_bounded(request: Request) -> bytes:
    """The request body, refused as soon as it is known to be over the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadRequest(413, f"request of {declared} bytes, limit {MAX_BODY_BYTES}{TOO_BIG}")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise BadRequest(413, f"request over the limit of {MAX_BODY_BYTES} bytes{TOO_BIG}")
    except ClientDisconnect:  # nobody to answer; this ends the request without a traceback
        raise BadRequest(400, "the client left before sending the whole body") from None
    return bytes(body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr demo", description=__doc__, allow_abbrev=False
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_REGISTRY_URI,
        help=f"MLflow model URI or reader file/folder (default {DEFAULT_REGISTRY_URI})",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--gallery", type=Path, help="folder of sample images (default: the test split)"
    )
    args = parser.parse_args(argv)
    check_arguments(args.port, args.gallery)
    import uvicorn

    try:
        predictor = Predictor(args.model)
    except CaptchaOcrError as err:
        raise CaptchaOcrError(f"{err} (or try --model {paths.READER.parent})") from None
    app = create_app(predictor, gallery_images(args.gallery))
    source = predictor.source
    if "version" in source:
        what = f"{source['name']} version {source['version']}"
        what += f" (@{source['alias']})" if "alias" in source else ""
    else:
        what = f"{source['kind']} {source['uri']}"
    print(
        f"captcha-ocr demo: http://{args.host}:{args.port}/ reading with {what}; Ctrl+C stops",
        flush=True,  # a log file must show the address before the server blocks
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def check_arguments(port: int, gallery: Path | None) -> None:
    """Refuse what would fail only after the model has loaded, by the option's name."""
    if not 1 <= port <= 65535:
        raise CaptchaOcrError(f"--port {port}: not a TCP port (1-65535)")
    if gallery is not None and not gallery.is_dir():
        why = "not a folder" if gallery.exists() else "no such folder"
        raise CaptchaOcrError(f"--gallery {gallery}: {why}")
