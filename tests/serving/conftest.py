"""A small untrained reader with what export writes beside it (ONNX, int8, vocabulary)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import untrained_reader


@pytest.fixture(scope="module")
def reader_file(tmp_path_factory):
    return untrained_reader(tmp_path_factory.mktemp("reader"))


@pytest.fixture(scope="module")
def float_only(reader_file, tmp_path_factory) -> Path:
    """The same reader as an export with ``export.int8: false`` leaves it."""
    folder = tmp_path_factory.mktemp("float-only")
    for name in ("captcha_reader.keras", "captcha_network.onnx", "vocabulary.json"):
        shutil.copy(reader_file.with_name(name), folder / name)
    return folder / "captcha_reader.keras"
