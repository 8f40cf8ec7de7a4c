"""A real `mlflow server` on 127.0.0.1 for the tests: sqlite backend, artifacts folder."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

MLFLOW = Path(sys.executable).parent / "mlflow"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tracking_server(folder: Path, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start the server in its own process group (its workers die with it); wait for /health."""
    port = free_port()
    log = open(folder / "mlflow_server.log", "w")  # a file, not a pipe: a full pipe blocks it
    command = [str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}"]
    command += ["--artifacts-destination", str(folder / "artifacts")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = (folder / "mlflow_server.log").read_text()[-3000:]
            pytest.fail(f"mlflow server exited: {tail}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    pytest.fail(f"mlflow server did not answer /health within {timeout:.0f} s")
