"""A tiny real reader, a few real captchas, and the demo app on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keras
import pytest

from captcha_ocr.config import TrainParams
from captcha_ocr.core.model import build_reader, build_training_model
from captcha_ocr.core.vocabulary import Vocabulary

TINY = TrainParams(conv_filters=[4, 8], dense_units=8, sequence_units=[8])


@pytest.fixture(scope="package")
def reader_path(tmp_path_factory) -> Path:
    # Untrained weights read garbage, but the same garbage every time, which is
    # what the page is compared with.
    keras.utils.set_random_seed(3)
    vocabulary = Vocabulary("2345678bcdefgmnpwxy")
    model = build_training_model(TINY, 50, 200, vocabulary.num_classes)
    path = tmp_path_factory.mktemp("reader") / "captcha_reader.keras"
    build_reader(model, vocabulary).save(path)
    return path


@pytest.fixture(scope="package")
def gallery_dir(tmp_path_factory, captcha_pngs) -> Path:
    folder = tmp_path_factory.mktemp("gallery")
    for label, data in list(captcha_pngs.items())[:4]:
        (folder / f"{label}.png").write_bytes(data)
    return folder


@contextmanager
def serving(app) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port; yield its URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the demo server did not start")
        time.sleep(0.05)
    try:
        yield "http://{}:{}".format(*sock.getsockname())
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
