"""A presigned URL as the data source: its token reaches no file, message or MLflow record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import static_server

TOKEN = "FwoGZXIvYXdzSeCrEt42"


@pytest.fixture
def presigned_url(tmp_path, captcha_zip):
    """The captcha zip served on 127.0.0.1 under a URL with a token in its query."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "captchas.zip").write_bytes(captcha_zip.read_bytes())

    with static_server(root) as url:
        yield f"{url}/captchas.zip?X-Amz-Security-Token={TOKEN}&sig={TOKEN}"


def files_holding(folder: Path, secret: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret in p.read_bytes()]


@pytest.mark.slow
def test_the_token_goes_nowhere(project, presigned_url):
    from mlflow import MlflowClient

    project.set_params("ingest", source=presigned_url)
    output = ""
    for step in ("ingest", "preprocess", "train", "evaluate", "export"):
        done = project.run(step)
        assert done.returncode == 0, f"{step}: {done.stderr[-3000:]}"
        output += done.stdout + done.stderr
    assert TOKEN not in output
    shown = presigned_url.split("?")[0] + "?X-Amz-Security-Token=***&sig=***"
    assert json.loads((project.root / "data/raw/ingest.json").read_text())["source"] == shown

    client = MlflowClient(f"sqlite:///{project.root / 'mlflow.db'}")
    run_id = json.loads((project.root / "models/train/mlflow_run.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.data.params["ingest.source"] == shown
    assert run.data.tags["dataset.source"] == shown
    for dataset in run.inputs.dataset_inputs:
        assert TOKEN not in dataset.dataset.source
    (version,) = client.search_model_versions(f"run_id = '{run_id}'")
    assert json.loads(version.tags["params"])["ingest"]["source"] == shown

    # Nor in any file: outputs, the MLflow store itself, or the run's artifacts.
    params_yaml = project.root / "params.yaml"
    assert files_holding(project.root, TOKEN.encode()) == [str(params_yaml)]
    store = client.get_experiment(run.info.experiment_id).artifact_location
    assert files_holding(Path(store.removeprefix("file://")), TOKEN.encode()) == []
