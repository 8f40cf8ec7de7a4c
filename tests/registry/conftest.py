"""A real MLflow sqlite store in a temp folder, and a small untrained reader."""

from __future__ import annotations

import mlflow
import pytest

from captcha_ocr.registry import register_reader
from tests.helpers import untrained_reader

TAGS = {"dataset_sha256": "d" * 64, "test_split_sha256": "s" * 64, "params": "{}"}


@pytest.fixture(scope="module")
def reader_file(tmp_path_factory):
    return untrained_reader(tmp_path_factory.mktemp("reader"))


def register(reader_file, name: str, png: bytes, exact_match: float, cer: float) -> str:
    with mlflow.start_run():
        metrics = {"test_exact_match": exact_match, "test_cer": cer}
        return str(register_reader(reader_file, name, metrics, TAGS, png).version)
