"""The reader as an MLflow pyfunc model: base64 images in, text out.

Input: a DataFrame with a column ``image`` of base64-encoded PNG or JPEG bytes,
up to 2 MiB and 2048x2048 pixels each (images are resized to what the network
was trained on). The same limits hold in ``captcha-ocr predict`` and the demo.
Output: a DataFrame with ``text`` and ``confidence`` per image.

Bad input raises an MlflowException with INVALID_PARAMETER_VALUE, which the
MLflow scoring server answers with HTTP 400 and the message, and goes on serving.

The model reads with the exported network, not with Keras: the int8 network
under OpenVINO when the export kept it, else the float one under onnxruntime
(the model's ``runtime`` config says which; ``registry.register_reader``
chooses). A request of N images is one network call. Nothing here imports
TensorFlow or Keras, so the served environment installs neither.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from captcha_ocr.core.images import ImageError, ImageTooLarge, decode_image

INPUT_COLUMN = "image"
MAX_BATCH = 256
MAX_IMAGE_BYTES = 2 * 1024 * 1024
# Decoding costs memory by pixels, not bytes: a 46 KB PNG can hold 3160x3160
# pixels, 40 MB as RGBA and several copies of that while it is converted.
# Captchas are 200x50; a phone photo of one, scaled to 2048 wide, still fits.
MAX_IMAGE_PIXELS = 2048 * 2048


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


def bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def decode_batch(frame: pd.DataFrame, height: int, width: int, channels: int = 1) -> np.ndarray:
    """Base64 column to an (N, height, width[, channels]) uint8 batch; errors name the row."""
    if INPUT_COLUMN not in frame.columns:
        raise bad_request(f"expected a column {INPUT_COLUMN!r} of base64 images")
    return decode_values(list(frame[INPUT_COLUMN]), height, width, channels)


def decode_values(values: list, height: int, width: int, channels: int = 1) -> np.ndarray:
    """Base64 images to an (N, height, width[, channels]) uint8 batch; errors name the row."""
    if len(values) == 0:
        raise bad_request("empty batch: send at least one image")
    if len(values) > MAX_BATCH:
        raise bad_request(f"batch of {len(values)} images, limit {MAX_BATCH}")
    images = []
    for row, value in enumerate(values):
        if not isinstance(value, str | bytes) or not value:
            raise bad_request(f"row {row}: empty or missing image")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"row {row}: not valid base64") from None
        try:
            images.append(decode_upload(data, height, width, channels))
        except ImageError as err:
            raise bad_request(f"row {row}: {err}") from None
    return np.stack(images)


class CaptchaReaderModel(PythonModel):
    """Opens the exported network and its vocabulary from the model's artifacts."""

    def load_context(self, context):
        from captcha_ocr.core.runtimes import open_network
        from captcha_ocr.core.vocabulary import Vocabulary

        runtime = (context.model_config or {}).get("runtime", "onnxruntime")
        vocabulary = Vocabulary.load(context.artifacts["vocabulary"])
        self.reader = open_network(context.artifacts["network"], vocabulary, runtime, MAX_BATCH)
        # The first call of each batch size compiles or allocates; pay for one image now.
        reader = self.reader
        colour = (reader.channels,) if reader.channels > 1 else ()
        reader.read(np.full((1, reader.height, reader.width, *colour), 255, np.uint8))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:  # noqa: ARG002
        reader = self.reader
        images = decode_batch(model_input, reader.height, reader.width, reader.channels)
        texts, confidence = self.reader.read(images)
        return pd.DataFrame({"text": texts, "confidence": confidence.astype("float64")})


def encode_image(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
