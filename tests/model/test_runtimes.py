"""The exported network outside Keras: OpenVINO beside onnxruntime, int8 beside float."""

import os
import pickle
import re
import threading
import time

import keras
import numpy as np
import onnx
import pytest

from captcha_ocr.config import load_params
from captcha_ocr.core.images import decode_image
from captcha_ocr.core.model import ModelLoadError, build_training_model
from captcha_ocr.core.runtimes import (
    OnnxReader,
    OpenVinoReader,
    available_cores,
    export_onnx,
    open_onnx_reader,
    quantize_onnx,
)
from captcha_ocr.core.vocabulary import Vocabulary

from ..conftest import PROJECT_ROOT

VOCABULARY = Vocabulary("2345678bcdefgmnpwxy")
DEFAULT = load_params(PROJECT_ROOT / "params.yaml").train


@pytest.fixture(scope="module")
def exported(tmp_path_factory, captcha_pngs):
    """The default architecture, untrained, as ONNX; and 12 real captchas."""
    keras.utils.set_random_seed(4)
    model = build_training_model(DEFAULT, 50, 200, VOCABULARY.num_classes)
    path = tmp_path_factory.mktemp("onnx") / "network.onnx"
    export_onnx(model, path)
    images = np.stack([decode_image(png, 50, 200) for png in captcha_pngs.values()])
    return path, images, model.count_params()


def test_openvino_reads_the_float_network_as_onnxruntime_does(exported):
    path, images, _ = exported
    onnxruntime = OnnxReader(path, VOCABULARY)
    expected = onnxruntime.logits(images)
    assert any(onnxruntime.read(images)[0])  # untrained weights read garbage: we compare that

    # 12 images in runs of 5, 5 and 2, each size compiled on its own; only one kept.
    reader = OpenVinoReader(path, VOCABULARY, max_batch=5, cached_sizes=1)
    tolerance = 1e-5 * np.abs(expected).max()
    np.testing.assert_allclose(reader.logits(images), expected, atol=tolerance)
    assert reader.read(images)[0] == onnxruntime.read(images)[0]
    # A size compiled again after it was dropped reads the same rows.
    np.testing.assert_allclose(reader.logits(images[5:10]), expected[5:10], atol=tolerance)


def test_openvino_reader_names_the_shape_it_wants(exported):
    path, images, _ = exported
    reader = OpenVinoReader(path, VOCABULARY)
    with pytest.raises(ValueError, match=r"expected \(N, 50, 200\) images, got \(12, 50, 100\)"):
        reader.read(images[:, :, :100])
    texts, confidence = reader.read(images[:0])
    assert texts == [] and confidence.shape == (0,)


def test_int8_copy_follows_the_float_network_when_calibrated_on_captchas(exported, tmp_path):
    path, images, parameters = exported
    float_logits = OnnxReader(path, VOCABULARY).logits(images)
    quantize_onnx(path, tmp_path / "captchas.onnx", images)
    quantize_onnx(path, tmp_path / "black.onnx", np.zeros_like(images))

    error = {
        name: np.abs(
            OpenVinoReader(tmp_path / f"{name}.onnx", VOCABULARY).logits(images) - float_logits
        ).mean()
        for name in ("captchas", "black")
    }
    assert error["captchas"] < 0.05 * float_logits.std()
    # The ranges come from the calibration images: all-black ones leave no room for paper.
    assert error["black"] > 3 * error["captchas"]

    quantized = onnx.load(str(tmp_path / "captchas.onnx"))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in quantized.graph.node}
    int8_weights = sum(
        int(np.prod(t.dims))
        for t in quantized.graph.initializer
        if t.data_type == onnx.TensorProto.INT8
    )
    # Every weight matrix is int8; biases and BatchNorm vectors are what is left.
    assert int8_weights > 0.95 * parameters


def test_quantize_refuses_an_empty_calibration_set(exported, tmp_path):
    path, images, _ = exported
    with pytest.raises(ValueError, match="at least one calibration image"):
        quantize_onnx(path, tmp_path / "int8.onnx", images[:0])
    assert not (tmp_path / "int8.onnx").exists()


def test_an_onnx_reader_is_refused_by_name_when_it_is_not_one(exported, tmp_path):
    path, images, _ = exported
    network = tmp_path / "network.onnx"
    network.write_bytes(path.read_bytes())
    with pytest.raises(ModelLoadError, match="network.onnx: no vocabulary.json beside it"):
        open_onnx_reader(network)

    Vocabulary("abc").save(tmp_path / "vocabulary.json")  # 4 classes, the network gives 20
    with pytest.raises(ModelLoadError, match="gives 20 classes per column, but .* has 4"):
        open_onnx_reader(network)

    VOCABULARY.save(tmp_path / "vocabulary.json")
    assert open_onnx_reader(network).read(images)[0] == OnnxReader(path, VOCABULARY).read(images)[0]

    network.write_bytes(b"not a network")
    with pytest.raises(ModelLoadError, match="network.onnx: is not an ONNX model"):
        open_onnx_reader(network)


@pytest.mark.parametrize("runtime", [OnnxReader, OpenVinoReader])
@pytest.mark.parametrize("content", ["text", "pickle", "empty", "truncated network"])
def test_each_runtime_refuses_a_file_that_is_no_onnx_model_by_name(
    exported, tmp_path, runtime, content
):
    whole = exported[0].read_bytes()
    network = tmp_path / "network.onnx"
    network.write_bytes(
        {
            "text": b"not a network",
            "pickle": pickle.dumps({"weights": [1, 2]}),
            "empty": b"",
            # Its start parses as ONNX: the rest must be read before it is refused.
            "truncated network": whole[: len(whole) // 2],
        }[content]
    )
    with pytest.raises(ModelLoadError, match=f"^{re.escape(str(network))}: is not an ONNX model"):
        runtime(network, VOCABULARY)


@pytest.mark.parametrize("runtime", [OnnxReader, OpenVinoReader])
def test_each_runtime_names_a_missing_file(tmp_path, runtime):
    with pytest.raises(FileNotFoundError, match="missing.onnx: no such ONNX file"):
        runtime(tmp_path / "missing.onnx", VOCABULARY)


def test_read_characters_scores_each_character_the_onnx_reader_reads(exported):
    path, images, _ = exported
    reader = OpenVinoReader(path, VOCABULARY)
    texts, confidence = reader.read(images)
    readings = reader.read_characters(images)
    assert [r.text for r in readings] == texts
    np.testing.assert_allclose([r.confidence for r in readings], confidence, rtol=1e-5)
    assert all(len(r.characters) == len(r.text) for r in readings)


def test_openvino_leaves_the_reading_thread_free_to_move_between_cores(exported):
    """Pinned, every process put its reading thread on the same first core, and
    two of them (kserve's --workers 2) took turns on it while the other core idled."""
    path, images, _ = exported
    cores = os.sched_getaffinity(0)
    if len(cores) < 2:
        pytest.skip("one core: there is nothing to pin to")
    reader = OpenVinoReader(path, VOCABULARY, threads=1)
    reader.read(images[:1])  # compiled here, outside the samples
    reading, stop = [], threading.Event()

    def read_on() -> None:
        reading.append(threading.get_native_id())
        while not stop.is_set():
            reader.read(images[:1])

    thread = threading.Thread(target=read_on)
    thread.start()
    try:
        while not reading:
            time.sleep(0.001)
        # Pinned, the thread sat on one core for most of each read: about half the samples.
        seen = []
        for _ in range(200):
            seen.append(os.sched_getaffinity(reading[0]))
            time.sleep(0.001)
    finally:
        stop.set()
        thread.join()
    assert all(sample == cores for sample in seen), [s for s in seen if s != cores][:3]


@pytest.mark.parametrize(
    ("cpu_max", "limit"), [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1)]
)
def test_available_cores_count_a_containers_cpu_limit(tmp_path, cpu_max, limit):
    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text(cpu_max)
    expected = affinity if limit is None else min(affinity, limit)
    assert available_cores(tmp_path / "cpu.max") == expected
    assert available_cores(tmp_path / "no-such-file") == affinity
