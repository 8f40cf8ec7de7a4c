"""A real `mlflow server` on 127.0.0.1 for the tests: sqlite backend, artifacts folder."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.helpers import free_port, wait_until_up

MLFLOW = Path(sys.executable).parent / "mlflow"


def start_tracking_server(
    folder: Path,
    timeout: float = 120,
    backend: str | None = None,
    artifacts: str | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """Start the server in its own process group (its workers die with it); wait for /health.

    By default an sqlite file and an artifacts folder in ``folder``; ``backend``
    and ``artifacts`` name others (PostgreSQL, ``s3://``), ``env`` what the
    server needs to reach them.
    """
    port = free_port()
    # A file, not a pipe: a full pipe blocks it. Closed once the server has it.
    log = (folder / "mlflow_server.log").open("w")  # noqa: SIM115
    backend = backend or f"sqlite:///{folder / 'server.db'}"
    command = [str(MLFLOW), "server", "--backend-store-uri", backend]
    command += ["--artifacts-destination", artifacts or str(folder / "artifacts")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    log.close()
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with urllib.request.urlopen(f"{url}/health", timeout=2):
            return True

    server_log = folder / "mlflow_server.log"
    wait_until_up(healthy, server, "mlflow server", server_log.read_text, timeout)
    return server, url
