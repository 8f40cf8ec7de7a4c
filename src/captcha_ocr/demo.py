"""A page to try a reader in the browser, and the JSON endpoint behind it.

    captcha-ocr demo [--model models:/captcha-ocr@champion] [--port 8000]

``GET /`` is the page: drop or choose a captcha, or click one of the test
images, and see the text, each character's confidence and which model version
answered. ``POST /api/read`` takes one image, as a multipart field ``file`` or
as JSON ``{"image": "<base64>"}``, and answers with JSON; a bad file gets a
4xx with ``{"error": "..."}`` that names what was wrong. ``GET /api/model``
says which model is loaded; ``GET /api/gallery`` lists the sample images.
Binds to 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import threading
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from starlette.requests import Request

from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.export import READER_PATH
from captcha_ocr.images import ImageError, ImageTooLarge
from captcha_ocr.predict import DEFAULT_REGISTRY_URI, IMAGE_SUFFIXES, Predictor
from captcha_ocr.serving import MAX_IMAGE_BYTES

DEFAULT_PORT = 8000
GALLERY_SIZE = 12
TEST_SPLIT = Path("data/splits/test.csv")
RAW_IMAGES = Path("data/raw/images")
# A base64 body is 4/3 of the image; multipart adds headers and boundaries.
MAX_BODY_BYTES = MAX_IMAGE_BYTES * 4 // 3 + 64 * 1024
TOO_BIG = f": images of up to {MAX_IMAGE_BYTES // 2**20} MiB are read"


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def gallery_images(folder: Path | None = None, limit: int = GALLERY_SIZE) -> dict[str, Path]:
    """Sample images by file name: from ``folder``, else the pipeline's test split."""
    if folder is not None:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif TEST_SPLIT.is_file() and RAW_IMAGES.is_dir():
        files = pd.read_csv(TEST_SPLIT, dtype=str)["file"]
        paths = [RAW_IMAGES / f for f in files if (RAW_IMAGES / f).is_file()]
    else:
        paths = []
    return {p.name: p for p in paths[:limit]}


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


def create_app(predictor: Predictor, gallery: dict[str, Path]):
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

    page = resources.files("captcha_ocr").joinpath("web/demo.html").read_text(encoding="utf-8")
    # One model call at a time: the first one traces the graph, and two cores
    # gain nothing from more.
    lock = threading.Lock()
    blank = np.full((1, predictor.reader.height, predictor.reader.width), 255, dtype=np.uint8)
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
            body = await read_body(request)
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind == "multipart/form-data":
                name, data = await image_from_form(request, body)
            elif kind == "application/json":
                name, data = image_from_json(body)
            else:
                raise BadRequest(
                    415,
                    f"content type {kind or '(none)'!r}: send multipart/form-data with a "
                    "field 'file', or application/json with a field 'image'",
                )
            return await run_in_threadpool(read, name, data)
        except BadRequest as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)

    return app


async def read_body(request: Request) -> bytes:
    """The request body, refused as soon as it is known to be over the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadRequest(413, f"request of {declared} bytes, limit {MAX_BODY_BYTES}{TOO_BIG}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(413, f"request over the limit of {MAX_BODY_BYTES} bytes{TOO_BIG}")
    return bytes(body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="captcha-ocr demo", description=__doc__)
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
    import uvicorn

    try:
        predictor = Predictor(args.model)
    except CaptchaOcrError as err:
        raise CaptchaOcrError(f"{err} (or try --model {READER_PATH.parent})") from None
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
