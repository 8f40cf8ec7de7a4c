"""Training killed with SIGKILL mid-way: the rerun resumes from the last epoch
checkpoint, in the same MLflow run, which ends FINISHED."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import keras
import mlflow
import pandas as pd
import pytest

from captcha_ocr import tracking

from .conftest import EPOCHS, checkpoint_state, run_step, step_env, wait_for

pytestmark = pytest.mark.slow


def test_killed_training_resumes_from_its_last_epoch(project):
    uri = f"sqlite:///{project / 'mlflow.db'}"
    env = step_env(uri)
    process = subprocess.Popen(
        ["captcha-ocr", "train"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("two epochs", lambda: (checkpoint_state(project) or {}).get("epoch", 0) >= 2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = checkpoint_state(project)["epoch"]
    assert 2 <= killed_at < EPOCHS, "the kill came too late to test a resume"
    # Nothing a later step could take for a trained model.
    assert not (project / "models/train/model.keras").exists()
    assert not (project / "reports/train_history.csv").exists()
    run_id = checkpoint_state(project)["run_id"]
    mlflow.set_tracking_uri(uri)
    assert mlflow.get_run(run_id).info.status == "RUNNING"

    done = run_step(project, env, "train")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming after epoch {killed_at}" in done.stdout
    epochs_run = [int(n) for n in re.findall(r"^Epoch (\d+)/", done.stdout, re.MULTILINE)]
    assert epochs_run == list(range(killed_at + 1, EPOCHS + 1))

    history = pd.read_csv(project / "reports/train_history.csv")
    assert history["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert history["val_loss"].notna().all()
    keras.saving.load_model(project / "models/train/model.keras", safe_mode=True)

    run = mlflow.get_run(run_id)  # the killed attempt's run, resumed and closed
    assert run.info.status == "FINISHED"
    steps = {m.step for m in mlflow.MlflowClient().get_metric_history(run_id, "val_loss")}
    assert steps == set(range(1, EPOCHS + 1))
    assert (project / "models/train/mlflow_run.json").read_text().count(run_id) == 1
    # A finished training leaves no checkpoint behind.
    assert checkpoint_state(project) is None


OWNER = """
import sys, time, mlflow
from captcha_ocr import tracking
tracking.use_experiment()
run = mlflow.start_run()
tracking.tag_owner()
print(run.info.run_id, flush=True)
time.sleep(600)
"""


def test_runs_of_killed_processes_are_marked_failed_and_live_ones_kept(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = step_env(uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    experiment_id = tracking.use_experiment()  # creates the store before two processes race to
    owners = [
        subprocess.Popen([sys.executable, "-c", OWNER], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        killed, alive = (p.stdout.readline().strip() for p in owners)
        owners[0].send_signal(signal.SIGKILL)
        owners[0].wait()

        assert tracking.end_orphaned_runs(experiment_id) == [killed]
        assert mlflow.get_run(killed).info.status == "FAILED"
        assert "gone" in mlflow.get_run(killed).data.tags["captcha_ocr.ended"]
        assert mlflow.get_run(alive).info.status == "RUNNING"
    finally:
        for process in owners:
            process.kill()
            process.wait()
