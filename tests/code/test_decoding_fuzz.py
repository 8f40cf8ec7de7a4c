"""Fuzz the image decoding paths with Hypothesis: any bytes, mangled real
captchas and odd but valid images either decode to the right shape or give
the one documented error; nothing else escapes, nothing hangs.

Bounded and repeatable: a fixed number of examples, derandomized, no example
database written into the checkout, and a per-example deadline as the hang guard.
"""

from __future__ import annotations

import base64
import io
import struct
import tempfile
import zlib
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from mlflow.exceptions import MlflowException
from PIL import Image

from captcha_ocr.core.images import MAX_PIXELS, ImageError, decode_image
from captcha_ocr.serving.pyfunc import decode_batch

# Hypothesis caches under ./.hypothesis by default, as soon as a test module is
# collected; tests never write into the checkout.
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="hypothesis-"))

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=3),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def check_decodes_or_refuses(data: bytes) -> None:
    try:
        image = decode_image(data, 50, 200)
    except ImageError as err:
        assert str(err)  # the reason is what the data report and the 400 show
        return
    assert image.shape == (50, 200) and image.dtype == np.uint8


@st.composite
def mangled(draw, pngs: list[bytes]) -> bytes:
    """A real captcha PNG, truncated, with bytes overwritten, or with junk spliced in."""
    data = bytearray(draw(st.sampled_from(pngs)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["truncate", "overwrite", "insert"]))
        if how == "truncate":
            del data[at:]
        elif how == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at : at + len(chunk)] = chunk
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        if not data:
            break
    return bytes(data)


@st.composite
def odd_images(draw) -> bytes:
    """Valid images in modes, sizes and formats the captchas never use."""
    mode = draw(st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16", "F", "CMYK"]))
    size = (draw(st.integers(1, 400)), draw(st.integers(1, 120)))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]))
    pixels = np.frombuffer(draw(st.binary(min_size=16, max_size=16)), dtype=np.uint8)
    image = Image.new(mode, size, int(pixels[0]))
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):
        return b"not saveable in that format"  # still a fine input to decode
    return buffer.getvalue()


@FUZZ
@given(data=st.binary(max_size=4096))
def test_any_bytes_decode_or_give_an_image_error(data):
    check_decodes_or_refuses(data)


@pytest.fixture(scope="module")
def pngs(captcha_pngs) -> list[bytes]:
    return list(captcha_pngs.values())[:4]


@FUZZ
@given(data=st.data())
def test_mangled_captchas_decode_or_give_an_image_error(pngs, data):
    check_decodes_or_refuses(data.draw(mangled(pngs)))


@FUZZ
@given(data=odd_images())
def test_odd_valid_images_decode_or_give_an_image_error(data):
    check_decodes_or_refuses(data)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a canvas of width x height and holds almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_huge_canvas_is_refused_before_decoding():
    # 12 million pixels: under Pillow's own bomb limit, over ours.
    with pytest.raises(ImageError, match=f"4000x3000 pixels, limit {MAX_PIXELS}"):
        decode_image(png_header_only(4000, 3000), 50, 200)


cells = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.none(),
    st.integers(),
    st.floats(),
    st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode()),
)


@FUZZ
@given(values=st.lists(cells, max_size=4), extra=st.booleans())
def test_decode_batch_answers_400_or_a_batch(values, extra):
    frame = pd.DataFrame({"image": pd.Series(values, dtype=object)})
    if extra:
        frame["other"] = 1
    try:
        batch = decode_batch(frame, 50, 200)
    except MlflowException as err:
        assert err.get_http_status_code() == 400 and err.message
        return
    assert batch.shape == (len(values), 50, 200) and batch.dtype == np.uint8


@FUZZ
@given(data=st.data())
def test_decode_batch_of_mangled_captchas(pngs, data):
    values = [base64.b64encode(data.draw(mangled(pngs))).decode() for _ in range(2)]
    try:
        batch = decode_batch(pd.DataFrame({"image": values}), 50, 200)
    except MlflowException as err:
        assert err.get_http_status_code() == 400 and "row " in err.message
        return
    assert batch.shape == (2, 50, 200)
