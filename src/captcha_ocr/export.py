"""Step 5, export: the reader model, image in and text out, under models/.

Four formats: ``captcha_reader.keras`` (Keras, Python), ``saved_model/``
(TensorFlow SavedModel for TF Serving, text decoded in the graph),
``captcha_network.onnx`` with ``vocabulary.json`` (any ONNX runtime; decoding
in NumPy, see ``runtimes.OnnxReader``) and, with ``export.int8``,
``captcha_network_int8.onnx``: the same network quantized to int8 on training
images, the fastest to read under OpenVINO (``runtimes.OpenVinoReader``).
Each must read the test split exactly as the evaluate step did; the int8 copy
must read right every test captcha the reader reads right.

The reader is the trained network plus CTC decoding, saved as one ``.keras``
file that carries its vocabulary. Before it is written, it must read the test
split exactly as the evaluate step did; a reader that disagrees is not shipped.

The reader is then registered in the MLflow Model Registry as a pyfunc model
(base64 images in, text and confidence out), tagged with its test metrics, the
dataset digest, the test split digest, the git commit and the params. Which
version serves is decided by the promote step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras
import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from captcha_ocr import tracking
from captcha_ocr.config import Params, load_params
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.evaluate import METRICS_PATH
from captcha_ocr.files import atomic_dir, atomic_path, write_json
from captcha_ocr.ingest import IMAGES_DIR, INFO_PATH, sha256_of
from captcha_ocr.model import CaptchaReader, build_reader, export_saved_model, predict_texts
from captcha_ocr.preprocess import SPLITS_DIR, VOCABULARY_PATH, load_split
from captcha_ocr.runtimes import OnnxReader, OpenVinoReader, export_onnx, quantize_onnx
from captcha_ocr.train import MODEL_PATH, RUN_PATH
from captcha_ocr.vocabulary import Vocabulary

READER_PATH = Path("models/export/captcha_reader.keras")
REGISTERED_PATH = Path("models/export/registered.json")
SAVED_MODEL_DIR = Path("models/export/saved_model")
ONNX_PATH = Path("models/export/captcha_network.onnx")
INT8_ONNX_PATH = Path("models/export/captcha_network_int8.onnx")


class ExportError(CaptchaOcrError):
    pass


def export(params: Params) -> Path:
    vocabulary = Vocabulary.load(VOCABULARY_PATH)
    model = keras.saving.load_model(MODEL_PATH, safe_mode=True)
    reader = CaptchaReader(build_reader(model, vocabulary))

    images = load_split("test")["images"]
    expected, _ = predict_texts(model, images, vocabulary)
    got, _ = reader.read(images)
    disagree = sum(a != b for a, b in zip(expected, got, strict=True))
    if disagree:
        raise ExportError(f"the reader disagrees with evaluation on {disagree} test images")

    with atomic_path(READER_PATH) as tmp:
        reader.model.save(tmp)
    with atomic_dir(SAVED_MODEL_DIR) as tmp:
        export_saved_model(reader.model, tmp)
    with atomic_path(ONNX_PATH) as tmp:
        export_onnx(model, tmp)
    vocabulary.save(ONNX_PATH.with_name("vocabulary.json"))
    check_agrees("the ONNX model", OnnxReader(ONNX_PATH, vocabulary).read(images)[0], got)
    INT8_ONNX_PATH.unlink(missing_ok=True)  # never leave a stale one beside a new network
    if params.export.int8:
        export_int8(params.export.calibration_images, vocabulary, images, got)
    with tracking.resume_run(RUN_PATH):
        version = publish(READER_PATH, params)
    write_json(REGISTERED_PATH, {"name": version.name, "version": str(version.version)})
    print(f"export: reader saved to {READER_PATH} (vocabulary {vocabulary.characters!r})")
    print(f"export: registered as {version.name} version {version.version}")
    return READER_PATH


def check_agrees(what: str, texts: list[str], reader_texts: list[str]) -> None:
    disagree = sum(a != b for a, b in zip(texts, reader_texts, strict=True))
    if disagree:
        raise ExportError(f"{what} disagrees with the reader on {disagree} test images")


def export_int8(
    calibration_images: int, vocabulary: Vocabulary, images, reader_texts: list[str]
) -> None:
    """Quantize the ONNX network; refuse the copy if it loses a test captcha the reader reads.

    Texts may differ where the reader is wrong too: a barely trained network
    reads noise, and int8 reads slightly different noise.
    """
    test = pd.read_csv(SPLITS_DIR / "test.csv", dtype=str)
    calibration = load_split("train")["images"][:calibration_images]
    with atomic_path(INT8_ONNX_PATH) as tmp:
        quantize_onnx(ONNX_PATH, tmp, calibration)
        int8_texts = OpenVinoReader(tmp, vocabulary).read(images)[0]
        lost = lost_captchas(test["file"], test["label"], reader_texts, int8_texts)
        if lost:
            raise ExportError(
                f"the int8 ONNX model misreads {len(lost)} test captchas the reader reads "
                f"({', '.join(lost[:5])}); raise export.calibration_images, or set "
                "export.int8: false to ship without it"
            )
    differ = sum(a != b for a, b in zip(int8_texts, reader_texts, strict=True))
    texts = f"{differ} of {len(images)} texts differ, on captchas both misread"
    print(
        f"export: int8 network saved to {INT8_ONNX_PATH}; it reads every test captcha "
        f"the reader reads ({texts if differ else 'the same texts'})"
    )


def lost_captchas(files, truths, reader_texts, copy_texts) -> list[str]:
    """The files the reader reads right and a copy of it (int8) reads wrong."""
    rows = zip(files, truths, reader_texts, copy_texts, strict=True)
    return [file for file, truth, theirs, ours in rows if theirs == truth != ours]


def publish(reader_path: Path, params: Params) -> ModelVersion:
    """Log the reader to the active MLflow run and register it."""
    from captcha_ocr.registry import register_reader

    mlflow.log_artifact(str(reader_path), "export")
    mlflow.log_artifacts(str(SAVED_MODEL_DIR), "export/saved_model")
    mlflow.log_artifact(str(ONNX_PATH), "export")
    if INT8_ONNX_PATH.exists():
        mlflow.log_artifact(str(INT8_ONNX_PATH), "export")
    # The ONNX network gives logits; its vocabulary turns them into text.
    mlflow.log_artifact(str(ONNX_PATH.with_name("vocabulary.json")), "export")
    tags = {
        "dataset_sha256": json.loads(INFO_PATH.read_text())["sha256"],
        "test_split_sha256": sha256_of(SPLITS_DIR / "test.csv"),
        "params": json.dumps(params.model_dump(), sort_keys=True),
    }
    test = pd.read_csv(SPLITS_DIR / "test.csv", dtype=str)
    example_png = (IMAGES_DIR / test["file"][0]).read_bytes()
    metrics = json.loads(METRICS_PATH.read_text())
    return register_reader(reader_path, params.export.model_name, metrics, tags, example_png)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr export", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    export(load_params(args.params))
