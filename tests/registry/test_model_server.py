"""`mlflow models serve` of the champion, for real, on 127.0.0.1.

The server runs in a subprocess from this venv (--env-manager local); the test
posts real captchas and bad payloads and checks that the server keeps answering.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from captcha_ocr.config import PromoteParams
from captcha_ocr.promotion.gate import promote
from captcha_ocr.serving.uploads import MAX_BATCH, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, encode_image
from tests.helpers import free_port, stop, wait_until_up

from .conftest import register

pytestmark = pytest.mark.slow
NAME = "captcha-ocr-served"


def post(
    url: str, body: bytes, content_type: str = "application/json", timeout: float = 60
) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wide_png() -> str:
    """46 KB of base64 PNG that decodes to 3160x3160 RGBA, 40 MB."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", (3160, 3160), (0, 0, 0, 0)).save(buffer, format="PNG")
    return encode_image(buffer.getvalue())


def images_payload(values: list[str]) -> bytes:
    return json.dumps(
        {"dataframe_split": {"columns": ["image"], "data": [[v] for v in values]}}
    ).encode()


@pytest.fixture
def server(store, reader_file, captcha_pngs):
    register(reader_file, NAME, next(iter(captcha_pngs.values())), exact_match=0.9, cer=0.0)
    promote(NAME, PromoteParams(min_exact_match=0.5))
    port = free_port()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    process = subprocess.Popen(
        [
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{NAME}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def pings() -> bool:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            return response.status == 200

    wait_until_up(pings, process, "mlflow models serve", lambda: process.stderr.read())
    yield url
    stop(process)


def test_server_reads_real_captchas_and_survives_bad_requests(server, reader_file, captcha_pngs):
    import numpy as np

    from captcha_ocr.core.images import decode_image
    from captcha_ocr.core.runtimes import OpenVinoReader
    from captcha_ocr.core.vocabulary import Vocabulary

    pngs = list(captcha_pngs.values())[:4]
    status, body = post(f"{server}/invocations", images_payload([encode_image(p) for p in pngs]))
    assert status == 200, body
    predictions = json.loads(body)["predictions"]
    # What the served int8 network reads (an untrained one: int8 and float may differ).
    vocabulary = Vocabulary.load(reader_file.with_name("vocabulary.json"))
    served = OpenVinoReader(reader_file.with_name("captcha_network_int8.onnx"), vocabulary)
    expected, _ = served.read(np.stack([decode_image(p, 50, 200) for p in pngs]))
    assert [p["text"] for p in predictions] == expected

    bad = {
        "not base64": images_payload(["@@@ not base64 @@@"]),
        "not an image": images_payload([encode_image(b"GIF? no, plain text")]),
        "empty batch": images_payload([]),
        "image over the size limit": images_payload([encode_image(b"\0" * (MAX_IMAGE_BYTES + 1))]),
        "batch over the limit": images_payload([encode_image(pngs[0])] * (MAX_BATCH + 1)),
        "image over the pixel limit": images_payload([encode_image(pngs[0]), wide_png()]),
    }
    for what, body in bad.items():
        # A bad request is refused, not worked on: it must not take the inference timeout.
        status, answer = post(f"{server}/invocations", body, timeout=20)
        assert 400 <= status < 500, f"{what}: {status} {answer[:300]}"
    assert f"limit {MAX_BATCH}" in post(f"{server}/invocations", bad["batch over the limit"])[1]
    status, answer = post(f"{server}/invocations", b"image=abc", "text/plain")
    assert 400 <= status < 500, answer[:300]
    assert "row 0: not valid base64" in post(f"{server}/invocations", bad["not base64"])[1]
    wide = post(f"{server}/invocations", bad["image over the pixel limit"])[1]
    assert f"row 1: image of 3160x3160 pixels, limit {MAX_IMAGE_PIXELS} pixels" in wide

    # Still serving after all that.
    status, body = post(f"{server}/invocations", images_payload([encode_image(pngs[0])]))
    assert status == 200 and json.loads(body)["predictions"][0]["text"] == expected[0]
