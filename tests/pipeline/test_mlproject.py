"""`mlflow run . -e ingest --env-manager local` runs the project's ingest step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow

from captcha_ocr.steps.ingest import sha256_of

from ..conftest import PROJECT_ROOT
from ..helpers import set_source


def test_mlflow_run_entry_point(tmp_path, captcha_zip):
    for name in ("MLproject", "python_env.yaml", "params.yaml", "requirements.txt"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    set_source(tmp_path / "params.yaml", captcha_zip)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    done = subprocess.run(
        [
            "mlflow",
            "run",
            ".",
            "-e",
            "ingest",
            "--env-manager",
            "local",
            "--experiment-name",
            "captcha-ocr",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((tmp_path / "data/raw/ingest.json").read_text())
    assert info["sha256"] == sha256_of(captcha_zip)

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    (run,) = mlflow.search_runs(experiment_names=["captcha-ocr"], output_format="list")
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.project.entryPoint"] == "ingest"
