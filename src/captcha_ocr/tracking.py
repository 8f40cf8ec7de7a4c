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
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import mlflow
from mlflow.data.pandas_dataset import from_pandas

from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.redaction import redact_source

EXPERIMENT = "captcha-ocr"


def tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else an sqlite file in the current folder (absolute)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def use_existing_store() -> None:
    """Point MLflow at the store to read a model from it; create nothing.

    Without $MLFLOW_TRACKING_URI the store is ./mlflow.db, and opening a missing
    sqlite file would create an empty store in whatever folder this runs in.
    """
    default = Path.cwd() / "mlflow.db"
    if not os.environ.get("MLFLOW_TRACKING_URI") and not default.is_file():
        raise CaptchaOcrError(
            f"no MLflow store here ({default}) and MLFLOW_TRACKING_URI is not set: run this "
            "in the project folder, set MLFLOW_TRACKING_URI, or name a reader file with --model"
        )
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    mlflow.set_tracking_uri(tracking_uri())


def use_experiment(name: str | None = None) -> str:
    """Point MLflow at our store and experiment; return the experiment id.

    An unreachable server or refused credentials fail here, with the URI
    (credentials removed) in the message.
    """
    # A lost tracking server should cost a step seconds, not MLflow's default
    # 4 minutes of retries; the user's own settings win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    mlflow.set_tracking_uri(tracking_uri())
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    try:
        if mlflow.get_experiment_by_name(name) is None:
            # A local store keeps artifacts in a folder beside it, not wherever the
            # current directory of some later process happens to be.
            location = None
            if tracking_uri().startswith("sqlite:///"):
                db = Path(tracking_uri().removeprefix("sqlite:///"))
                location = (db.parent / "mlartifacts").as_uri()
            mlflow.create_experiment(name, artifact_location=location)
        return mlflow.set_experiment(name).experiment_id
    except mlflow.exceptions.MlflowException as err:
        raise CaptchaOcrError(
            redact(f"MLflow tracking at {tracking_uri()} is not usable: {err.message[:500]}")
        ) from None


# Credentials out of every URL in a text, for files and messages: MLflow's own
# errors quote the URL they failed on.
redact = redact_source


# Split -> MLflow input context. Train logs the first two; evaluate, which alone
# reads the test split, logs the test one.
TRAINING_SPLITS = {"train": "training", "val": "validation"}
TEST_SPLITS = {"test": "testing"}


def log_dataset_inputs(splits: dict[str, str] = TRAINING_SPLITS) -> None:
    """Each split as an MLflow dataset input of the active run, tied to the zip's sha256."""
    import warnings

    from mlflow.data.http_dataset_source import HTTPDatasetSource

    from captcha_ocr import paths
    from captcha_ocr.files import read_text_table

    info = json.loads(paths.INGEST_INFO.read_text())
    # An ingest.json written before sources were redacted may still hold a token.
    shown = redact_source(info["source"])
    source = HTTPDatasetSource(shown) if shown.startswith(("http://", "https://")) else shown
    for name, context in splits.items():
        frame = read_text_table(paths.SPLITS / f"{name}.csv")
        with warnings.catch_warnings():
            # A local path matches two of MLflow's source types; either is right.
            warnings.simplefilter("ignore", UserWarning)
            dataset = from_pandas(
                frame, source=source, name=f"captcha_images_v2-{name}", digest=info["sha256"][:16]
            )
        mlflow.log_input(dataset, context=context)
    mlflow.set_tags({"dataset.sha256": info["sha256"], "dataset.source": shown})


def log_keras_model(model, example) -> None:
    """The trained network as the run's logged model ``model``, with a signature.

    ``example``: a few (N, H, W) or (N, H, W, C) uint8 images.
    """
    import keras
    import tensorflow as tf
    from mlflow.models import infer_signature

    from captcha_ocr.core.images import with_channels

    example = with_channels(example).astype("float32")
    signature = infer_signature(example, model.predict(example, verbose=0))
    mlflow.keras.log_model(
        model,
        name="model",
        signature=signature,
        # Listing them skips MLflow's slow dependency probe (it reloads the model).
        pip_requirements=[f"tensorflow-cpu=={tf.__version__}", f"keras=={keras.__version__}"],
    )


def save_run_ref(path: Path, run: mlflow.ActiveRun | None) -> None:
    from captcha_ocr.files import write_json

    if run is None:
        raise CaptchaOcrError(f"no MLflow run is open to record in {path}")
    write_json(
        path,
        {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            # Credentials go by environment (MLFLOW_TRACKING_USERNAME/PASSWORD), never in files.
            "tracking_uri": redact(mlflow.get_tracking_uri()),
        },
    )


# Tags that let a later training tell a killed run from one still in progress.
HOST_TAG, PID_TAG = "captcha_ocr.host", "captcha_ocr.pid"


def tag_owner() -> None:
    mlflow.set_tags({HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())})


def end_orphaned_runs(experiment_id: str, keep: str | None = None) -> list[str]:
    """Mark FAILED the RUNNING runs of this host whose process is gone (killed).

    ``keep`` is a run about to be resumed. Runs of other hosts are left alone:
    their processes cannot be checked from here.
    """
    client = mlflow.MlflowClient()
    ended = []
    runs = client.search_runs(
        [experiment_id],
        f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{socket.gethostname()}'",
    )
    for run in runs:
        pid = int(run.data.tags.get(PID_TAG, "0"))
        if run.info.run_id == keep or pid == os.getpid() or _alive(pid):
            continue
        client.set_tag(run.info.run_id, "captcha_ocr.ended", f"process {pid} gone (killed?)")
        client.set_terminated(run.info.run_id, "FAILED")
        ended.append(run.info.run_id)
    return ended


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLog:
    """MLflow logging that never stops a training that is going well.

    The first failed call (the tracking server went away) is reported once;
    from then on calls are kept instead of made. ``finish`` tries the kept
    calls once more and writes what still failed to a JSON file, naming it.
    """

    def __init__(self) -> None:
        self.kept: list[tuple[str, Callable[[], object], object]] = []
        self.error: str | None = None

    def __call__(self, what: str, call: Callable[[], object], data: object = None) -> None:
        """Make ``call`` (described by ``what``); ``data`` is what it logs, kept if it fails."""
        if self.error is None:
            try:
                call()
                return
            except Exception as err:  # any client or network error: keep training
                self.error = redact(f"{type(err).__name__}: {err}")
                print(
                    f"warning: MLflow logging failed ({what}): {self.error}; training goes on, "
                    "the logs are kept and retried at the end",
                    file=sys.stderr,
                )
                # Every later call would wait out MLflow's full retry back-off again.
                os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        self.kept.append((what, call, data))

    def finish(self, unlogged_path: Path) -> list[str]:
        """Retry the kept calls once; list the ones that failed again in ``unlogged_path``."""
        from captcha_ocr.files import write_json

        lost = []
        for what, call, data in self.kept:
            try:
                call()
            except Exception as err:
                item = {"what": what, "error": redact(f"{type(err).__name__}: {err}")}
                lost.append(item | ({"data": data} if data is not None else {}))
        if lost:
            write_json(unlogged_path, {"tracking_uri": redact(tracking_uri()), "lost": lost})
            print(
                f"warning: {len(lost)} MLflow calls failed and were not logged "
                f"(first: {lost[0]['what']}); listed in {unlogged_path}",
                file=sys.stderr,
            )
        elif self.kept:
            print(f"MLflow: the {len(self.kept)} kept logging calls went through on retry")
        return [str(item["what"]) for item in lost]


def resume_run(path: Path) -> mlflow.ActiveRun:
    """Reopen the run that the train step recorded in ``path``."""
    ref = json.loads(Path(path).read_text())
    use_experiment()
    if redact(mlflow.get_tracking_uri()) != ref["tracking_uri"]:
        print(
            f"note: the model was trained with tracking URI {ref['tracking_uri']}, "
            f"now logging to {redact(mlflow.get_tracking_uri())}"
        )
    try:
        return mlflow.start_run(run_id=ref["run_id"])
    except mlflow.exceptions.MlflowException as err:
        raise CaptchaOcrError(
            f"{path}: MLflow run {ref['run_id']} not found at "
            f"{redact(mlflow.get_tracking_uri())}; "
            "set MLFLOW_TRACKING_URI to the store the train step used, or rerun train"
        ) from err
