"""The Kubeflow Pipelines components, one per step: defined in ``captcha_ocr.kubeflow``.

Kept here so that ``from components import train_model`` works from the project
folder, as the pipeline's users expect; the installed package is the source.
"""

from captcha_ocr.kubeflow.components import (
    evaluate_model,
    export_model,
    ingest_data,
    preprocess_data,
    promote_model,
    train_model,
)
from captcha_ocr.kubeflow.image import IMAGE

__all__ = [
    "IMAGE",
    "evaluate_model",
    "export_model",
    "ingest_data",
    "preprocess_data",
    "promote_model",
    "train_model",
]
