"""A tiny real reader, a few real captchas, and the demo app on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import untrained_reader


@pytest.fixture(scope="package")
def reader_path(tmp_path_factory) -> Path:
    # Untrained weights read garbage, but the same garbage every time, which is
    # what the page is compared with.
    return untrained_reader(tmp_path_factory.mktemp("reader"), seed=3)


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
