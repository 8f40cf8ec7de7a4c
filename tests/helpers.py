"""What the test folders share: tiny models and params, free ports, servers that must come up."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

# A network small enough to build and train in seconds; it reads nothing right.
TINY_TRAIN = {"conv_filters": [8, 16], "dense_units": 16, "sequence_units": [16]}
# Smaller still, for readers that are never trained.
UNTRAINED = {"conv_filters": [4, 8], "dense_units": 8, "sequence_units": [8]}
CHARACTERS = "2345678bcdefgmnpwxy"  # captcha_images_v2's


def tiny_params(path: Path, epochs: int) -> None:
    """Rewrite params.yaml at ``path`` for a quick run on 64 images."""
    params = yaml.safe_load(path.read_text())
    params["preprocess"] |= {"limit": 64}
    params["train"] |= {"epochs": epochs, "patience": epochs, **TINY_TRAIN}
    # A model this small reads nothing right; let it become the first champion anyway.
    params["promote"] |= {"min_exact_match": 0.0}
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def set_source(path: Path, source: Path | str) -> None:
    """Point ``ingest.source`` in the params.yaml at ``path`` to ``source``."""
    params = yaml.safe_load(path.read_text())
    params["ingest"]["source"] = str(source)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def untrained_reader(folder: Path, seed: int | None = None, int8: bool = True) -> Path:
    """A real reader file with untrained weights (the same garbage every time with a seed),
    and beside it what export writes for serving: the ONNX network, its vocabulary and,
    with ``int8``, the int8 copy (calibrated on noise: there is nothing to lose)."""
    import keras
    import numpy as np

    from captcha_ocr.config import TrainParams
    from captcha_ocr.core.model import build_reader, build_training_model
    from captcha_ocr.core.runtimes import export_onnx, quantize_onnx
    from captcha_ocr.core.vocabulary import Vocabulary

    if seed is not None:
        keras.utils.set_random_seed(seed)
    vocabulary = Vocabulary(CHARACTERS)
    model = build_training_model(TrainParams(**UNTRAINED), 50, 200, vocabulary.num_classes)
    path = folder / "captcha_reader.keras"
    build_reader(model, vocabulary).save(path)
    export_onnx(model, folder / "captcha_network.onnx")
    vocabulary.save(folder / "vocabulary.json")
    if int8:
        noise = np.random.default_rng(0).integers(0, 256, (16, 50, 200), dtype=np.uint8)
        quantize_onnx(folder / "captcha_network.onnx", folder / "captcha_network_int8.onnx", noise)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(
    answers: Callable[[], bool],
    process: subprocess.Popen,
    what: str,
    log: Callable[[], str] = lambda: "",
    timeout: float = 180,
) -> None:
    """Poll ``answers`` until it is true; fail with the log if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while not _answers(answers):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process, grace=5)  # with its workers, if it leads a process group
            pytest.fail(f"{what} did not come up within {timeout:.0f} s:\n{log()[-3000:]}")
        time.sleep(0.5)


def stop(process: subprocess.Popen, grace: float = 20) -> None:
    """Ask a server to stop, with its workers if it leads a process group of its own
    (``start_new_session=True``); kill what is left after ``grace`` seconds."""
    try:
        group = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:  # gone already
        group = False

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig) if group else process.send_signal(sig)

    send(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(timeout=grace)
    if group:  # workers that outlived their parent
        send(signal.SIGKILL)


def _answers(answers: Callable[[], bool]) -> bool:
    try:
        return answers()
    except OSError:  # refused, reset, timed out: not up yet
        return False


@contextmanager
def static_server(root: Path) -> Iterator[str]:
    """Serve the files under ``root`` on 127.0.0.1; yield the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
