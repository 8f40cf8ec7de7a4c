"""Train's own Keras callbacks: stop on a diverged loss, log each epoch to MLflow.

The recipe's callbacks (reading validation, augmenting, sizing the epochs) are
in ``core/recipe.py``; early stopping and checkpoints in ``checkpoints.py``.
"""

from __future__ import annotations

import math

import keras
import mlflow

from captcha_ocr import paths, tracking
from captcha_ocr.errors import CaptchaOcrError


class TrainingDiverged(CaptchaOcrError):
    pass


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Fail the step at the first epoch whose loss is NaN or infinite, naming it.

    Keras's TerminateOnNaN only ends the fit, after which the diverged weights
    would be saved as the model. Raising here, before the epoch's checkpoint is
    written, fails the step with every old output and the last good checkpoint kept.
    """

    def on_epoch_end(self, epoch, logs=None):
        for key in ("loss", "val_loss"):
            value = float((logs or {}).get(key, 0.0))
            if not math.isfinite(value):
                what = "NaN" if math.isnan(value) else "infinite"
                raise TrainingDiverged(
                    f"{key} became {what} in epoch {epoch + 1}: training diverged and stopped; "
                    f"{paths.TRAINED_MODEL} and {paths.TRAIN_HISTORY} are left as they were. Lower "
                    "train.learning_rate (or raise train.warmup_epochs) and train again"
                )


class MlflowEpochLogger(keras.callbacks.Callback):
    """Every epoch's logs as MLflow metrics, step = epoch (counted from 1)."""

    def __init__(self, log: tracking.RunLog):
        super().__init__()
        self.log = log

    def on_epoch_end(self, epoch, logs=None):
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        metrics["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        self.log(
            f"epoch {epoch + 1} metrics",
            lambda: mlflow.log_metrics(metrics, step=epoch + 1),
            data={"step": epoch + 1, "metrics": metrics},
        )
