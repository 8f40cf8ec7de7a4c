"""Shared fixtures. The captcha zip comes from ../shared/data or $CAPTCHA_OCR_DATA.

A missing dataset fails the tests that need it, loudly: CI must never pass by
skipping the tests that matter.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "captcha_images_v2.zip"


@pytest.fixture(scope="session")
def captcha_zip() -> Path:
    path = Path(os.environ.get("CAPTCHA_OCR_DATA", DEFAULT_DATA)).resolve()
    if not path.is_file():
        pytest.fail(
            f"captcha dataset not found at {path}; set CAPTCHA_OCR_DATA to a copy of "
            "captcha_images_v2.zip"
        )
    return path


@pytest.fixture(scope="session")
def captcha_pngs(captcha_zip: Path) -> dict[str, bytes]:
    """A few real captchas: label -> PNG bytes."""
    with zipfile.ZipFile(captcha_zip) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".png"))[:12]
        return {Path(n).stem: archive.read(n) for n in names}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """An empty MLflow sqlite store in tmp_path, the tracking URI pointing at it."""
    from captcha_ocr import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    tracking.use_experiment()
    return tmp_path
