"""Kubeflow Pipelines (KFP v2) components: one per pipeline step.

Each component is a thin wrapper: it hands its input artifacts and params to
``captcha_ocr.kubeflow.workspace.run_step``, which runs the same ``captcha-ocr
STEP`` command that ``dvc.yaml`` runs, and turns the step's files into typed KFP
artifacts. KFP ships only a component function's source to the pod, so each
function imports the project inside its body; the image has it installed.
"""

from kfp import dsl
from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Metrics,
    Model,
    Output,
)

from captcha_ocr.kubeflow.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def data_cache_key(ingest: dict) -> str:
    """What ingest is cached by: the pinned ``ingest.sha256``, else a new value each run.

    KFP caches a step by its inputs. The source string says nothing of the bytes
    behind it (a new zip at the same URL), so only a pinned digest may reuse a
    cached ingest; an unpinned source is fetched on every run.
    """
    import uuid

    digest = ingest.get("sha256")
    return f"sha256:{str(digest).lower()}" if digest else f"unpinned:{uuid.uuid4()}"


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest_data(ingest: dict, cache_key: str, raw: Output[Dataset]):  # noqa: ARG001 (KFP caches by it)
    """Fetch the captcha zip, record its sha256 and unpack it safely (`captcha-ocr ingest`).

    ``cache_key`` (from ``data_cache_key``) is unused here: it is what KFP's
    cache compares, beside ``ingest``.
    """
    from captcha_ocr import paths
    from captcha_ocr.kubeflow.workspace import read_json, run_step, with_secret_source

    run_step("ingest", {"ingest": with_secret_source(ingest)}, inputs=[], output=raw.path)
    raw.metadata.update(read_json(raw.path, paths.INGEST_INFO))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def preprocess_data(preprocess: dict, raw: Input[Dataset], prepared: Output[Dataset]):
    """Validate every image, report rejects, split and write arrays (`captcha-ocr preprocess`)."""
    from captcha_ocr import paths
    from captcha_ocr.kubeflow.workspace import read_json, run_step

    run_step("preprocess", {"preprocess": preprocess}, inputs=[raw.path], output=prepared.path)
    report = read_json(prepared.path, paths.DATA_REPORT)
    prepared.metadata.update({k: v for k, v in report.items() if isinstance(v, int | float | str)})


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_model(
    ingest: dict,
    preprocess: dict,
    train: dict,
    mlflow_tracking_uri: str,
    raw: Input[Dataset],
    prepared: Input[Dataset],
    model: Output[Model],
):
    """Train the CNN + CTC captcha reader; open the MLflow run (`captcha-ocr train`).

    Takes the sections the model is made from; the MLflow run logs them as params.
    Uses every GPU the pod is given (MirroredStrategy when there are several).
    """
    from captcha_ocr import paths
    from captcha_ocr.kubeflow.workspace import read_json, run_step

    params = {"ingest": ingest, "preprocess": preprocess, "train": train}
    run_step("train", params, [raw.path, prepared.path], model.path, mlflow_tracking_uri)
    model.metadata.update(read_json(model.path, paths.MLFLOW_RUN))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate_model(
    evaluate: dict,
    mlflow_tracking_uri: str,
    raw: Input[Dataset],
    prepared: Input[Dataset],
    model: Input[Model],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[HTML],
):
    """Score the model on the test split (`captcha-ocr evaluate`).

    ``evaluation`` holds every file the step writes; ``metrics``, ``confusion``
    and ``report`` (the self-contained run report) show them in the KFP UI.
    """
    import shutil
    from pathlib import Path

    from captcha_ocr import paths
    from captcha_ocr.kubeflow.workspace import confusion_matrix, read_json, run_step

    run_step(
        "evaluate",
        {"evaluate": evaluate},
        [raw.path, prepared.path, model.path],
        evaluation.path,
        mlflow_tracking_uri,
    )
    from captcha_ocr.core.metrics import flat_metrics

    for name, value in flat_metrics(read_json(evaluation.path, paths.METRICS)).items():
        metrics.log_metric(name, value)
    confusion.log_confusion_matrix(*confusion_matrix(evaluation.path))
    shutil.copy(Path(evaluation.path) / paths.RUN_REPORT, report.path)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def export_model(
    ingest: dict,
    preprocess: dict,
    train: dict,
    evaluate: dict,
    export: dict,
    promote: dict,
    mlflow_tracking_uri: str,
    git_commit: str,
    raw: Input[Dataset],
    prepared: Input[Dataset],
    model: Input[Model],
    evaluation: Input[Artifact],
    reader: Output[Model],
) -> str:
    """Save the reader (.keras, SavedModel, ONNX) and register it (`captcha-ocr export`).

    It takes every params.yaml section: the registered version is tagged with
    all of them. Returns the registered version number.
    """
    from captcha_ocr import paths
    from captcha_ocr.kubeflow.workspace import environment, read_json, run_step

    params = dict(
        ingest=ingest,
        preprocess=preprocess,
        train=train,
        evaluate=evaluate,
        export=export,
        promote=promote,
    )

    with environment(CAPTCHA_OCR_GIT_COMMIT=git_commit):
        run_step(
            "export",
            params,
            [raw.path, prepared.path, model.path, evaluation.path],
            reader.path,
            mlflow_tracking_uri,
        )
    registered = read_json(reader.path, paths.REGISTERED)
    reader.metadata.update(registered)
    return registered["version"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def promote_model(
    promote: dict,
    export: dict,
    mlflow_tracking_uri: str,
    version: str,
    prepared: Input[Dataset],
    promotion: Output[Artifact],
):
    """Move `champion` to this version if it beats the champion (`captcha-ocr promote`).

    ``prepared`` holds the candidate's test split: a champion scored on another
    one is scored on it before the gate compares them.
    """
    from captcha_ocr import paths
    from captcha_ocr.kubeflow.workspace import read_json, run_step

    run_step(
        "promote",
        {"promote": promote, "export": export},
        [prepared.path],
        promotion.path,
        mlflow_tracking_uri,
        extra_args=["--version", version],
    )
    promotion.metadata.update(read_json(promotion.path, paths.PROMOTION))
