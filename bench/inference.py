"""Inference speed, side by side, in one run.

    python bench/inference.py [--repeats 200]

Run from the project folder after `dvc repro`. Compares, on the test split:

- reference: the Keras example's way, ``model.predict`` on the trained network,
  then CTC decoding in Python;
- reader: ``CaptchaReader.read``, the exported reader as one traced graph
  (decoding in the graph), what ``captcha-ocr predict`` and the pyfunc use;
- saved-model: the TF Serving SavedModel signature;
- onnx: the network under onnxruntime, decoding in NumPy (``OnnxReader``);
- onnx-int8: the int8 network under OpenVINO, decoding in NumPy
  (``OpenVinoReader``), when the export wrote one (``export.int8``);
- pyfunc: the registered MLflow model (base64 PNG in, so image decoding counts),
  which reads with the int8 network under OpenVINO (or the float one under
  onnxruntime; its ``serving_runtime`` tag says which);
- pyfunc-keras: what the pyfunc did before it served the ONNX network, the same
  base64 decoding then ``CaptchaReader.read`` (in process, without MLflow's wrapper).

For each: images/s at batch 64 and at batch 1, and single-image p50/p99 latency;
then how many test captchas each way reads other than the Keras reader does.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up: graph tracing and first allocations are not inference
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    import keras
    import pandas as pd
    import tensorflow as tf

    from captcha_ocr import paths
    from captcha_ocr.core.ctc import greedy_decode
    from captcha_ocr.core.model import CaptchaReader
    from captcha_ocr.core.runtimes import OnnxReader, OpenVinoReader
    from captcha_ocr.core.vocabulary import Vocabulary
    from captcha_ocr.steps.preprocess import load_split

    images = load_split("test")["images"][..., None].astype("float32")
    batch64 = np.resize(images, (64, *images.shape[1:]))
    one = images[:1]
    files = pd.read_csv(paths.SPLITS / "test.csv", dtype=str, keep_default_na=False)["file"]
    pngs = [base64.b64encode((paths.RAW_IMAGES / f).read_bytes()).decode() for f in files]
    frame64 = pd.DataFrame({"image": (pngs * 2)[:64]})
    frame1 = frame64.iloc[:1]

    network = keras.saving.load_model(paths.TRAINED_MODEL)
    reader = CaptchaReader.load(paths.READER)
    uint8_64, uint8_1 = batch64[..., 0].astype("uint8"), one[..., 0].astype("uint8")
    serve = tf.saved_model.load(str(paths.SAVED_MODEL)).signatures["serving_default"]
    vocabulary = Vocabulary.load(paths.ONNX_NETWORK.with_name("vocabulary.json"))
    onnx = OnnxReader(paths.ONNX_NETWORK, vocabulary)

    def reference(x):
        return greedy_decode(np.asarray(keras.ops.softmax(network.predict(x, verbose=0))))

    candidates = {
        "reference (model.predict)": (lambda: reference(batch64), lambda: reference(one)),
        "reader (CaptchaReader.read)": (
            lambda: reader.read(uint8_64),
            lambda: reader.read(uint8_1),
        ),
        "saved-model": (
            lambda: serve(image=tf.constant(batch64)),
            lambda: serve(image=tf.constant(one)),
        ),
        "onnx (OnnxReader.read)": (lambda: onnx.read(uint8_64), lambda: onnx.read(uint8_1)),
    }
    if paths.INT8_NETWORK.is_file():
        int8 = OpenVinoReader(paths.INT8_NETWORK, vocabulary)
        candidates["onnx-int8 (OpenVINO)"] = (
            lambda: int8.read(uint8_64),
            lambda: int8.read(uint8_1),
        )
    pyfunc = None
    if Path("models/export/registered.json").is_file():
        import json

        import mlflow

        from captcha_ocr import tracking

        tracking.use_experiment()
        registered = json.loads(Path("models/export/registered.json").read_text())
        uri = f"models:/{registered['name']}/{registered['version']}"
        pyfunc = mlflow.pyfunc.load_model(uri)
        runtime = (
            mlflow.MlflowClient()
            .get_model_version(registered["name"], registered["version"])
            .tags.get("serving_runtime", "keras")
        )
        candidates[f"pyfunc ({runtime})"] = (
            lambda: pyfunc.predict(frame64),
            lambda: pyfunc.predict(frame1),
        )
    from captcha_ocr.serving.pyfunc import decode_batch

    def keras_pyfunc(frame):
        texts, confidence = reader.read(decode_batch(frame, reader.height, reader.width))
        return pd.DataFrame({"text": texts, "confidence": confidence.astype("float64")})

    candidates["pyfunc-keras (before)"] = (
        lambda: keras_pyfunc(frame64),
        lambda: keras_pyfunc(frame1),
    )

    print(f"{'model':32}{'img/s @64':>11}{'img/s @1':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, (big, single) in candidates.items():
        big_times = timed(big, max(5, args.repeats // 20))
        single_times = timed(single, args.repeats)
        p50 = statistics.median(single_times) * 1000
        p99 = float(np.percentile(single_times, 99)) * 1000
        print(
            f"{name:32}{64 / statistics.median(big_times):11.0f}"
            f"{1 / statistics.median(single_times):10.0f}{p50:9.1f}{p99:9.1f}"
        )

    # The held-out captchas, read every way: the texts must not depend on the runtime.
    test_uint8 = images[..., 0].astype("uint8")
    keras_texts, _ = reader.read(test_uint8)
    truth = pd.read_csv(paths.SPLITS / "test.csv", dtype=str, keep_default_na=False)[
        "label"
    ].tolist()
    ways = {"onnx (onnxruntime)": onnx.read(test_uint8)[0]}
    if paths.INT8_NETWORK.is_file():
        ways["onnx-int8 (OpenVINO)"] = int8.read(test_uint8)[0]
    if pyfunc is not None:
        ways["registered pyfunc"] = pyfunc.predict(pd.DataFrame({"image": pngs}))["text"].tolist()
    right = sum(a == b for a, b in zip(keras_texts, truth, strict=True))
    print(f"test split: {len(truth)} captchas, the Keras reader reads {right} right")
    for name, texts in ways.items():
        differ = sum(a != b for a, b in zip(texts, keras_texts, strict=True))
        ok = sum(a == b for a, b in zip(texts, truth, strict=True))
        print(f"{name:28} reads {ok} right; {differ} texts differ from the Keras reader's")


if __name__ == "__main__":
    main()
