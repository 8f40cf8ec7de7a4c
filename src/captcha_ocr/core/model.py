"""The captcha reader: CNN features, context across the columns, CTC.

Architecture follows the Keras "OCR model for reading Captchas" example, with
its sizes in params.yaml. The example gives each column its context with two
bidirectional LSTMs; ``sequence: conv`` uses Conv1D layers instead, which
leave the CTC loss plateau sooner and run every column at once (the project's
default; the figures are in bench/README.md). Two models come out of it:

- the *training model*: image in, per-column logits out, trained with CTC loss
  (``keras.losses.CTC`` expects logits, padding = the blank index 0);
- the *reader*: the training model plus softmax and greedy CTC decoding, image
  in, character codes and a confidence out. It carries its vocabulary in its
  config, so a saved reader is all you need to turn images into text.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from captcha_ocr.config import TrainParams
from captcha_ocr.core.ctc import greedy_decode
from captcha_ocr.core.images import with_channels

# ModelLoadError and Reading are re-exported: callers have always imported them from here.
from captcha_ocr.core.readings import ModelLoadError as ModelLoadError
from captcha_ocr.core.readings import Reading as Reading
from captcha_ocr.core.readings import readings
from captcha_ocr.core.vocabulary import BLANK_INDEX, Vocabulary

PACKAGE = "captcha_ocr"


def build_training_model(
    params: TrainParams, height: int, width: int, num_classes: int, channels: int = 1
) -> keras.Model:
    image = keras.Input(shape=(height, width, channels), name="image")
    # Raw 0-255 pixels in, so callers never have to know the scaling.
    x = layers.Rescaling(1.0 / 255, name="rescale")(image)
    strides = params.conv_strides or [(1, 1)] * len(params.conv_filters)
    blocks = zip(params.conv_filters, strides, params.conv_pool, strict=True)
    for i, (filters, stride, pool) in enumerate(blocks, start=1):
        # The first block sees the image's one to three channels: little to separate there.
        if params.conv_separable and i > 1:
            conv = layers.SeparableConv2D(
                filters,
                3,
                strides=stride,
                padding="same",
                use_bias=not params.batch_norm,
                name=f"conv{i}",
            )
        else:
            conv = layers.Conv2D(
                filters,
                3,
                strides=stride,
                padding="same",
                kernel_initializer="he_normal",
                use_bias=not params.batch_norm,
                name=f"conv{i}",
            )
        x = conv(x)
        if params.batch_norm:
            x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.Activation("relu", name=f"relu{i}")(x)
        if tuple(pool) != (1, 1):
            x = layers.MaxPooling2D(tuple(pool), name=f"pool{i}")(x)
    # Columns are time steps: put width first so the sequence layers read left to right.
    x = layers.Permute((2, 1, 3), name="width_first")(x)
    steps, rows, channels = x.shape[1], x.shape[2], x.shape[3]
    x = layers.Reshape((steps, rows * channels), name="columns")(x)
    x = layers.Dense(params.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(params.dropout, name="dropout")(x)
    x = read_columns(x, params)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(image, logits, name="captcha_ocr")


def read_columns(x, params: TrainParams):
    """Give each column the context of its neighbours, so it can tell which character it shows.

    Conv1D layers see ``sequence_kernel`` columns each and run all columns at
    once; a bidirectional RNN sees the whole row but steps through it column by
    column.
    """
    if params.sequence == "conv":
        for i, channels in enumerate(params.sequence_units, start=1):
            x = layers.Conv1D(
                channels,
                params.sequence_kernel,
                dilation_rate=2 ** (i - 1) if params.sequence_dilate else 1,
                padding="same",
                kernel_initializer="he_normal",
                use_bias=not params.batch_norm,
                name=f"seqconv{i}",
            )(x)
            if params.batch_norm:
                x = layers.BatchNormalization(name=f"seqbn{i}")(x)
            x = layers.Activation("relu", name=f"seqrelu{i}")(x)
            x = layers.Dropout(params.sequence_dropout, name=f"seqdropout{i}")(x)
        return x
    rnn = {"lstm": layers.LSTM, "gru": layers.GRU}[params.sequence]
    for i, units in enumerate(params.sequence_units, start=1):
        x = layers.Bidirectional(
            rnn(units, return_sequences=True, dropout=params.sequence_dropout),
            name=f"bi{params.sequence}{i}",
        )(x)
    return x


def predict_texts(
    model: keras.Model, images: np.ndarray, vocabulary: Vocabulary, batch_size: int = 256
) -> tuple[list[str], np.ndarray]:
    """Read a batch of (N, H, W) or (N, H, W, C) uint8 images with the training model."""
    logits = model.predict(with_channels(images), batch_size=batch_size, verbose=0)
    codes, confidence = greedy_decode(np.asarray(ops.softmax(logits, axis=-1)))
    return [vocabulary.decode(c) for c in codes], confidence


@keras.saving.register_keras_serializable(package=PACKAGE)
class CTCGreedyDecoder(layers.Layer):
    """Logits to character codes (padded with -1) and best-path probability.

    ``label_lengths`` (shortest, longest) of the labels it was trained on is
    carried for the record (readers saved before it have none).
    """

    def __init__(self, characters: str, label_lengths: list[int] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.characters = Vocabulary(characters).characters
        self.label_lengths = list(label_lengths) if label_lengths else None

    def call(self, logits):
        log_probs = ops.log_softmax(logits, axis=-1)
        batch, steps = ops.shape(log_probs)[0], ops.shape(log_probs)[1]
        lengths = ops.full((batch,), steps, dtype="int32")
        codes, neg_log_prob = ops.ctc_decode(
            log_probs, lengths, strategy="greedy", mask_index=BLANK_INDEX
        )
        confidence = ops.exp(-ops.reshape(neg_log_prob, (-1,)))
        return codes[0], confidence

    def compute_output_spec(self, logits):
        batch, steps = logits.shape[0], logits.shape[1]
        return (
            keras.KerasTensor((batch, steps), dtype="int32"),
            keras.KerasTensor((batch,), dtype=self.compute_dtype),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "characters": self.characters,
            "label_lengths": self.label_lengths,
        }


def build_reader(
    training_model: keras.Model,
    vocabulary: Vocabulary,
    label_lengths: tuple[int, int] | None = None,
) -> keras.Model:
    """Image in, (codes, confidence) out; no label input, decoding included.

    The reader records what it reads: the image size and channels in its
    input, the characters and label lengths in its decoder.
    """
    decoder = CTCGreedyDecoder(
        vocabulary.characters,
        list(label_lengths) if label_lengths else None,
        name="ctc_decode",
    )
    codes, confidence = decoder(training_model.output)
    return keras.Model(
        training_model.input, {"codes": codes, "confidence": confidence}, name="reader"
    )


def export_saved_model(reader: keras.Model, path) -> None:
    """Write a TensorFlow SavedModel for TF Serving: pixels in, text out.

    Signature ``serving_default``: ``image`` float32 (N, H, W, C), raw 0-255
    pixels as ``images.decode_image`` gives them; returns ``text`` (string)
    and ``confidence`` per image. The vocabulary lookup happens in the graph.
    """
    import tensorflow as tf

    characters = reader.get_layer("ctc_decode").characters
    _, height, width, channels = reader.input.shape
    archive = keras.export.ExportArchive()
    archive.track(reader)

    def serve(image):
        out = reader(image, training=False)
        # Index 0 (the blank) and the -1 padding both map to the empty string.
        table = tf.constant([""] + list(characters))
        codes = tf.maximum(out["codes"], 0)
        text = tf.strings.reduce_join(tf.gather(table, codes), axis=-1)
        return {"text": text, "confidence": out["confidence"]}

    archive.add_endpoint(
        "serving_default",
        serve,
        input_signature=[tf.TensorSpec((None, height, width, channels), tf.float32, name="image")],
    )
    archive.write_out(str(path), verbose=False)


class CaptchaReader:
    """A saved reader model, from images to text."""

    def __init__(self, model: keras.Model):
        self.model = model
        decoder = model.get_layer("ctc_decode")
        self.vocabulary = Vocabulary(decoder.characters)
        self.label_lengths = getattr(decoder, "label_lengths", None)
        _, self.height, self.width, self.channels = model.input.shape
        # One traced graph for every batch size: ``model.predict`` pays a large
        # per-call overhead and eager calls run the LSTM step by step in Python.
        self._infer = self._trace(model)
        self._infer_logits = None  # traced on first use of read_characters

    def _trace(self, model: keras.Model):
        import tensorflow as tf

        return tf.function(
            lambda x: model(x, training=False),
            input_signature=[
                tf.TensorSpec((None, self.height, self.width, self.channels), tf.float32)
            ],
        )

    @classmethod
    def load(cls, path) -> CaptchaReader:
        """A saved reader; a file that is not one, or carries code, is refused by name."""
        # Keras calls anything that is not a zip "File not found"; say what it is not.
        if Path(path).is_file() and not zipfile.is_zipfile(path):
            raise ModelLoadError(f"{path}: is not a Keras archive (a .keras file is a zip)")
        try:
            model = keras.saving.load_model(path, safe_mode=True)
        except (ValueError, OSError, KeyError, TypeError) as err:
            # safe_mode refuses Lambda layers and other pickled code with a ValueError.
            raise ModelLoadError(f"{path}: not loaded as a captcha reader: {err}") from None
        try:
            return cls(model)
        except ValueError as err:  # no ctc_decode layer: a network, not a reader
            raise ModelLoadError(f"{path}: not a captcha reader ({err})") from None

    def read(self, images: np.ndarray, batch_size: int = 256) -> tuple[list[str], np.ndarray]:
        """(N, H, W) or (N, H, W, C) uint8 images to texts and confidences."""
        codes, confidence = [], []
        for start in range(0, len(images), batch_size):
            batch = with_channels(images[start : start + batch_size]).astype("float32")
            out = self._infer(batch)
            codes.extend(out["codes"].numpy().tolist())
            confidence.append(out["confidence"].numpy())
        texts = [self.vocabulary.decode(row) for row in codes]
        return texts, np.concatenate(confidence) if confidence else np.zeros(0)

    def read_characters(self, images: np.ndarray) -> list[Reading]:
        """Like ``read``, plus each character's confidence (``ctc.character_confidences``)."""
        infer = self._infer_logits
        if infer is None:
            decoder = self.model.get_layer("ctc_decode")
            detailed = keras.Model(self.model.input, {"logits": decoder.input, **self.model.output})
            infer = self._infer_logits = self._trace(detailed)
        out = infer(with_channels(images).astype("float32"))
        texts = [self.vocabulary.decode(row) for row in out["codes"].numpy().tolist()]
        return readings(texts, out["confidence"].numpy(), out["logits"].numpy())
