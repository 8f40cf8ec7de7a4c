"""End to end: `dvc repro` in a fresh git repo on 64 real captchas, then the
outputs, dvc.lock, the metrics and the MLflow run are checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml

from ..dvc_project import make_project

pytestmark = pytest.mark.slow

STAGES = ["ingest", "preprocess", "train", "evaluate", "export", "register", "promote"]
EPOCHS = 2


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory, captcha_zip):
    root = tmp_path_factory.mktemp("repo") / "project"
    env = make_project(root, captcha_zip, EPOCHS)
    output = run(["dvc", "repro"], root, env)
    return root, env, output


def test_every_stage_ran_and_is_locked(repo):
    root, _, output = repo
    for stage in STAGES:
        assert f"Running stage '{stage}'" in output
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert sorted(lock["stages"]) == sorted(STAGES)
    outs = {o["path"]: o for stage in lock["stages"].values() for o in stage.get("outs", [])}
    for path in (
        "data/raw/captcha_images_v2.zip",
        "data/splits",
        "models/train",
        "models/export",
        "reports/metrics.json",
    ):
        assert outs[path]["md5"], path
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["epochs"] == EPOCHS


def test_outputs_are_there(repo):
    root, _, _ = repo
    for path in (
        "data/splits/train.csv",
        "data/splits/val.csv",
        "data/splits/test.csv",
        "data/prepared/train.npz",
        "reports/data_report.json",
        "reports/train_history.csv",
        "reports/test_predictions.png",
        "reports/training_curves.png",
        "reports/char_confusion.csv",
        "models/train/model.keras",
        "models/export/captcha_reader.keras",
        "models/export/saved_model/saved_model.pb",
        "models/export/captcha_network.onnx",
        "models/export/captcha_network_int8.onnx",
    ):
        assert (root / path).stat().st_size > 0, path
    report = json.loads((root / "reports/data_report.json").read_text())
    assert sum(report["splits"].values()) == 64


def test_run_report_is_written_locked_and_logged(repo):
    root, _, _ = repo
    page = (root / "reports/run_report.html").read_text()
    metrics = json.loads((root / "reports/metrics.json").read_text())
    errors = (root / "reports/test_errors.csv").read_text().strip().splitlines()[1:]
    assert len(errors) == metrics["test_errors"]
    # One figure, with its image, per wrong test prediction.
    assert f"Wrong predictions ({len(errors)} of {metrics['test_samples']})" in page
    assert page.count("<figure>") == len(errors)
    assert page.count('src="data:image/png;base64,') == len(errors) + 1  # + the curves

    lock = yaml.safe_load((root / "dvc.lock").read_text())
    outs = {o["path"] for o in lock["stages"]["evaluate"]["outs"]}
    assert "reports/run_report.html" in outs

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    run_id = json.loads((root / "models/train/mlflow_run.json").read_text())["run_id"]
    logged = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="reports/run_report.html"
    )
    assert Path(logged).read_text() == page


def test_dvc_metrics_match_the_mlflow_run(repo):
    root, env, _ = repo
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], root, env))
    dvc_metrics = next(iter(shown.values()))["data"]["reports/metrics.json"]["data"]
    assert set(dvc_metrics) >= {"test_exact_match", "test_cer"}

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name("captcha-ocr")
    (run_,) = mlflow.search_runs([experiment.experiment_id], output_format="list")
    for key in ("test_exact_match", "test_cer"):
        assert run_.data.metrics[key] == pytest.approx(dvc_metrics[key])
    assert run_.info.status == "FINISHED"
    assert run_.data.params["train.epochs"] == str(EPOCHS)
    assert run_.data.params["preprocess.limit"] == "64"

    client = mlflow.MlflowClient()
    history = client.get_metric_history(run_.info.run_id, "val_loss")
    assert [m.step for m in history] == list(range(1, EPOCHS + 1))
    assert len(client.get_metric_history(run_.info.run_id, "val_exact_match")) == EPOCHS

    ingest = json.loads((root / "data/raw/ingest.json").read_text())
    digests = {d.dataset.digest for d in run_.inputs.dataset_inputs}
    assert digests == {ingest["sha256"][:16]}

    logged_models = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id], output_format="list"
    )
    assert sorted(m.name for m in logged_models) == ["model", "reader"]
    assert {m.source_run_id for m in logged_models} == {run_.info.run_id}
    (logged,) = [m for m in logged_models if m.name == "model"]
    model = mlflow.keras.load_model(f"models:/{logged.model_id}")
    assert (
        model.output.shape[-1]
        == len(json.loads((root / "data/vocabulary.json").read_text())["characters"]) + 1
    )
    info = mlflow.models.get_model_info(f"models:/{logged.model_id}")
    assert info.signature is not None

    artifacts = {a.path for a in client.list_artifacts(run_.info.run_id, "reports")}
    assert {
        "reports/metrics.json",
        "reports/data_report.json",
        "reports/test_predictions.png",
    } <= artifacts
    exported = {a.path for a in client.list_artifacts(run_.info.run_id, "export")}
    assert {
        "export/captcha_network.onnx",
        "export/captcha_network_int8.onnx",
        "export/vocabulary.json",
    } <= exported


def test_first_model_is_registered_and_champion(repo):
    root, env, _ = repo
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("captcha-ocr", "champion")
    assert version.version in (1, "1")
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert float(version.tags["test_exact_match"]) == pytest.approx(metrics["test_exact_match"])
    ingest = json.loads((root / "data/raw/ingest.json").read_text())
    assert version.tags["dataset_sha256"] == ingest["sha256"]
    assert json.loads(version.tags["params"])["train"]["epochs"] == EPOCHS
    # The int8 copy was checked on validation images and shipped (the file is there too).
    assert version.tags["int8"] == "shipped"
    assert "validation captcha" in version.tags["int8.reason"]


def test_predict_cli_reads_with_the_champion(repo):
    root, env, _ = repo
    images = sorted((root / "data/raw/images").rglob("*.png"))[:3]
    out = run(
        ["captcha-ocr", "predict", "--json", "--model", "models:/captcha-ocr@champion"]
        + [str(p) for p in images],
        root,
        env,
    )
    rows = json.loads(out)
    assert [r["file"] for r in rows] == [str(p) for p in images]
    assert all(set(r) == {"file", "text", "confidence"} for r in rows)
    local = json.loads(run(["captcha-ocr", "predict", "--json", *map(str, images)], root, env))
    # The exported ONNX networks read through OpenVINO; the float one exactly as the reader.
    read_by = {}
    for network in ("captcha_network.onnx", "captcha_network_int8.onnx"):
        command = ["captcha-ocr", "predict", "--json", "--model", f"models/export/{network}"]
        onnx = json.loads(run(command + [str(p) for p in images], root, env))
        assert [r["file"] for r in onnx] == [str(p) for p in images], network
        read_by[network] = [r["text"] for r in onnx]
    assert read_by["captcha_network.onnx"] == [r["text"] for r in local]
    # The champion serves the int8 network when export shipped it (a tiny model's
    # noise may read differently in int8), else the float one.
    shipped = json.loads((root / "models/export/registered.json").read_text())["int8"]
    served = "captcha_network_int8.onnx" if shipped["int8"] == "shipped" else "captcha_network.onnx"
    assert [r["text"] for r in rows] == read_by[served]


def test_second_repro_changes_nothing(repo):
    root, env, _ = repo
    output = run(["dvc", "repro"], root, env)
    # Only the check that the store holds the exported reader runs (always_changed).
    assert [s for s in STAGES if f"Running stage '{s}'" in output] == ["register"]
    assert "holds this reader as captcha-ocr v1" in output
    status = run(["dvc", "status"], root, env).split()
    assert status == ["register:", "always", "changed"], status


def test_changing_epochs_reruns_train_and_what_follows_only(repo):
    # Runs last: it leaves the repo trained for EPOCHS - 1 epochs.
    root, env, _ = repo
    params_path = root / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["train"]["epochs"] = EPOCHS - 1
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    output = run(["dvc", "repro"], root, env)
    ran = [stage for stage in STAGES if f"Running stage '{stage}'" in output]
    assert ran == ["train", "evaluate", "export", "register", "promote"]

    # The retrained model is version 2; champion moves only if the gate said so.
    promotion = json.loads((root / "reports/promotion.json").read_text())
    assert promotion["candidate"] == "2" and promotion["before"]["champion"] == "1"
    expected = "2" if promotion["promoted"] else "1"
    assert promotion["after"]["champion"] == expected
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    aliases = mlflow.MlflowClient().get_registered_model("captcha-ocr").aliases
    assert str(aliases["champion"]) == expected
