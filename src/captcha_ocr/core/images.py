"""Reading captcha images into the arrays the model eats.

The model's input is height x width pixels with C channels (1: grey, 3: RGB),
values 0-255 (scaling to 0-1 happens inside the model, so every caller feeds
raw pixels). A grey image is an (H, W) array, a colour one (H, W, 3); batches
add the image axis in front, and ``with_channels`` gives the network its
(N, H, W, C). An image of another size is scaled to fit, keeping its aspect
ratio, and the rest is padded with its own border colour: text is never stretched.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

# A small file can claim a huge canvas (a decompression bomb); refuse it before
# decoding. Captchas are 200x50; this still admits a 4000x2500 photo.
MAX_PIXELS = 10_000_000
# The only formats Pillow may try. Any other plugin could be reached by a file's
# first bytes whatever its name: PostScript (EPS) would make Pillow run
# Ghostscript on the user's data. Not ours to run.
READ_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
FORMATS = "PNG, JPEG, BMP, GIF, TIFF or WebP"
# A pixel is coloured when its channels differ by more than this (JPEG noise
# on a grey image stays below it), and an image when more than a share of its
# pixels are.
COLOUR_SPREAD = 24
COLOUR_SHARE = 0.01


class ImageError(ValueError):
    """An image that cannot be used; the message says why."""


class ImageTooLarge(ImageError):
    """An image over a size limit, in bytes or pixels."""


def decode_image(
    data: bytes,
    height: int,
    width: int,
    resize: bool = True,
    max_pixels: int = MAX_PIXELS,
    channels: int = 1,
) -> np.ndarray:
    """Image bytes to uint8 pixels: (height, width) grey, or (height, width, 3) with channels=3.

    With ``resize=False`` an image of another size is refused instead of scaled.
    Transparent pixels are composited on white, which is what a browser shows.
    """
    pixels = decode_pixels(data, channels, max_pixels)
    if pixels.shape[:2] != (height, width):
        if not resize:
            found_h, found_w = pixels.shape[:2]
            raise ImageError(f"size {found_w}x{found_h}, expected {width}x{height}")
        pixels = fit(pixels, height, width)
    return pixels


def decode_pixels(data: bytes, channels: int = 1, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Image bytes at their own size: (H, W) uint8 for channels=1, (H, W, 3) for 3."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    image = open_image(data, max_pixels)
    if channels == 3:
        return to_rgb(image)
    if image.mode in ("RGB", "RGBA", "LA", "PA", "P", "L", "1"):
        # Pillow's RGBA to L is its RGB to L on the colour channels, and grey is its
        # own luma: one conversion, not three copies. Not for 16-bit or float grey,
        # which to_rgb scales where a conversion would clip it.
        return np.asarray(on_white(image).convert("L"), dtype=np.uint8)
    return np.asarray(Image.fromarray(to_rgb(image)).convert("L"), dtype=np.uint8)


def to_grayscale(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode any PIL-readable image bytes to 8-bit grayscale, or raise ImageError."""
    return Image.fromarray(decode_pixels(data, 1, max_pixels))


def image_size(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the header alone, without decoding a pixel."""
    return header(data, max_pixels).size


def header(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image, opened lazily: its size and mode are read, its pixels not yet."""
    if not data:
        raise ImageError("empty file")
    try:
        image = Image.open(io.BytesIO(data), formats=READ_FORMATS)
    except UnidentifiedImageError:
        raise ImageError(f"not a readable image: unknown format ({FORMATS} expected)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"not a readable image: {err}") from None
    if image.width * image.height > max_pixels:
        raise ImageTooLarge(
            f"image of {image.width}x{image.height} pixels, limit {max_pixels} pixels"
        )
    return image


def open_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode the bytes (the size checked before any pixel is), or raise ImageError."""
    image = header(data, max_pixels)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"not a readable image: {err}") from None
    return image


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any mode to (H, W, 3) uint8: transparency on white, 16-bit and float grey scaled."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        # Pillow clips these to 255 when converting; scale them instead.
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257
        elif image.mode == "F" and values.max(initial=0) <= 1:
            values = values * 255
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(on_white(image).convert("RGB"), dtype=np.uint8)


def on_white(image: Image.Image) -> Image.Image:
    """An image with transparency as RGBA composited on white (opaque: as it is);
    any other image unchanged."""
    if image.mode in ("RGBA", "LA", "PA", "P") or "transparency" in image.info:
        image = image if image.mode == "RGBA" else image.convert("RGBA")
        if image.getchannel("A").getextrema() != (255, 255):  # opaque needs no compositing
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
    return image


def fit(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to fit height x width keeping the aspect ratio; pad with the border colour.

    The image is centred; the padding is the median colour of its outermost
    pixels, which for a captcha is its background.
    """
    found_h, found_w = pixels.shape[:2]
    scale = min(height / found_h, width / found_w)
    new_h = min(height, max(1, round(found_h * scale)))
    new_w = min(width, max(1, round(found_w * scale)))
    scaled = np.asarray(
        Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.BILINEAR), dtype=np.uint8
    )
    out = np.empty((height, width, *pixels.shape[2:]), dtype=np.uint8)
    out[...] = border_colour(pixels)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top : top + new_h, left : left + new_w] = scaled
    return out


def border_colour(pixels: np.ndarray) -> np.ndarray:
    """The median of the outermost rows and columns, per channel."""
    edges = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.median(edges, axis=0).round().astype(np.uint8)


def is_colour(rgb: np.ndarray) -> bool:
    """Whether an (H, W, 3) image carries colour, not grey with compression noise."""
    spread = rgb.max(axis=-1).astype(np.int16) - rgb.min(axis=-1)
    return float((spread > COLOUR_SPREAD).mean()) > COLOUR_SHARE


def with_channels(images: np.ndarray) -> np.ndarray:
    """A batch as the network takes it: (N, H, W) grey gets its channel axis, (N, H, W, C) stays."""
    return images[..., None] if images.ndim == 3 else images


def channels_of(images: np.ndarray) -> int:
    """1 for an (N, H, W) batch, C for (N, H, W, C)."""
    return 1 if images.ndim == 3 else int(images.shape[-1])
