"""The reader as an MLflow pyfunc model: base64 images in, text out.

Input: a DataFrame with a column ``image`` of base64-encoded PNG or JPEG bytes,
under the limits every entry point shares (``serving.uploads``).
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

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from captcha_ocr.serving.uploads import INPUT_COLUMN, MAX_BATCH, BadImages, decode_values


def decode_batch(frame: pd.DataFrame, height: int, width: int, channels: int = 1) -> np.ndarray:
    """Base64 column to an (N, height, width[, channels]) uint8 batch; errors name the row."""
    if INPUT_COLUMN not in frame.columns:
        raise bad_request(f"expected a column {INPUT_COLUMN!r} of base64 images")
    try:
        return decode_values(list(frame[INPUT_COLUMN]), height, width, channels)
    except BadImages as err:
        raise bad_request(str(err)) from None


def bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


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
