"""Model behaviour: shapes, decoding inside the reader, saving, learning."""

import keras
import numpy as np
import pytest

from bench.reference import REFERENCE_PARAMS
from captcha_ocr.config import TrainParams, load_params
from captcha_ocr.core.ctc import greedy_decode
from captcha_ocr.core.images import decode_image
from captcha_ocr.core.model import (
    CaptchaReader,
    CTCGreedyDecoder,
    build_reader,
    build_training_model,
    predict_texts,
    read_columns,
)
from captcha_ocr.core.vocabulary import Vocabulary
from tests.helpers import TINY_TRAIN

TINY = TrainParams(**TINY_TRAIN)
VOCABULARY = Vocabulary("2345678bcdefgmnpwxy")


def test_time_steps_follow_width_pooling():
    model = build_training_model(TINY, 50, 200, VOCABULARY.num_classes)
    assert model.output.shape[1:] == (50, VOCABULARY.num_classes)
    wide = TINY.model_copy(update={"conv_pool": [(2, 2), (2, 4)]})
    assert build_training_model(wide, 50, 200, 20).output.shape[1] == 25


def test_strided_convolution_replaces_the_pool_it_stands_for():
    strided = TINY.model_copy(
        update={"conv_strides": [(1, 1), (2, 2)], "conv_pool": [(2, 2), (1, 1)]}
    )
    model = build_training_model(strided, 50, 200, VOCABULARY.num_classes)
    # Same 50 time steps as conv + pool, from a quarter of conv2's outputs.
    assert model.output.shape[1] == 50
    assert model.get_layer("conv2").output.shape[1:3] == (13, 50)  # (height, width), "same" padding
    assert "pool2" not in [layer.name for layer in model.layers]
    # A height-only stride leaves the time axis to the pool.
    tall = strided.model_copy(
        update={"conv_strides": [(1, 1), (2, 1)], "conv_pool": [(2, 2), (1, 2)]}
    )
    tall_model = build_training_model(tall, 50, 200, 20)
    assert tall_model.get_layer("conv2").output.shape[1:3] == (13, 100)
    assert tall_model.output.shape[1] == 50


def test_reference_architecture_size():
    # The Keras example's model has 432,725 parameters with 21 output classes;
    # ours has one class fewer (no out-of-vocabulary slot): the last layer reads
    # 2 x 64 LSTM outputs, so 128 weights + 1 bias less.
    model = build_training_model(REFERENCE_PARAMS, 50, 200, 20)
    assert model.count_params() == 432_725 - 129


def test_default_model_is_smaller_than_the_reference():
    default = load_params("params.yaml").train
    model = build_training_model(default, 50, 200, 20)
    reference = build_training_model(REFERENCE_PARAMS, 50, 200, 20)
    assert model.count_params() < reference.count_params()


def test_separable_convolutions_start_after_the_first_block():
    model = build_training_model(TINY.model_copy(update={"conv_separable": True}), 50, 200, 20)
    assert type(model.get_layer("conv1")) is keras.layers.Conv2D
    assert type(model.get_layer("conv2")) is keras.layers.SeparableConv2D


CONV = TINY.model_copy(update={"sequence": "conv", "sequence_units": [8, 8], "sequence_kernel": 3})


@pytest.mark.parametrize(("dilate", "reach"), [(False, 2), (True, 3)])
def test_conv_sequence_sees_only_its_neighbouring_columns(dilate, reach):
    # Two layers of 3 taps reach 1 + 1 columns either side; dilated, 1 + 2.
    keras.utils.set_random_seed(3)
    columns = keras.Input((50, 16))
    params = CONV.model_copy(update={"sequence_dilate": dilate})
    model = keras.Model(columns, read_columns(columns, params))
    x = np.random.default_rng(3).normal(size=(1, 50, 16)).astype("float32")
    poked = x.copy()
    poked[0, 25] += 5.0
    difference = keras.ops.convert_to_numpy(model(poked) - model(x))[0]
    changed = np.flatnonzero(np.abs(difference).max(axis=-1) > 1e-6)
    assert changed.min() == 25 - reach and changed.max() == 25 + reach


def logits_for(paths: list[list[int]], classes: int) -> np.ndarray:
    logits = np.full((len(paths), len(paths[0]), classes), -5.0, dtype="float32")
    for b, path in enumerate(paths):
        logits[b, np.arange(len(path)), path] = 5.0
    return logits


def test_decoder_layer_keeps_doubled_letters():
    d = VOCABULARY.encode("d")[0]
    logits = logits_for([[d, 0, d, 0, 0], [d, d, d, 0, 0]], VOCABULARY.num_classes)
    codes, confidence = CTCGreedyDecoder(VOCABULARY.characters)(logits)
    codes = keras.ops.convert_to_numpy(codes)
    assert VOCABULARY.decode(codes[0]) == "dd"
    assert VOCABULARY.decode(codes[1]) == "d"
    assert np.all(keras.ops.convert_to_numpy(confidence) > 0.9)


def test_decoder_layer_agrees_with_numpy_decoding(rng):
    logits = rng.normal(size=(16, 50, VOCABULARY.num_classes)).astype("float32")
    codes, confidence = CTCGreedyDecoder(VOCABULARY.characters)(logits)
    expected, expected_confidence = greedy_decode(
        keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
    )
    got = [[c for c in row if c >= 0] for row in keras.ops.convert_to_numpy(codes).tolist()]
    assert got == expected
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(confidence), expected_confidence, rtol=1e-3
    )


def test_reader_saves_and_loads_in_safe_mode(tmp_path, captcha_pngs):
    model = build_training_model(TINY, 50, 200, VOCABULARY.num_classes)
    images = np.stack([decode_image(d, 50, 200) for d in captcha_pngs.values()])
    path = tmp_path / "reader.keras"
    build_reader(model, VOCABULARY).save(path)

    reader = CaptchaReader.load(path)  # safe_mode=True: no lambdas, no pickles
    texts, confidence = reader.read(images)
    expected, _ = predict_texts(model, images, VOCABULARY)
    assert texts == expected
    assert reader.vocabulary == VOCABULARY
    assert confidence.shape == (len(images),) and np.all((confidence >= 0) & (confidence <= 1))


@pytest.mark.slow
def test_training_lowers_ctc_loss_on_real_captchas(captcha_pngs):
    keras.utils.set_random_seed(0)
    labels = list(captcha_pngs)
    vocabulary = Vocabulary.from_labels(labels)
    images = np.stack([decode_image(captcha_pngs[k], 50, 200) for k in labels])[..., None]
    targets = np.array([vocabulary.encode(k) for k in labels])
    params = TINY.model_copy(update={"batch_norm": True})
    model = build_training_model(params, 50, 200, vocabulary.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.CTC())
    before = model.evaluate(images, targets, verbose=0)
    model.fit(images, targets, epochs=30, batch_size=len(images), verbose=0)
    after = model.evaluate(images, targets, verbose=0)
    assert after < 0.7 * before


def test_saved_model_gives_the_same_text_as_keras(tmp_path, captcha_pngs):
    import tensorflow as tf

    from captcha_ocr.core.model import export_saved_model

    keras.utils.set_random_seed(1)
    model = build_training_model(TINY, 50, 200, VOCABULARY.num_classes)
    reader = build_reader(model, VOCABULARY)
    images = np.stack([decode_image(d, 50, 200) for d in captcha_pngs.values()])
    export_saved_model(reader, tmp_path / "saved_model")

    serve = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    out = serve(image=tf.constant(images[..., None], tf.float32))
    texts = [t.decode() for t in out["text"].numpy()]
    expected, confidence = CaptchaReader(reader).read(images)
    assert any(expected)  # untrained weights read garbage, which is what we compare
    assert texts == expected
    np.testing.assert_allclose(out["confidence"].numpy(), confidence, rtol=1e-5)


@pytest.mark.parametrize(
    "params",
    [
        TINY,
        CONV.model_copy(
            update={
                "sequence_dilate": True,
                "conv_strides": [(1, 1), (2, 2)],
                "conv_pool": [(2, 2), (1, 1)],
            }
        ),
    ],
)
def test_onnx_gives_the_same_text_as_keras(tmp_path, captcha_pngs, params):
    from captcha_ocr.core.runtimes import OnnxReader, export_onnx

    keras.utils.set_random_seed(2)
    model = build_training_model(params, 50, 200, VOCABULARY.num_classes)
    images = np.stack([decode_image(d, 50, 200) for d in captcha_pngs.values()])
    export_onnx(model, tmp_path / "network.onnx")

    texts, confidence = OnnxReader(tmp_path / "network.onnx", VOCABULARY).read(images)
    expected, expected_confidence = CaptchaReader(build_reader(model, VOCABULARY)).read(images)
    assert any(expected)  # untrained weights read garbage, which is what we compare
    assert texts == expected
    np.testing.assert_allclose(confidence, expected_confidence, rtol=1e-3)


def test_read_characters_gives_the_reader_text_and_a_score_per_character(captcha_pngs):
    keras.utils.set_random_seed(3)
    model = build_training_model(TINY, 50, 200, VOCABULARY.num_classes)
    reader = CaptchaReader(build_reader(model, VOCABULARY))
    images = np.stack([decode_image(d, 50, 200) for d in captcha_pngs.values()])

    readings = reader.read_characters(images)
    texts, confidence = reader.read(images)
    assert any(texts)  # untrained weights read garbage, which is what we compare
    assert [r.text for r in readings] == texts
    np.testing.assert_allclose([r.confidence for r in readings], confidence, rtol=1e-5)
    for reading in readings:
        assert "".join(c for c, _ in reading.characters) == reading.text
        # The best path's probability multiplies every frame's peak, so it can
        # never exceed the score of any one character.
        assert all(
            reading.confidence <= score + 1e-6 <= 1 + 1e-6 for _, score in reading.characters
        )
