"""Images as every entry point receives them: base64 PNG or JPEG, within shared limits.

Up to ``MAX_BATCH`` images a request, ``MAX_IMAGE_BYTES`` and
``MAX_IMAGE_PIXELS`` an image (and ``MAX_REQUEST_BYTES`` a request body where
a server parses it whole, as kserve's does); each is resized to what the network was
trained on. The MLflow pyfunc, the KServe predictor, ``captcha-ocr predict``
and the demo all decode here, so they refuse the same inputs with the same
words. Nothing here imports MLflow: the KServe image does not install it.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from captcha_ocr.core.images import ImageError, ImageTooLarge, decode_image, image_size

INPUT_COLUMN = "image"
MAX_BATCH = 256
MAX_IMAGE_BYTES = 2 * 1024 * 1024
# Decoding costs memory by pixels, not bytes: a 46 KB PNG can hold 3160x3160
# pixels, 40 MB as RGBA and several copies of that while it is converted.
# Captchas are 200x50; a phone photo of one, scaled to 2048 wide, still fits.
MAX_IMAGE_PIXELS = 2048 * 2048
# A whole request, as the KServe predictor's server receives it (JSON, base64):
# MAX_BATCH captchas of 10 KB are under 4 MB; a parsed body costs several times its size.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUg"  # the signature, IHDR's length and name, in base64


class BadImages(ValueError):
    """A request's images cannot be read; the message names the row and why."""


def decode_upload(data: bytes, height: int, width: int, channels: int = 1) -> np.ndarray:
    """One image as the reader eats it, within the limits every entry point shares.

    ImageTooLarge over the byte or pixel limit (checked before decoding),
    ImageError if it is no image.
    """
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"image of {len(data)} bytes, limit {MAX_IMAGE_BYTES}")
    return decode_image(
        data, height, width, resize=True, max_pixels=MAX_IMAGE_PIXELS, channels=channels
    )


def decode_values(values: list, height: int, width: int, channels: int = 1) -> np.ndarray:
    """Base64 images to an (N, height, width[, channels]) uint8 batch; BadImages names the row."""
    if len(values) == 0:
        raise BadImages("empty batch: send at least one image")
    if len(values) > MAX_BATCH:
        raise BadImages(f"batch of {len(values)} images, limit {MAX_BATCH}")
    images = []
    for row, value in enumerate(values):
        if not isinstance(value, str | bytes) or not value:
            raise BadImages(f"row {row}: empty or missing image")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BadImages(f"row {row}: not valid base64") from None
        try:
            images.append(decode_upload(data, height, width, channels))
        except ImageError as err:
            raise BadImages(f"row {row}: {err}") from None
    return np.stack(images)


def declared_pixels(values: list) -> int:
    """The pixels a request's images say they hold, from their headers alone (what
    cannot be read counts 0: ``decode_values`` refuses it). A PNG's size is in its
    first 24 bytes, 32 base64 characters; any other image's header is opened."""
    total = 0
    for value in values:
        try:
            if isinstance(value, str) and value.startswith(PNG_BASE64):
                head = binascii.a2b_base64(value[:32])
                total += int.from_bytes(head[16:20], "big") * int.from_bytes(head[20:24], "big")
            elif isinstance(value, str | bytes) and value:
                width, height = image_size(base64.b64decode(value, validate=True), 2**62)
                total += width * height
        except (ImageError, binascii.Error, ValueError):
            continue
    return total


def encode_image(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
