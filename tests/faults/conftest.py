"""A tiny project folder (64 real captchas, prepared) to train in, and helpers
to run steps as the separate processes DVC would run, and to kill them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests import helpers

VENV_BIN = Path(sys.executable).parent
EPOCHS = 8
TINY_TRAIN = {"epochs": EPOCHS, "patience": EPOCHS, "batch_size": 8, **helpers.TINY_TRAIN}


def step_env(tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def run_step(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["captcha-ocr", *args], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )


def wait_for(what: str, check: Callable[[], object], timeout: float = 180) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def checkpoint_state(root: Path) -> dict | None:
    """The newest checkpoint state of the train step, or None."""
    for path in (root / ".checkpoints" / "train").glob("*/state.json"):
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # replaced under our feet; the next poll reads it
    return None


@pytest.fixture(scope="session")
def prepared_template(tmp_path_factory, captcha_zip) -> Path:
    """Ingest and preprocess once: 64 captchas, tiny train params."""
    root = tmp_path_factory.mktemp("prepared")
    params = {"ingest": {"source": str(captcha_zip)}, "preprocess": {"limit": 64}}
    params["train"] = TINY_TRAIN
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    env = step_env("sqlite:///unused.db")
    for step in ("ingest", "preprocess"):
        done = run_step(root, env, step)
        assert done.returncode == 0, done.stderr
    return root


@pytest.fixture
def project(tmp_path, prepared_template) -> Path:
    root = tmp_path / "project"
    shutil.copytree(prepared_template, root)
    return root
