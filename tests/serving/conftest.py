"""A small untrained reader with what export writes beside it (ONNX, int8, vocabulary)."""

from __future__ import annotations

import pytest

from tests.helpers import untrained_reader


@pytest.fixture(scope="module")
def reader_file(tmp_path_factory):
    return untrained_reader(tmp_path_factory.mktemp("reader"))
