"""Honest training and scoring, step by step on 64 real captchas.

The test split is read by evaluate alone: train runs with it gone, export with
its images gone. A one-epoch training cannot leave the CTC plateau, and says
so in its output, the run report and the MLflow run, without failing. An int8
copy that cannot be made is left out: export succeeds and tags the version.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from ..conftest import PROJECT_ROOT
from ..helpers import set_source, tiny_params

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "captcha-ocr")
PLATEAU = "the model reads nothing yet: the loss stayed on its plateau"
TEST_SPLIT = ("data/prepared/test.npz", "data/splits/test.csv")


def step(root: Path, name: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([CLI, name], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done


def hide(root: Path, names: tuple[str, ...], away: Path) -> None:
    away.mkdir(exist_ok=True)
    for name in names:
        shutil.move(root / name, away / Path(name).name)


def bring_back(root: Path, names: tuple[str, ...], away: Path) -> None:
    for name in names:
        shutil.move(away / Path(name).name, root / name)


@pytest.fixture(scope="module")
def project(tmp_path_factory, captcha_zip):
    """ingest, preprocess, then train with the test split gone; then evaluate."""
    root = tmp_path_factory.mktemp("honest")
    shutil.copy(PROJECT_ROOT / "params.yaml", root / "params.yaml")
    tiny_params(root / "params.yaml", epochs=1)
    set_source(root / "params.yaml", captcha_zip)
    step(root, "ingest")
    step(root, "preprocess")
    away = root.parent / f"{root.name}-test-split"
    hide(root, TEST_SPLIT, away)
    trained = step(root, "train")
    bring_back(root, TEST_SPLIT, away)
    evaluated = step(root, "evaluate")
    return root, trained.stdout, evaluated.stdout


def test_train_never_reads_the_test_split(project):
    root, trained, _ = project
    assert (root / "models/train/model.keras").is_file()  # trained without it
    assert "train: 1 epochs" in trained
    # The test split's file list is an input of the run from evaluate on, not from train.
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    run_id = json.loads((root / "models/train/mlflow_run.json").read_text())["run_id"]
    inputs = mlflow.get_run(run_id).inputs.dataset_inputs
    contexts = sorted(
        tag.value for i in inputs for tag in i.tags if tag.key == "mlflow.data.context"
    )
    assert contexts == ["testing", "training", "validation"]


def test_a_run_that_never_leaves_the_plateau_says_so_everywhere_and_goes_on(project):
    root, trained, evaluated = project
    assert f"train: WARNING: {PLATEAU}" in trained
    assert "train.learning_rate" in trained  # what to try next
    assert PLATEAU in evaluated
    assert PLATEAU in (root / "reports/run_report.html").read_text()

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    run_id = json.loads((root / "models/train/mlflow_run.json").read_text())["run_id"]
    run = mlflow.get_run(run_id)
    assert run.data.tags["plateau"].startswith(PLATEAU)
    assert run.data.metrics["left_plateau"] == 0.0
    assert run.data.params["train.epochs_budget"] == "1"
    history = mlflow.MlflowClient().get_metric_history(run_id, "val_cer")
    assert [m.step for m in history] == [1]


def test_evaluate_reports_the_interval_and_each_length(project):
    root, _, evaluated = project
    metrics = json.loads((root / "reports/metrics.json").read_text())
    n = metrics["test_samples"]
    assert metrics["test_exact_match_ci_low"] <= metrics["test_exact_match"]
    assert metrics["test_exact_match"] <= metrics["test_exact_match_ci_high"]
    # A model that reads nothing: 0 of n, whose Wilson upper bound is z^2 / (n + z^2).
    assert metrics["test_exact_match_ci_high"] == pytest.approx(3.8415 / (n + 3.8415), abs=1e-4)
    assert metrics["test_exact_match_by_length"] == {
        "5": {
            "exact_match": metrics["test_exact_match"],
            "samples": n,
            "ci_low": metrics["test_exact_match_ci_low"],
            "ci_high": metrics["test_exact_match_ci_high"],
        }
    }
    assert "95% CI" in evaluated and "by length: 5 characters" in evaluated
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    run_id = json.loads((root / "models/train/mlflow_run.json").read_text())["run_id"]
    logged = mlflow.get_run(run_id).data.metrics
    assert logged["test_exact_match_ci_high"] == pytest.approx(metrics["test_exact_match_ci_high"])
    assert logged["test_samples_len5"] == n


def test_an_int8_copy_that_cannot_be_made_is_left_out_and_export_succeeds(
    project, monkeypatch, capsys, tmp_path
):
    root, _, _ = project
    from captcha_ocr.config import load_params
    from captcha_ocr.steps import export

    def broken_quantizer(source, target, calibration):  # noqa: ARG001 (the quantizer's signature)
        Path(target).write_bytes(b"not an ONNX model")

    monkeypatch.setattr(export, "quantize_onnx", broken_quantizer)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    # Export reads validation images, never the test images.
    hide(root, TEST_SPLIT[:1], tmp_path)
    try:
        export.export(load_params(root / "params.yaml"))
    finally:
        bring_back(root, TEST_SPLIT[:1], tmp_path)

    out = capsys.readouterr().out
    assert "int8 network NOT shipped" in out and "could not be made" in out
    assert (root / "models/export/captcha_network.onnx").is_file()
    assert not (root / "models/export/captcha_network_int8.onnx").exists()
    registered = json.loads((root / "models/export/registered.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    version = mlflow.MlflowClient().get_model_version(registered["name"], registered["version"])
    assert version.tags["int8"] == "dropped"
    assert "could not be made" in version.tags["int8.reason"]


def test_an_auto_run_still_on_the_plateau_starts_again_twice_then_gives_up(project, tmp_path):
    root, _, _ = project
    again = tmp_path / "again"
    shutil.copytree(root, again, ignore=shutil.ignore_patterns("mlflow.db", "models", ".*"))
    params = yaml.safe_load((again / "params.yaml").read_text())
    # A budget of 10 epochs (the floor) of a few steps: too few for 64 captchas.
    params["train"] |= {"epochs": "auto", "target_steps": 1, "patience": "auto"}
    (again / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    trained = step(again, "train").stdout
    assert "after epoch 10: starting again from fresh weights" in trained
    assert "after epoch 20: starting again from fresh weights" in trained
    assert f"train: WARNING: {PLATEAU}" in trained and "train: 30 epochs" in trained

    mlflow.set_tracking_uri(f"sqlite:///{again / 'mlflow.db'}")
    run_id = json.loads((again / "models/train/mlflow_run.json").read_text())["run_id"]
    assert mlflow.get_run(run_id).data.tags["restarts"] == "2"
    rates = {
        m.step: m.value for m in mlflow.MlflowClient().get_metric_history(run_id, "learning_rate")
    }
    # Each attempt's schedule starts over: its first epoch ends where the first one's did.
    assert rates[11] == pytest.approx(rates[1]) and rates[21] == pytest.approx(rates[1])
    assert rates[10] < rates[1] / 2
