"""Kubeflow Pipelines (KFP v2) components: one per pipeline step.

Each component is a thin wrapper: it hands its input artifacts and params to
``captcha_ocr.workspace.run_step``, which runs the same ``captcha-ocr STEP``
command that ``dvc.yaml`` runs, and turns the step's files into typed KFP
artifacts. KFP ships only a component function's source to the pod, so each
function imports the project inside its body; the image has it installed.
"""

from components.evaluate import evaluate_model
from components.export import export_model
from components.ingest import ingest_data
from components.preprocess import preprocess_data
from components.promote import evaluation_gate, promote_model
from components.train import train_model

__all__ = [
    "evaluate_model",
    "evaluation_gate",
    "export_model",
    "ingest_data",
    "preprocess_data",
    "promote_model",
    "train_model",
]
