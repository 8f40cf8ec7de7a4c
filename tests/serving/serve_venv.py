"""The serving environment, made as the README says, once per requirements-serve.txt.

``python3 -m venv`` and ``pip install -r requirements-serve.txt`` into a
cache folder named by the file's digest, so a run reuses it until the file
changes ($CAPTCHA_OCR_CACHE, default ~/.cache/captcha-ocr). The package
itself comes from ``src`` on PYTHONPATH, standing for the README's last step
(``pip install --no-deps .``), so the code under test is this checkout's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import PROJECT_ROOT

REQUIREMENTS = PROJECT_ROOT / "requirements-serve.txt"


def serve_venv() -> Path:
    """The venv's folder; made (about 40 s with a warm pip cache) when missing."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("CAPTCHA_OCR_CACHE", Path.home() / ".cache" / "captcha-ocr"))
    venv = cache / f"venv-serve-{digest}"
    if (venv / "ready").is_file():
        return venv
    # Made in place (its scripts name its folder); "ready" is written last, so a
    # half-made one from an interrupted run is made again.
    shutil.rmtree(venv, ignore_errors=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True, timeout=1200)
    (venv / "ready").write_text(f"made in {time.monotonic() - started:.0f} s\n")
    return venv


def serve_env(venv: Path) -> dict[str, str]:
    """Environment for a process of the serving venv running this checkout's code."""
    return {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.defpath}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(PROJECT_ROOT / "src"),
        "PYTHONNOUSERSITE": "1",
    }


def run_in_venv(
    venv: Path, args: list[str], timeout: float = 120, **options
) -> subprocess.CompletedProcess:
    """``python ARGS`` in the serving venv, on this checkout's code; output captured as text."""
    return subprocess.run(
        [str(venv / "bin" / "python"), *args],
        env=serve_env(venv),
        capture_output=True,
        text=True,
        timeout=timeout,
        **options,
    )
