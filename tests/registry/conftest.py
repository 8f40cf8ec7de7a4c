"""A real MLflow sqlite store in a temp folder, and a small untrained reader."""

from __future__ import annotations

import mlflow
import pytest

from captcha_ocr.config import TrainParams
from captcha_ocr.core.model import build_reader, build_training_model
from captcha_ocr.core.vocabulary import Vocabulary
from captcha_ocr.registry import register_reader

TAGS = {"dataset_sha256": "d" * 64, "test_split_sha256": "s" * 64, "params": "{}"}


@pytest.fixture(scope="module")
def reader_file(tmp_path_factory):
    params = TrainParams(conv_filters=[4, 8], dense_units=8, sequence_units=[8])
    vocabulary = Vocabulary("2345678bcdefgmnpwxy")
    model = build_training_model(params, 50, 200, vocabulary.num_classes)
    path = tmp_path_factory.mktemp("reader") / "captcha_reader.keras"
    build_reader(model, vocabulary).save(path)
    return path


def register(reader_file, name: str, png: bytes, exact_match: float, cer: float) -> str:
    with mlflow.start_run():
        metrics = {"test_exact_match": exact_match, "test_cer": cer}
        return str(register_reader(reader_file, name, metrics, TAGS, png).version)
