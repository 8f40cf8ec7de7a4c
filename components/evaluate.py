from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.image import IMAGE


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

    from captcha_ocr.kubeflow.workspace import confusion_matrix, read_json, run_step

    run_step(
        "evaluate",
        {"evaluate": evaluate},
        [raw.path, prepared.path, model.path],
        evaluation.path,
        mlflow_tracking_uri,
    )
    for name, value in read_json(evaluation.path, "reports/metrics.json").items():
        metrics.log_metric(name, value)
    confusion.log_confusion_matrix(*confusion_matrix(evaluation.path))
    shutil.copy(Path(evaluation.path) / "reports/run_report.html", report.path)
