"""The MLflow tracking server dies during training: training finishes, the
model is saved, and the logs the server missed are retried and then listed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import keras
import pandas as pd
import pytest

from ..mlflow_server import start_tracking_server
from .conftest import EPOCHS, checkpoint_state, step_env, wait_for

pytestmark = pytest.mark.slow


def test_training_outlives_the_tracking_server(project, tmp_path):
    server, url = start_tracking_server(tmp_path)
    train = subprocess.Popen(
        ["captcha-ocr", "train"],
        cwd=project,
        env=step_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        try:
            wait_for("one epoch", lambda: (checkpoint_state(project) or {}).get("epoch", 0) >= 1)
        finally:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        started = time.monotonic()
        lost_from = checkpoint_state(project)["epoch"] + 1
        assert lost_from <= EPOCHS, "the server died too late to test anything"
        out, err = train.communicate(timeout=600)
    finally:
        if train.poll() is None:  # never leave a training behind a failed assertion
            train.kill()
            train.communicate()

    assert train.returncode == 0, err[-3000:]
    print(f"training finished {time.monotonic() - started:.0f} s after the server died")
    keras.saving.load_model(project / "models/train/model.keras", safe_mode=True)
    history = pd.read_csv(project / "reports/train_history.csv")
    assert history["epoch"].tolist() == list(range(1, EPOCHS + 1))

    assert "MLflow logging failed" in err
    unlogged = json.loads((project / "models/train/mlflow_unlogged.json").read_text())
    lost = [item["what"] for item in unlogged["lost"]]
    assert f"epoch {EPOCHS} metrics" in lost and "logged model 'model'" in lost
    (last,) = [item for item in unlogged["lost"] if item["what"] == f"epoch {EPOCHS} metrics"]
    assert last["data"]["step"] == EPOCHS
    assert last["data"]["metrics"]["val_loss"] == pytest.approx(history["val_loss"].iloc[-1])
    assert unlogged["tracking_uri"] == url
    assert "models/train/mlflow_unlogged.json" in err
