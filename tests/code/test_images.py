import io

import numpy as np
import pytest
from PIL import Image

from captcha_ocr.core.images import ImageError, decode_image


def png_bytes(size=(200, 50), mode="RGBA", color=(10, 20, 30, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_real_captcha_decodes_to_uint8_grayscale(captcha_pngs):
    image = decode_image(next(iter(captcha_pngs.values())), height=50, width=200)
    assert image.shape == (50, 200) and image.dtype == np.uint8
    assert 0 <= image.min() < image.max() <= 255


def test_transparent_pixels_become_white():
    image = decode_image(png_bytes(color=(0, 0, 0, 0)), 50, 200)
    assert (image == 255).all()


@pytest.mark.parametrize(
    ("mode", "transparency"),
    [
        ("RGBA", "opaque"),
        ("RGBA", "alpha"),
        ("LA", "alpha"),
        ("RGB", None),
        ("RGB", "tRNS"),
        ("L", None),
        ("L", "tRNS"),
        ("1", None),
        ("P", None),
        ("P", "tRNS"),
        ("CMYK", None),
        ("I;16", None),
        ("I;16", "tRNS"),
    ],
)
def test_grey_is_the_luma_of_the_colour_image_on_white(mode, transparency):
    """Grey takes a shorter road for some modes; it must land on the same pixels.
    tRNS: a PNG whose one colour (or palette entry) is transparent."""
    rng = np.random.default_rng(7)
    colour = rng.integers(0, 256, (50, 200, 3), np.uint8)
    alpha = rng.integers(0, 256, (50, 200)) if transparency == "alpha" else np.full((50, 200), 255)
    image = Image.fromarray(np.dstack([colour, alpha]).astype(np.uint8), "RGBA")
    if mode == "I;16":  # 16-bit grey is scaled to 8 bits, not clipped
        image = Image.fromarray(colour[..., 0].astype(np.uint16) * 257)
    else:
        image = image.convert(mode)
    options = {}
    if transparency == "tRNS":
        options["transparency"] = 3 if mode == "P" else image.getpixel((0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if mode == "CMYK" else "PNG", **options)
    rgb = decode_image(buffer.getvalue(), 50, 200, channels=3)
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(decode_image(buffer.getvalue(), 50, 200), expected)


def test_other_size_is_resized_or_refused():
    data = png_bytes(size=(100, 30))
    assert decode_image(data, 50, 200, resize=True).shape == (50, 200)
    with pytest.raises(ImageError, match="size 100x30, expected 200x50"):
        decode_image(data, 50, 200, resize=False)


def test_jpeg_is_accepted():
    buffer = io.BytesIO()
    Image.new("RGB", (200, 50), (200, 200, 200)).save(buffer, format="JPEG")
    assert decode_image(buffer.getvalue(), 50, 200).shape == (50, 200)


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty"), (b"not an image at all", "not a readable image")],
)
def test_bad_bytes_give_a_reason(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data, 50, 200)


def test_truncated_png_is_refused(captcha_pngs):
    data = next(iter(captcha_pngs.values()))
    with pytest.raises(ImageError):
        decode_image(data[: len(data) // 2], 50, 200)
