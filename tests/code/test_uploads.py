"""What a request's images declare, read before any is decoded."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from captcha_ocr.serving.uploads import PNG_BASE64, declared_pixels


def encoded(size: tuple[int, int], fmt: str = "PNG", mode: str = "L") -> str:
    buffer = io.BytesIO()
    Image.new(mode, size, 200).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("size", [(200, 50), (1, 2_000_000), (4096, 1), (70_000, 3)])
def test_a_png_declares_its_pixels_in_its_first_characters(size):
    value = encoded(size)
    assert value.startswith(PNG_BASE64)
    assert declared_pixels([value]) == size[0] * size[1]
    # Cut after its header: the size is read from the header alone.
    assert declared_pixels([value[:32]]) == size[0] * size[1]


def test_other_formats_are_read_from_their_headers_and_summed():
    values = [encoded((300, 100), "JPEG"), encoded((64, 32), "GIF", "P"), encoded((200, 50))]
    assert declared_pixels(values) == 300 * 100 + 64 * 32 + 200 * 50


@pytest.mark.parametrize("value", ["@@@ not base64", "", None, 7, base64.b64encode(b"a").decode()])
def test_what_is_no_image_declares_nothing(value):
    assert declared_pixels([value, encoded((200, 50))]) == 200 * 50
