"""The demo's JSON endpoint over a real server on 127.0.0.1 and a real tiny reader."""

from __future__ import annotations

import base64
import io
import re
import socket
import time

import numpy as np
import pandas as pd
import pytest
import requests
from PIL import Image

from captcha_ocr.core.images import decode_image
from captcha_ocr.core.model import CaptchaReader
from captcha_ocr.serving.demo import MAX_BODY_BYTES, create_app, gallery_images
from captcha_ocr.serving.predict import Predictor
from captcha_ocr.serving.uploads import MAX_IMAGE_BYTES

from .conftest import serving


@pytest.fixture(scope="module")
def demo(reader_path, gallery_dir):
    app = create_app(Predictor(str(reader_path)), gallery_images(gallery_dir))
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def expected(reader_path, captcha_pngs):
    """What the reader itself returns for each captcha: the page must agree."""
    reader = CaptchaReader.load(reader_path)
    images = np.stack([decode_image(d, 50, 200) for d in captcha_pngs.values()])
    texts, confidence = reader.read(images)
    assert any(texts)
    return dict(zip(captcha_pngs, zip(texts, confidence, strict=True), strict=True))


def post_file(url: str, name: str, data: bytes, kind: str = "image/png") -> requests.Response:
    return requests.post(f"{url}/api/read", files={"file": (name, data, kind)}, timeout=60)


def test_multipart_upload_reads_like_the_reader(demo, captcha_pngs, expected, reader_path):
    for label, data in list(captcha_pngs.items())[:4]:
        response = post_file(demo, f"{label}.png", data)
        assert response.status_code == 200, response.text
        answer = response.json()
        text, confidence = expected[label]
        assert answer["text"] == text
        assert answer["confidence"] == pytest.approx(float(confidence), rel=1e-4)
        assert [c["char"] for c in answer["characters"]] == list(text)
        assert all(confidence <= c["confidence"] + 1e-6 <= 1 for c in answer["characters"])
        assert answer["file"] == f"{label}.png"
        assert answer["model"] == {"kind": "local file", "uri": str(reader_path.resolve())}


def test_json_base64_gives_the_same_answer(demo, captcha_pngs):
    label, data = next(iter(captcha_pngs.items()))
    by_form = post_file(demo, "x.png", data).json()
    plain = base64.b64encode(data).decode()
    for value in (plain, f"data:image/png;base64,{plain}"):
        response = requests.post(f"{demo}/api/read", json={"image": value}, timeout=60)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["text"], answer["characters"]) == (by_form["text"], by_form["characters"])


def test_a_jpeg_of_another_size_is_resized_and_read(demo, captcha_pngs):
    image = Image.open(io.BytesIO(next(iter(captcha_pngs.values())))).convert("RGB")
    buffer = io.BytesIO()
    image.resize((400, 100)).save(buffer, format="JPEG")
    response = post_file(demo, "big.jpg", buffer.getvalue(), "image/jpeg")
    assert response.status_code == 200, response.text
    assert len(response.json()["characters"]) == len(response.json()["text"])


@pytest.mark.parametrize(
    ("name", "data", "status", "message"),
    [
        ("notes.txt", b"these are notes, not a picture", 400, "notes.txt: not a readable image"),
        ("empty.png", b"", 400, "empty.png: empty file"),
        ("cut.png", None, 400, "cut.png: not a readable image"),
        ("huge.png", b"\x89PNG" + b"0" * (MAX_IMAGE_BYTES + 10), 413, f"limit {MAX_IMAGE_BYTES}"),
        ("giant.png", b"0" * (MAX_BODY_BYTES + 10), 413, f"limit {MAX_BODY_BYTES}"),
    ],
)
def test_bad_files_get_a_4xx_json_message(demo, captcha_pngs, name, data, status, message):
    if data is None:  # a real PNG cut in half
        png = next(iter(captcha_pngs.values()))
        data = png[: len(png) // 2]
    response = post_file(demo, name, data)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_bad_requests_name_what_is_wrong(demo):
    cases = [
        (dict(data=b"hello", headers={"Content-Type": "text/plain"}), 415, "'text/plain'"),
        (dict(json={"image": "!!not base64!!"}), 400, "field 'image': not valid base64"),
        (dict(json={"picture": "abc"}), 400, '{"image":'),
        (
            dict(data=b"{not json", headers={"Content-Type": "application/json"}),
            400,
            "not valid JSON",
        ),
        (dict(files={"other": ("a.png", b"x")}), 400, "field 'file'"),
    ]
    for kwargs, status, message in cases:
        response = requests.post(f"{demo}/api/read", timeout=60, **kwargs)
        assert response.status_code == status, kwargs
        assert message in response.json()["error"], response.json()


def test_server_keeps_answering_after_bad_requests(demo, captcha_pngs):
    for _ in range(3):
        assert post_file(demo, "bad.png", b"nope").status_code == 400
    label, data = next(iter(captcha_pngs.items()))
    assert post_file(demo, f"{label}.png", data).status_code == 200


def test_page_model_and_gallery(demo, gallery_dir):
    page = requests.get(demo, timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="file"' in page.text and "/api/read" in page.text

    assert requests.get(f"{demo}/api/model", timeout=30).json()["kind"] == "local file"
    listing = requests.get(f"{demo}/api/gallery", timeout=30).json()
    assert sorted(item["name"] for item in listing) == sorted(p.name for p in gallery_dir.iterdir())
    first = listing[0]
    image = requests.get(demo + first["url"], timeout=30)
    assert image.content == (gallery_dir / first["name"]).read_bytes()
    missing = requests.get(f"{demo}/gallery/missing.png", timeout=30)
    assert missing.status_code == 404 and "no gallery image" in missing.json()["error"]
    outside = requests.get(f"{demo}/gallery/..%2F..%2Fetc%2Fpasswd", timeout=30)
    assert outside.status_code == 404 and "Not Found" in outside.json()["error"]


def test_default_gallery_is_the_test_split(tmp_path, monkeypatch, captcha_pngs):
    monkeypatch.chdir(tmp_path)
    images = tmp_path / "data" / "raw" / "images"
    images.mkdir(parents=True)
    labels = list(captcha_pngs)[:3]
    for label in labels:
        (images / f"{label}.png").write_bytes(captcha_pngs[label])
    (tmp_path / "data" / "splits").mkdir()
    test = pd.DataFrame({"file": [f"{k}.png" for k in labels[1:]], "label": labels[1:]})
    test.to_csv(tmp_path / "data" / "splits" / "test.csv", index=False)
    assert list(gallery_images()) == [f"{k}.png" for k in labels[1:]]


def test_a_chunked_upload_is_cut_off_at_the_limit(demo):
    # No Content-Length: the server counts while it reads.
    def chunks():
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"0" * 65536

    response = requests.post(
        f"{demo}/api/read",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert f"over the limit of {MAX_BODY_BYTES} bytes" in response.json()["error"]


def test_an_image_of_too_many_pixels_is_refused_before_it_is_decoded(demo):
    from captcha_ocr.serving.uploads import MAX_IMAGE_PIXELS

    buffer = io.BytesIO()  # 46 KB of PNG, 40 MB once decoded to RGBA
    Image.new("RGBA", (3160, 3160), (0, 0, 0, 0)).save(buffer, format="PNG")
    response = post_file(demo, "wide.png", buffer.getvalue())
    assert response.status_code == 413
    message = f"wide.png: image of 3160x3160 pixels, limit {MAX_IMAGE_PIXELS} pixels"
    assert message in response.json()["error"]


def test_every_response_forbids_sniffing_and_carries_a_policy(demo, captcha_pngs, gallery_dir):
    label, data = next(iter(captcha_pngs.items()))
    responses = {
        "page": requests.get(demo, timeout=30),
        "model": requests.get(f"{demo}/api/model", timeout=30),
        "gallery image": requests.get(f"{demo}/gallery/{label}.png", timeout=30),
        "read": post_file(demo, "a.png", data),
        "refused": post_file(demo, "a.png", b"nope"),
        "not found": requests.get(f"{demo}/nowhere", timeout=30),
    }
    for what, response in responses.items():
        assert response.headers.get("x-content-type-options") == "nosniff", what
        policy = response.headers.get("content-security-policy", "")
        assert "default-src 'none'" in policy and "script-src 'sha256-" in policy, what


def stalled_request(url: str) -> socket.socket:
    """A POST that sends its headers and 10 of the 1000 bytes it announces, then waits."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(
        b"POST /api/read HTTP/1.1\r\nHost: demo\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"image": '
    )
    return sock


@pytest.fixture
def small_demo(reader_path, gallery_dir):
    """The demo with room for one request at a time, and a body deadline of 2 s."""
    app = create_app(
        Predictor(str(reader_path)), gallery_images(gallery_dir), max_admitted=1, body_timeout=2
    )
    with serving(app) as url:
        yield url


def whole_response(sock: socket.socket) -> str:
    """Status, headers and body: the server may send them in separate packets."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        if length and len(body) >= int(length.group(1)):
            break
    return data.decode()


def test_a_body_that_never_arrives_is_cut_off(small_demo):
    with stalled_request(small_demo) as sock:
        answer = whole_response(sock)
    assert answer.startswith("HTTP/1.1 408")
    assert "request body not received within 2 s" in answer


def test_a_full_server_says_busy_and_frees_the_place_when_a_client_leaves(small_demo, captcha_pngs):
    data = next(iter(captcha_pngs.values()))
    with stalled_request(small_demo):
        # The stalled request takes the only place as soon as the server sees it.
        response = wait_for(lambda: post_file(small_demo, "a.png", data), status=503)
        assert response.headers["retry-after"] == "1"
        assert "busy: 1 requests in hand, limit 1" in response.json()["error"]
    # It left: its place is free again.
    assert wait_for(lambda: post_file(small_demo, "a.png", data), status=200).json()["text"]


def wait_for(post, status: int) -> requests.Response:
    deadline = time.monotonic() + 30
    while (response := post()).status_code != status and time.monotonic() < deadline:
        time.sleep(0.05)
    assert response.status_code == status, response.text
    return response
