"""Reading captcha images into the arrays the model eats.

The model's input is a grayscale image, height x width, pixel values 0-255
(scaling to 0-1 happens inside the model, so every caller feeds raw pixels).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

# A small file can claim a huge canvas (a decompression bomb); refuse it before
# decoding. Captchas are 200x50; this still admits a 4000x2500 photo.
MAX_PIXELS = 10_000_000


class ImageError(ValueError):
    """An image that cannot be used; the message says why."""


class ImageTooLarge(ImageError):
    """An image over a size limit, in bytes or pixels."""


def decode_image(
    data: bytes, height: int, width: int, resize: bool = True, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """PNG/JPEG bytes to a uint8 array of shape (height, width).

    With ``resize=False`` an image of another size is refused instead of scaled.
    Transparent pixels are composited on white, which is what a browser shows.
    """
    gray = to_grayscale(data, max_pixels)
    if gray.size != (width, height):
        if not resize:
            raise ImageError(f"size {gray.size[0]}x{gray.size[1]}, expected {width}x{height}")
        gray = gray.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


def to_grayscale(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode any PIL-readable image bytes to 8-bit grayscale, or raise ImageError.

    The size is read from the header and checked before any pixel is decoded.
    """
    if not data:
        raise ImageError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > max_pixels:
                raise ImageTooLarge(
                    f"image of {image.width}x{image.height} pixels, limit {max_pixels} pixels"
                )
            image.load()
            if image.mode in ("RGBA", "LA", "P"):
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                return Image.alpha_composite(background, image.convert("RGBA")).convert("L")
            return image.convert("L")
    except UnidentifiedImageError:
        raise ImageError("not a readable image: unknown format (PNG or JPEG expected)") from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"not a readable image: {err}") from None
