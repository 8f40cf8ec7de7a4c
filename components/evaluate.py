from kfp import dsl
from kfp.dsl import (
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
)

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
    summary: Output[Markdown],
):
    """Score the model on the test split (`captcha-ocr evaluate`).

    ``evaluation`` holds every file the step writes; ``metrics`` and
    ``confusion`` show the test scores and the character confusion in the KFP UI.
    """
    from pathlib import Path

    from captcha_ocr.workspace import confusion_matrix, read_json, run_step, summary_markdown

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
    Path(summary.path).write_text(summary_markdown(evaluation.path))
