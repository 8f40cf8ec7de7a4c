"""MLflow wiring: where runs go, and how the pipeline's steps share one run.

One trained model = one MLflow run. The train step opens the run (params,
dataset inputs, per-epoch metrics, the model) and writes its id next to the
model; evaluate and export reopen that run to add test metrics, plots and the
exported reader. So a row in the MLflow UI holds everything about one model,
and a rerun of evaluate alone updates the run of the model it evaluated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow

from captcha_ocr.errors import CaptchaOcrError

EXPERIMENT = "captcha-ocr"


def tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else an sqlite file in the current folder (absolute)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def use_experiment(name: str | None = None) -> str:
    """Point MLflow at our store and experiment; return the experiment id."""
    mlflow.set_tracking_uri(tracking_uri())
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    if mlflow.get_experiment_by_name(name) is None:
        # A local store keeps artifacts in a folder beside it, not wherever the
        # current directory of some later process happens to be.
        location = None
        if tracking_uri().startswith("sqlite:///"):
            db = Path(tracking_uri().removeprefix("sqlite:///"))
            location = (db.parent / "mlartifacts").as_uri()
        mlflow.create_experiment(name, artifact_location=location)
    return mlflow.set_experiment(name).experiment_id


def save_run_ref(path: Path, run: mlflow.ActiveRun) -> None:
    from captcha_ocr.files import write_json

    write_json(
        path,
        {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "tracking_uri": mlflow.get_tracking_uri(),
        },
    )


def resume_run(path: Path) -> mlflow.ActiveRun:
    """Reopen the run that the train step recorded in ``path``."""
    ref = json.loads(Path(path).read_text())
    use_experiment()
    if mlflow.get_tracking_uri() != ref["tracking_uri"]:
        print(
            f"note: the model was trained with tracking URI {ref['tracking_uri']}, "
            f"now logging to {mlflow.get_tracking_uri()}"
        )
    try:
        return mlflow.start_run(run_id=ref["run_id"])
    except mlflow.exceptions.MlflowException as err:
        raise CaptchaOcrError(
            f"{path}: MLflow run {ref['run_id']} not found at {mlflow.get_tracking_uri()}; "
            "set MLFLOW_TRACKING_URI to the store the train step used, or rerun train"
        ) from err
