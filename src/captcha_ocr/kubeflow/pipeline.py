"""The captcha-ocr pipeline for Kubeflow Pipelines (KFP v2).

The same steps as ``dvc.yaml``, from the same code: ingest -> preprocess ->
train -> evaluate -> export (register) -> promote. Each params.yaml
section is one pipeline parameter (a dict), its default read from params.yaml
when the pipeline is built, so what you compile is what ``dvc repro`` would run.

Settings that shape the pods rather than the model (image, resources,
accelerators, the secret with MLflow credentials) are ``PipelineOptions``,
fixed at compile time.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kfp import dsl

from captcha_ocr.kubeflow.components import (
    data_cache_key,
    evaluate_model,
    export_model,
    ingest_data,
    preprocess_data,
    promote_model,
    train_model,
)
from captcha_ocr.kubeflow.image import IMAGE
from captcha_ocr.registry import git_commit as current_commit

__all__ = ["IMAGE", "PipelineOptions", "build_pipeline", "default_params"]

PIPELINE_NAME = "captcha-ocr"
SECTIONS = ("ingest", "preprocess", "train", "evaluate", "export", "promote")
# (CPU, memory) requests of the light steps; train's come from PipelineOptions.
# Evaluate and export load TensorFlow and the whole test split.
STEP_RESOURCES = {
    "ingest": ("1", "1G"),
    "preprocess": ("1", "2G"),
    "evaluate": ("1", "2G"),
    "export": ("1", "3G"),
    "promote": ("0.5", "1G"),
}


@dataclass(frozen=True)
class PipelineOptions:
    params_path: Path = Path("params.yaml")
    mlflow_tracking_uri: str = ""
    train_cpu: str = "2"
    train_memory: str = "4G"
    accelerator_type: str | None = None  # e.g. "nvidia.com/gpu"
    accelerator_count: int = 1
    # A Kubernetes secret with keys `username` and `password` for MLflow's basic
    # auth; mounted as MLFLOW_TRACKING_USERNAME / _PASSWORD, never a parameter.
    mlflow_secret: str | None = None
    # A Kubernetes secret whose key `source` is the data URL (a presigned URL is a
    # credential); mounted in the ingest step as CAPTCHA_OCR_SECRET_SOURCE, never a parameter.
    source_secret: str | None = None
    # A Kubernetes secret with object-store credentials (keys AWS_ACCESS_KEY_ID,
    # AWS_SECRET_ACCESS_KEY): for ingest's s3:// source (or a DVC repo's S3
    # remote), and for every pod that logs to MLflow, which then writes artifacts
    # to the bucket itself when the server does not proxy them.
    storage_secret: str | None = None
    # The object store's endpoint (MinIO, Ceph, ...; none for AWS S3), set as
    # AWS_ENDPOINT_URL and MLFLOW_S3_ENDPOINT_URL in the same pods.
    storage_endpoint: str | None = None
    ingest_retries: int = 3
    # `section.key=value` overrides of params.yaml for the compiled defaults.
    param_overrides: tuple[str, ...] = ()


def default_params(path: Path, overrides: Sequence[str] = ()) -> dict[str, dict]:
    """params.yaml with ``overrides``, validated, one dict per section; nulls dropped
    (KFP has no null)."""
    from captcha_ocr.config import load_params
    from captcha_ocr.kubeflow.cli import apply_overrides

    params = apply_overrides(load_params(path).model_dump(mode="json"), list(overrides))
    return {
        section: {k: v for k, v in params[section].items() if v is not None} for section in SECTIONS
    }


def build_pipeline(options: PipelineOptions = PipelineOptions()):
    """The pipeline function, with defaults from ``options.params_path``."""
    defaults = default_params(options.params_path, options.param_overrides)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Train, evaluate, register and promote a captcha reader (CNN + CTC).",
    )
    def captcha_ocr_pipeline(
        ingest: dict = defaults["ingest"],
        preprocess: dict = defaults["preprocess"],
        train: dict = defaults["train"],
        evaluate: dict = defaults["evaluate"],
        export: dict = defaults["export"],
        promote: dict = defaults["promote"],
        mlflow_tracking_uri: str = options.mlflow_tracking_uri,
        git_commit: str = current_commit(),
    ):
        # Cached only by a pinned digest: an unpinned source gets a new key each run.
        key = data_cache_key(ingest=ingest)
        key.set_caching_options(False)
        key.set_display_name("data cache key")
        raw = ingest_data(ingest=ingest, cache_key=key.output)
        # Downloads fail for passing reasons; the step itself never keeps a partial zip.
        raw.set_retry(num_retries=options.ingest_retries, backoff_duration="30s")
        data = {"raw": raw.outputs["raw"]}

        prepared = preprocess_data(preprocess=preprocess, **data)
        data["prepared"] = prepared.outputs["prepared"]

        trained = train_model(
            ingest=ingest,
            preprocess=preprocess,
            train=train,
            mlflow_tracking_uri=mlflow_tracking_uri,
            **data,
        )
        trained.set_cpu_request(options.train_cpu).set_memory_request(options.train_memory)
        if options.accelerator_type:
            trained.set_accelerator_type(options.accelerator_type)
            trained.set_accelerator_limit(options.accelerator_count)

        scored = evaluate_model(
            evaluate=evaluate,
            mlflow_tracking_uri=mlflow_tracking_uri,
            model=trained.outputs["model"],
            **data,
        )

        # Export tags the registered version with every section.
        every_section = dict(
            ingest=ingest,
            preprocess=preprocess,
            train=train,
            evaluate=evaluate,
            export=export,
            promote=promote,
        )
        exported = export_model(
            **every_section,
            mlflow_tracking_uri=mlflow_tracking_uri,
            git_commit=git_commit,
            model=trained.outputs["model"],
            evaluation=scored.outputs["evaluation"],
            **data,
        )
        # Promote always runs, as under DVC: the registry's gate (promote.min_exact_match,
        # then beat the champion) makes the version champion or challenger.
        promoted = promote_model(
            promote=promote,
            export=export,
            mlflow_tracking_uri=mlflow_tracking_uri,
            version=exported.outputs["Output"],
            prepared=data["prepared"],
        )

        # Registering and promoting change the registry: never skip them from cache.
        for task in (raw, prepared, trained, scored):
            task.set_caching_options(True)
        for task in (exported, promoted):
            task.set_caching_options(False)
        if options.mlflow_secret:
            add_mlflow_credentials((trained, scored, exported, promoted), options.mlflow_secret)
        if options.source_secret:
            add_source_secret(raw, options.source_secret)
        # Every pod that reads the bucket (ingest) or may write MLflow artifacts to it.
        storage_tasks = (raw, trained, scored, exported, promoted)
        if options.storage_secret:
            for task in storage_tasks:
                add_storage_credentials(task, options.storage_secret)
        if options.storage_endpoint:
            for task in storage_tasks:
                add_storage_endpoint(task, options.storage_endpoint)
        names = ("ingest", "preprocess", "train", "evaluate", "export", "promote")
        tasks = (raw, prepared, trained, scored, exported, promoted)
        for task, name in zip(tasks, names, strict=True):
            task.set_display_name(name)
            if name in STEP_RESOURCES:
                cpu, memory = STEP_RESOURCES[name]
                task.set_cpu_request(cpu).set_memory_request(memory)

    return captcha_ocr_pipeline


def add_mlflow_credentials(tasks, secret_name: str) -> None:
    """MLflow basic-auth credentials from a Kubernetes secret, as environment variables."""
    from kfp import kubernetes

    for task in tasks:
        kubernetes.use_secret_as_env(
            task,
            secret_name=secret_name,
            secret_key_to_env={
                "username": "MLFLOW_TRACKING_USERNAME",
                "password": "MLFLOW_TRACKING_PASSWORD",
            },
        )


def add_storage_credentials(task, secret_name: str) -> None:
    """S3 credentials from a Kubernetes secret, as the pod's AWS_* variables."""
    from kfp import kubernetes

    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    kubernetes.use_secret_as_env(
        task, secret_name=secret_name, secret_key_to_env={k: k for k in keys}
    )


def add_storage_endpoint(task, endpoint: str) -> None:
    """The object store's URL, for DVC's and boto3's S3 clients (AWS_ENDPOINT_URL) and
    MLflow's (MLFLOW_S3_ENDPOINT_URL)."""
    for name in ("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        task.set_env_variable(name, endpoint)


def add_source_secret(task, secret_name: str) -> None:
    """The data source from a Kubernetes secret, for the ingest component to read."""
    from kfp import kubernetes

    from captcha_ocr.kubeflow.workspace import SECRET_SOURCE_ENV

    kubernetes.use_secret_as_env(
        task, secret_name=secret_name, secret_key_to_env={"source": SECRET_SOURCE_ENV}
    )
