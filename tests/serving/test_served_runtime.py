"""The registered model serves the exported network, not Keras.

Registered with the int8 network beside the reader, it reads under OpenVINO;
without it, the float network under onnxruntime. Either way the process that
loads and calls it never imports TensorFlow or Keras (checked in a fresh
interpreter of this venv, where both are installed and would load silently),
and a request of N images is one network call.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from captcha_ocr.core.images import decode_image
from captcha_ocr.core.runtimes import OnnxReader, OpenVinoReader
from captcha_ocr.core.vocabulary import Vocabulary
from captcha_ocr.serving.predict import Predictor
from captcha_ocr.serving.uploads import MAX_BATCH, encode_image

from ..registry.conftest import register

NAME = "captcha-ocr-runtime"

LOAD = """
import base64, json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
images = [base64.b64encode(open(p, "rb").read()).decode() for p in sys.argv[2:]]
texts = model.predict(pd.DataFrame({"image": images}))["text"].tolist()
roots = {m.split(".")[0] for m in sys.modules}
heavy = sorted(roots & {"tensorflow", "keras", "tf2onnx", "tf_keras"})
print(json.dumps({"texts": texts, "heavy": heavy}))
"""


def load_in_fresh_process(uri: str, pngs: list[bytes], folder: Path) -> dict:
    files = []
    for i, png in enumerate(pngs):
        files.append(folder / f"{i}.png")
        files[-1].write_bytes(png)
    done = subprocess.run(
        [sys.executable, "-c", LOAD, uri, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    ("int8", "runtime", "package"),
    [(True, "openvino-int8", "openvino"), (False, "onnxruntime-float32", "onnxruntime")],
)
def test_the_registered_model_serves_the_fastest_network_without_tensorflow(
    store, reader_file, float_only, captcha_pngs, tmp_path, int8, runtime, package
):
    reader = reader_file if int8 else float_only
    pngs = list(captcha_pngs.values())[:6]
    version = register(reader, NAME, pngs[0], 0.9, 0.0)
    assert MlflowClient().get_model_version(NAME, version).tags["serving_runtime"] == runtime

    model = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/{version}"))
    declared = {r.split("==")[0] for r in (model / "requirements.txt").read_text().split()}
    assert declared == {"mlflow-skinny", "numpy", "pandas", "pillow", package}

    answer = load_in_fresh_process(f"models:/{NAME}/{version}", pngs, tmp_path)
    assert answer["heavy"] == [], f"the served model imported {answer['heavy']}"
    vocabulary = Vocabulary.load(reader.with_name("vocabulary.json"))
    images = np.stack([decode_image(p, 50, 200) for p in pngs])
    direct = (
        OpenVinoReader(reader.with_name("captcha_network_int8.onnx"), vocabulary)
        if int8
        else OnnxReader(reader.with_name("captcha_network.onnx"), vocabulary)
    )
    assert answer["texts"] == direct.read(images)[0]

    # The demo and `predict --model models:/...` read with the same runtime.
    demo = Predictor(f"models:/{NAME}/{version}")
    assert type(demo.reader) is type(direct)
    assert demo.read(list(images))[0] == answer["texts"]


def test_a_request_of_n_images_is_one_network_call(store, reader_file, captcha_pngs):
    png = next(iter(captcha_pngs.values()))
    version = register(reader_file, NAME, png, 0.9, 0.0)
    reader = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}").unwrap_python_model().reader
    assert isinstance(reader, OpenVinoReader)
    calls: list[int] = []
    compiled = reader._request
    reader._request = lambda batch: calls.append(batch) or compiled(batch)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
    model.unwrap_python_model().reader = reader
    for size in (1, 3, 16, 100, MAX_BATCH):
        calls.clear()
        out = model.predict(pd.DataFrame({"image": [encode_image(png)] * size}))
        assert len(out) == size and len(set(out["text"])) == 1
        # One call, on a batch padded to a power of two (few compiled sizes).
        assert len(calls) == 1 and size <= calls[0] < 2 * size, (size, calls)
