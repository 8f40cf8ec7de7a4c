"""Step 5, export: the reader model, image in and text out, under models/.

The reader is the trained network plus CTC decoding, saved as one ``.keras``
file that carries its vocabulary. Before it is written, it must read the test
split exactly as the evaluate step did; a reader that disagrees is not shipped.

Registration in the MLflow Model Registry plugs in at ``publish`` below.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import mlflow

from captcha_ocr import tracking
from captcha_ocr.config import ExportParams, load_params
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.files import atomic_path
from captcha_ocr.model import CaptchaReader, build_reader, predict_texts
from captcha_ocr.preprocess import VOCABULARY_PATH, load_split
from captcha_ocr.train import MODEL_PATH, RUN_PATH
from captcha_ocr.vocabulary import Vocabulary

READER_PATH = Path("models/export/captcha_reader.keras")


class ExportError(CaptchaOcrError):
    pass


def export(params: ExportParams) -> Path:
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
    with tracking.resume_run(RUN_PATH):
        publish(READER_PATH, params)
    print(f"export: reader saved to {READER_PATH} (vocabulary {vocabulary.characters!r})")
    print(
        "results: `dvc metrics show` (test metrics), `dvc plots show` (curves, confusion),\n"
        "         reports/ (errors, sample predictions), "
        f"`mlflow ui` (runs in {tracking.tracking_uri()})"
    )
    return READER_PATH


def publish(reader_path: Path, params: ExportParams) -> None:
    """Attach the reader to the active MLflow run (registry: a later step)."""
    mlflow.log_artifact(str(reader_path), "export")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="captcha-ocr export", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    export(load_params(args.params).export)
