"""The whole Kubeflow pipeline run locally (kfp.local, each component in a
subprocess) on 64 real captchas for 1 epoch, then its artifacts, the MLflow
run and the registry are checked; a second run shows the registry's gate gives
a version below the minimum the same alias and tag as under DVC."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from captcha_ocr.core.metrics import flat_metrics

from ..conftest import PROJECT_ROOT
from ..helpers import tiny_params

pytestmark = pytest.mark.slow


def run_pipeline(tmp: Path, zip_path: Path, *params: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [sys.executable, "-m", "captcha_ocr", "pipeline", "run-local"]
    # Relative, as a user in the project folder writes it: components run elsewhere.
    command += ["--param", f"ingest.source={os.path.relpath(zip_path, PROJECT_ROOT)}"]
    command += ["--params", str(tmp / "params.yaml"), "--pipeline-root", str(tmp / "kfp")]
    command += ["--mlflow-uri", f"sqlite:///{tmp / 'mlflow.db'}"]
    command += [arg for param in params for arg in ("--param", param)]
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def task_folder(tmp: Path, task: str, run: int = 0) -> Path:
    runs = sorted((tmp / "kfp").iterdir())
    return runs[run] / task


def executor_output(tmp: Path, task: str, run: int = 0) -> dict:
    return json.loads((task_folder(tmp, task, run) / "executor_output.json").read_text())


def written_errors_shown(report: str, tmp: Path) -> bool:
    errors = task_folder(tmp, "evaluate-model") / "evaluation/reports/test_errors.csv"
    files = [line.split(",")[0] for line in errors.read_text().splitlines()[1:]]
    return all(name in report for name in files)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, captcha_zip):
    tmp = tmp_path_factory.mktemp("kfp")
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp / "params.yaml")
    tiny_params(tmp / "params.yaml", epochs=1)
    first = run_pipeline(tmp, captcha_zip, "preprocess.limit=64")
    # A 1-epoch model reads nothing right: a minimum of 1.0 fails the gate.
    second = run_pipeline(tmp, captcha_zip, "promote.min_exact_match=1.0")
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    yield tmp, first, second
    mlflow.set_tracking_uri(None)


def test_every_step_left_its_artifacts(runs):
    tmp, _, _ = runs
    for task, path in [
        ("ingest-data", "raw/data/raw/ingest.json"),
        ("preprocess-data", "prepared/data/splits/test.csv"),
        ("train-model", "model/models/train/model.keras"),
        ("evaluate-model", "evaluation/reports/metrics.json"),
        ("export-model", "reader/models/export/captcha_network.onnx"),
        ("promote-model", "promotion/reports/promotion.json"),
    ]:
        assert (task_folder(tmp, task) / path).stat().st_size > 0, (task, path)
    raw = executor_output(tmp, "ingest-data")["artifacts"]["raw"]["artifacts"][0]
    assert len(raw["metadata"]["sha256"]) == 64
    report = json.loads(
        (task_folder(tmp, "preprocess-data") / "prepared/reports/data_report.json").read_text()
    )
    assert sum(report["splits"].values()) == 64


def test_metrics_and_confusion_are_kfp_artifacts_matching_the_step(runs):
    tmp, _, _ = runs
    outputs = executor_output(tmp, "evaluate-model")["artifacts"]
    metrics = outputs["metrics"]["artifacts"][0]["metadata"]
    written = json.loads(
        (task_folder(tmp, "evaluate-model") / "evaluation/reports/metrics.json").read_text()
    )
    assert metrics == pytest.approx(flat_metrics(written))  # numbers only, per length too
    assert metrics["test_samples_len5"] == written["test_samples"]
    matrix = outputs["confusion"]["artifacts"][0]["metadata"]["confusionMatrix"]
    labels = [spec["displayName"] for spec in matrix["annotationSpecs"]]
    assert len(labels) == len(matrix["rows"]) == len(matrix["rows"][0]["row"])
    # Every aligned character of the test labels is counted once.
    counted = sum(sum(row["row"]) for row in matrix["rows"])
    assert counted >= 5 * written["test_samples"]
    report = (task_folder(tmp, "evaluate-model") / "report").read_text()
    assert "<html" in report and written_errors_shown(report, tmp)
    assert not re.search(r"(src|href)=[\"']https?://", report)  # self-contained


def test_the_mlflow_run_has_params_history_and_test_metrics(runs):
    tmp, _, _ = runs
    run_ref = executor_output(tmp, "train-model")["artifacts"]["model"]["artifacts"][0]
    run = mlflow.get_run(run_ref["metadata"]["run_id"])
    assert run.data.params["train.epochs"] == "1"
    assert run.data.params["preprocess.limit"] == "64"
    history = MlflowClient().get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [1]
    written = json.loads(
        (task_folder(tmp, "evaluate-model") / "evaluation/reports/metrics.json").read_text()
    )
    assert run.data.metrics["test_exact_match"] == pytest.approx(written["test_exact_match"])
    assert run.info.status == "FINISHED"


def test_the_registry_gate_decides_as_under_dvc(runs):
    tmp, _, _ = runs
    client = MlflowClient()
    first_version = executor_output(tmp, "export-model")["parameterValues"]["Output"]
    second_version = executor_output(tmp, "export-model", run=1)["parameterValues"]["Output"]
    assert (first_version, second_version) == ("1", "2")
    assert str(client.get_model_version_by_alias("captcha-ocr", "champion").version) == "1"

    # Below promote.min_exact_match: promote still ran, and the version became
    # challenger with the reason as a tag, exactly what `dvc repro` gives.
    promotion = task_folder(tmp, "promote-model", run=1) / "promotion/reports/promotion.json"
    assert json.loads(promotion.read_text())["promoted"] is False
    version_2 = client.get_model_version("captcha-ocr", "2")
    assert version_2.aliases == ["challenger"]
    assert "below promote.min_exact_match 1.0" in version_2.tags["promotion.decision"]
    # Steps run in scratch folders, outside any git checkout: the commit can only
    # have come in as the pipeline's git_commit parameter.
    assert re.fullmatch("[0-9a-f]{40}", version_2.tags["git_commit"])
    assert str(client.get_model_version_by_alias("captcha-ocr", "champion").version) == "1"
