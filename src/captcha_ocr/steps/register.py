"""Step 5b, register: make sure the tracking store in use holds the exported reader.

    captcha-ocr register [--params params.yaml]

Export registers the reader in whatever store MLFLOW_TRACKING_URI named when it
ran. DVC cannot see the store: after a change of MLFLOW_TRACKING_URI, or when
DVC restores ``models/export`` from its cache, the store in use may not hold
that version. So this step runs on every ``dvc repro`` (``always_changed``) and
is cheap when nothing is missing: one search for a version tagged with the
reader's sha256. Only a store that does not hold the reader gets it registered
again (with the same tags as export gives, in a new run that names the run it
was trained in). It writes ``models/registry.json``: the store's id, the name
and the version there, and the reader's digest. That file changes only when the
store or the reader does, so promote reruns exactly then.
"""

from __future__ import annotations

import argparse
import json

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from captcha_ocr import paths, store, tracking
from captcha_ocr.config import Params, load_params
from captcha_ocr.files import write_json


def register(params: Params) -> dict[str, str]:
    tracking.use_experiment()
    client = MlflowClient()
    here = store.store_id(client)
    digest = store.file_sha256(paths.READER)
    name = params.export.model_name
    shown = tracking.redact(tracking.tracking_uri())
    version = store.find_version(client, name, digest)
    if version is None:
        version = register_again(client, params)
        print(
            f"register: {shown} did not hold this reader; registered as {name} v{version.version}"
        )
    else:
        print(f"register: {shown} holds this reader as {name} v{version.version}")
    record = {"store": here, "name": name, "version": str(version.version), "reader_sha256": digest}
    write_json(paths.REGISTRY, record)
    return record


def register_again(client: MlflowClient, params: Params) -> ModelVersion:
    """Register ``models/export`` in this store, in the training run if this store has it."""
    # Lazy: the check above must stay cheap, and export imports TensorFlow.
    from captcha_ocr.core.metrics import flat_metrics
    from captcha_ocr.steps.export import publish, recorded_int8_tags

    ref = json.loads(paths.MLFLOW_RUN.read_text())
    runs = client.search_runs(
        [tracking.use_experiment()], f"attributes.run_id = '{ref['run_id']}'", max_results=1
    )
    if runs:
        with mlflow.start_run(run_id=ref["run_id"]):
            return publish(paths.EXPORT_DIR, params, recorded_int8_tags(paths.EXPORT_DIR))
    origin = {
        "captcha_ocr.trained_run": ref["run_id"],
        "captcha_ocr.trained_store": ref["tracking_uri"],
    }
    with mlflow.start_run(run_name="register", tags=origin):
        mlflow.log_metrics(flat_metrics(json.loads(paths.METRICS.read_text())))
        return publish(paths.EXPORT_DIR, params, recorded_int8_tags(paths.EXPORT_DIR))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr register", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    register(load_params(args.params))
