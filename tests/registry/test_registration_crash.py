"""A registration killed half-way leaves the champion as it was, and no model
version without the scores the promotion gate reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest
from mlflow import MlflowClient

from captcha_ocr.config import PromoteParams
from captcha_ocr.promotion.gate import CHAMPION, promote

from .conftest import TAGS, register

pytestmark = pytest.mark.slow
NAME = "captcha-ocr-crash"

REGISTER = """
import sys, mlflow
from pathlib import Path
from captcha_ocr import tracking
from captcha_ocr.registry import register_reader
tracking.use_experiment()
with mlflow.start_run():
    register_reader(Path(sys.argv[1]), sys.argv[2], {{"test_exact_match": 1.0, "test_cer": 0.0}},
                    {tags!r}, Path(sys.argv[3]).read_bytes())
print("registered", flush=True)
"""


def test_registration_killed_midway_leaves_the_champion(store, reader_file, captcha_pngs):
    png = store / "example.png"
    png.write_bytes(next(iter(captcha_pngs.values())))
    champion = register(reader_file, NAME, png.read_bytes(), exact_match=0.9, cer=0.0)
    promote(NAME, PromoteParams(min_exact_match=0.5))
    client = MlflowClient()
    experiment = mlflow.get_experiment_by_name("captcha-ocr").experiment_id

    def logged_models() -> int:
        return len(mlflow.search_logged_models([experiment], output_format="list"))

    before = logged_models()
    process = subprocess.Popen(
        [sys.executable, "-c", REGISTER.format(tags=TAGS), str(reader_file), NAME, str(png)],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        # Kill as soon as the new model is being logged: mid-upload, before registration.
        deadline = time.monotonic() + 180
        while logged_models() == before and process.poll() is None:
            assert time.monotonic() < deadline, "the registration never started"
            time.sleep(0.02)
        alive_at_kill = process.poll() is None
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    # A child that died on its own (import error, locked store) tests nothing.
    assert alive_at_kill and process.returncode == -signal.SIGKILL, "it ended before the kill"
    assert "registered" not in process.stdout.read(), "the kill came too late"

    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == champion
    versions = client.search_model_versions(f"name = '{NAME}'")
    for version in versions:
        assert {"test_exact_match", "test_cer"} <= set(version.tags), version.version
    assert [str(v.version) for v in versions] == [champion], "the kill came too late"
    # The next promotion decides on complete versions only and keeps the champion.
    result = promote(NAME, PromoteParams(min_exact_match=0.5))
    assert result.after["champion"] == champion
