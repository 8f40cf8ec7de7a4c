"""The trained network outside Keras: ONNX files and the runtimes that read them.

- ``export_onnx`` writes the network (pixels in, per-column logits out) as ONNX;
- ``quantize_onnx`` turns that file into an int8 one, calibrated on training
  images: 8-bit weights and activations, four times fewer bytes to move and,
  on a CPU with int8 dot products (AVX-512 VNNI), the cheapest way to run the
  convolutions, which take most of the time;
- ``OnnxReader`` runs a file under onnxruntime, ``OpenVinoReader`` under
  OpenVINO. OpenVINO is the one that turns int8 into speed: onnxruntime runs
  the int8 file *slower* than the float one on this project's CPU, OpenVINO
  2.4-2.8x faster than onnxruntime runs the float one (bench/README.md).

CTC decoding stays outside the graphs, in NumPy: the decoder op has no ONNX
counterpart, and argmax-collapse is cheap.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from captcha_ocr.core.ctc import greedy_decode
from captcha_ocr.core.images import with_channels
from captcha_ocr.core.readings import ModelLoadError, Reading, readings
from captcha_ocr.core.vocabulary import Vocabulary

if TYPE_CHECKING:  # the readers below run where Keras and TensorFlow are not installed
    import keras

CALIBRATION_BATCH = 32


def export_onnx(network: keras.Model, path) -> None:
    """Write the trained network (pixels in, logits out) as ONNX."""
    # Keras exports only a model that has been called at least once.
    _, height, width, channels = network.input.shape
    network(np.zeros((1, height, width, channels), dtype="float32"), training=False)
    network.export(str(path), format="onnx", verbose=False)


def quantize_onnx(float_path, int8_path, calibration_images: np.ndarray) -> None:
    """Write an int8 copy of an ONNX network, its ranges measured on ``calibration_images``.

    Static quantization in QDQ form (QuantizeLinear/DequantizeLinear pairs
    around each op, a standard any ONNX runtime reads): weights int8 per output
    channel, activations uint8, each activation's range the min and max seen
    on the calibration images, (N, H, W) or (N, H, W, C) uint8 as the splits hold them.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if len(calibration_images) == 0:
        raise ValueError("quantize_onnx needs at least one calibration image")

    pixels = with_channels(calibration_images).astype("f4")

    class Batches(CalibrationDataReader):
        def __init__(self, input_name: str):
            self.batches = iter(
                {input_name: pixels[i : i + CALIBRATION_BATCH]}
                for i in range(0, len(pixels), CALIBRATION_BATCH)
            )

        def get_next(self):
            return next(self.batches, None)

    import onnx

    input_name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name
    quantize_static(
        str(float_path),
        str(int8_path),
        Batches(input_name),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def decode_logits(logits: np.ndarray, vocabulary: Vocabulary) -> tuple[list[str], np.ndarray]:
    """Per-column logits of a batch to texts and best-path confidences."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    codes, confidence = greedy_decode(shifted / shifted.sum(axis=-1, keepdims=True))
    return [vocabulary.decode(c) for c in codes], confidence


class OnnxReader:
    """An ONNX network under onnxruntime, with greedy CTC decoding in NumPy."""

    def __init__(self, path, vocabulary: Vocabulary, threads: int | None = None):
        import onnxruntime
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Idle threads sleep instead of spinning: a spinning pool takes the
        # cores from whatever runs next in the process (the decoding, a server,
        # OpenVINO: 1,788 img/s right after a spinning run, 3,032 otherwise)
        # and reads no faster itself.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        try:
            # onnxruntime reads ONNX (and its own ORT format) and nothing else: data only.
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except (
            ort_errors.InvalidProtobuf,
            ort_errors.InvalidArgument,
            ort_errors.InvalidGraph,
            ort_errors.NotImplemented,
            ort_errors.Fail,
        ) as err:
            raise ModelLoadError(
                f"{path}: is not an ONNX model onnxruntime reads ({first_line(err)})"
            ) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelLoadError(
                f"{path}: not a captcha network: one (N, H, W, C) input, one output"
            )
        self.input_name = inputs[0].name
        _, self.height, self.width, self.channels = inputs[0].shape
        self.vocabulary = vocabulary

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W) or (N, H, W, C) uint8 images to (N, columns, classes) logits."""
        batch = with_channels(images).astype("float32")
        return self.session.run(None, {self.input_name: batch})[0]

    def read(self, images: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(N, H, W) uint8 images to texts and confidences."""
        return decode_logits(self.logits(images), self.vocabulary)

    def read_characters(self, images: np.ndarray) -> list[Reading]:
        """Like ``read``, plus each character's confidence, as ``CaptchaReader`` gives them."""
        logits = self.logits(images)
        return readings(*decode_logits(logits, self.vocabulary), logits)


class OpenVinoReader:
    """An ONNX network (float or int8) under OpenVINO on the CPU, decoding in NumPy.

    Each batch size gets its own compiled copy of the network, made on first
    use (about 0.2 s): a static shape reads 20-30% more images/s than one
    compiled for any batch size. Batches are cut into runs of at most
    ``max_batch`` images, and the ``cached_sizes`` most recently used sizes
    are kept. Calls from several threads take turns.

    With ``pad_batches`` a batch is padded with blank images to the next power
    of two (up to ``max_batch``): a server that meets every size from 1 to 256
    then compiles 9 copies once, instead of one per new size, each a 0.2 s
    stall of the request that meets it.

    ``pin_threads`` lets OpenVINO pin its threads to cores: only for a process
    that has the machine to itself (every process pins to the same cores).
    """

    def __init__(
        self,
        path,
        vocabulary: Vocabulary,
        max_batch: int = 64,
        cached_sizes: int = 8,
        pad_batches: bool = False,
        threads: int | None = None,
        pin_threads: bool = False,
    ):
        import openvino

        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        self.core = openvino.Core()
        self.network = read_onnx(path)
        try:
            # Every axis but the batch is fixed: (N, H, W, C) in, (N, columns, classes) out.
            _, height, width, channels = self.network.input().get_partial_shape()
            _, columns, classes = self.network.output().get_partial_shape()
            self.height, self.width = height.get_length(), width.get_length()
            self.channels = channels.get_length()
            self.output_shape = (columns.get_length(), classes.get_length())
        except (RuntimeError, ValueError) as err:
            raise ModelLoadError(f"{path}: not a captcha network: {first_line(err)}") from None
        self.vocabulary = vocabulary
        self.max_batch, self.cached_sizes = max_batch, cached_sizes
        self.pad_batches = pad_batches
        self.threads, self.pin_threads = threads, pin_threads
        self._requests: OrderedDict[int, object] = OrderedDict()
        self._lock = threading.Lock()

    def _request(self, batch: int):
        """The inference request compiled for ``batch`` images at once."""
        if batch in self._requests:
            self._requests.move_to_end(batch)
            return self._requests[batch]
        network = self.network.clone()
        network.reshape([batch, self.height, self.width, self.channels])
        config: dict[str, str] = {
            # One stream with every core on each request; here that is also
            # the most images/s for batches of 1 to 64.
            "PERFORMANCE_HINT": "LATENCY",
            # What the file keeps in float stays float32. On CPUs with bf16
            # (this project's among them) OpenVINO would round it to bfloat16,
            # so answers would depend on the CPU; int8 is no slower without.
            "INFERENCE_PRECISION_HINT": "f32",
            # Threads float unless told. Pinned, every process pins its reading
            # thread to the same first core: two processes (kserve's --workers 2)
            # took turns on one core and left the other idle, about 806 reads/s
            # each against 1810 each floating (bench/cpu_pinning.py).
            "ENABLE_CPU_PINNING": "YES" if self.pin_threads else "NO",
        }
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = str(self.threads)
        compiled = self.core.compile_model(network, "CPU", config)
        self._requests[batch] = compiled.create_infer_request()
        if len(self._requests) > self.cached_sizes:
            self._requests.popitem(last=False)
        return self._requests[batch]

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W) or (N, H, W, C) uint8 images to (N, columns, classes) logits."""
        if images.ndim not in (3, 4) or with_channels(images).shape[1:] != (
            self.height,
            self.width,
            self.channels,
        ):
            colour = f", {self.channels}" if self.channels > 1 else ""
            raise ValueError(
                f"expected (N, {self.height}, {self.width}{colour}) images, got {images.shape}"
            )
        runs = [np.zeros((0, *self.output_shape), dtype="float32")]
        with self._lock:
            for start in range(0, len(images), self.max_batch):
                batch = images[start : start + self.max_batch]
                size = len(batch)
                if self.pad_batches:
                    padded = min(self.max_batch, 1 << (size - 1).bit_length())
                    batch = np.concatenate(
                        [batch, np.zeros_like(batch[:1]).repeat(padded - size, 0)]
                    )
                request = self._request(len(batch))
                # Into the request's own float32 buffer, converted as copied: no
                # array of our own to dispatch (34-40 us less for one image).
                request.get_input_tensor().data[...] = with_channels(batch)
                # Copied: the output is a view of the request's buffer, rewritten next call.
                runs.append(request.infer(share_outputs=True)[0][:size].copy())
        return np.concatenate(runs)

    def read(self, images: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(N, H, W) uint8 images to texts and confidences."""
        return decode_logits(self.logits(images), self.vocabulary)

    def read_characters(self, images: np.ndarray) -> list[Reading]:
        """Like ``read``, plus each character's confidence, as ``CaptchaReader`` gives them."""
        logits = self.logits(images)
        return readings(*decode_logits(logits, self.vocabulary), logits)


def available_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use: its CPU affinity, within a container's CPU limit
    (cgroup v2 ``cpu.max``: "max 100000" for none, "200000 100000" for 2 cores)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


# The runtimes a registered model can serve with, by the name its ``runtime`` config gives.
RUNTIMES = ("openvino", "onnxruntime")


def open_network(
    path, vocabulary: Vocabulary, runtime: str, max_batch: int = 256, threads: int | None = None
):
    """An exported network under ``runtime`` ("openvino" or "onnxruntime"), reading any
    batch of up to ``max_batch`` images in one network call, on ``threads`` threads
    (default: the runtime's, every core)."""
    if runtime == "openvino":
        return OpenVinoReader(
            path,
            vocabulary,
            max_batch=max_batch,
            cached_sizes=16,
            pad_batches=True,
            threads=threads,
        )
    if runtime == "onnxruntime":
        return OnnxReader(path, vocabulary, threads)
    raise ModelLoadError(f"{path}: unknown runtime {runtime!r}, expected one of {RUNTIMES}")


def open_onnx_reader(path) -> OpenVinoReader:
    """An exported ONNX network and the ``vocabulary.json`` beside it, ready to read.

    Anything that is not that is refused by name (``ModelLoadError``).
    """
    path = Path(path)
    vocabulary_path = path.with_name("vocabulary.json")
    if not vocabulary_path.is_file():
        raise ModelLoadError(f"{path}: no vocabulary.json beside it to turn logits into text")
    try:
        vocabulary = Vocabulary.load(vocabulary_path)
    except (ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"{vocabulary_path}: not a captcha vocabulary: {err}") from None
    reader = OpenVinoReader(path, vocabulary)
    if reader.output_shape[1] != vocabulary.num_classes:
        raise ModelLoadError(
            f"{path}: gives {reader.output_shape[1]} classes per column, but "
            f"{vocabulary_path} has {vocabulary.num_classes}"
        )
    return reader


def read_onnx(path):
    """The network in an ONNX file, read by OpenVINO's ONNX front end alone.

    Not ``Core.read_model``, which picks among every format OpenVINO knows
    (TensorFlow, PaddlePaddle, ...). A file the front end cannot parse or
    convert is refused by name (``ModelLoadError``); nothing in it is run.
    """
    from openvino import frontend

    onnx_front_end = frontend.FrontEndManager().load_by_framework("onnx")
    failures = (
        frontend.GeneralFailure,
        frontend.InitializationFailure,
        frontend.NotImplementedFailure,
        frontend.OpConversionFailure,
        frontend.OpValidationFailure,
        RuntimeError,
    )
    try:
        # ``supported`` parses only the start of the file; ``load`` parses the rest.
        if onnx_front_end.supported(str(path)):
            return onnx_front_end.convert(onnx_front_end.load(str(path)))
        why = "no ONNX model at its start"
    except failures as err:
        why = first_line(err)
    raise ModelLoadError(f"{path}: is not an ONNX model OpenVINO reads ({why})")


def first_line(err: BaseException) -> str:
    """The first line of a runtime's error, whose messages run to many lines."""
    return (str(err).strip() or type(err).__name__).splitlines()[0]
