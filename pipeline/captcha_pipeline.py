"""The captcha-ocr Kubeflow pipeline: defined in ``captcha_ocr.kubeflow.pipeline``.

Kept here so that ``from pipeline.captcha_pipeline import build_pipeline`` works
from the project folder; ``captcha-ocr pipeline compile`` works from anywhere.
"""

from captcha_ocr.kubeflow.pipeline import (
    IMAGE,
    PipelineOptions,
    build_pipeline,
    default_params,
)

__all__ = ["IMAGE", "PipelineOptions", "build_pipeline", "default_params"]
