"""Step 3, train: fit the CNN + BiRNN + CTC model and log the run to MLflow.

Early stopping watches val_loss and restores the best weights. After every
epoch the model reads the whole validation split, so the history (and MLflow)
shows what users care about, whole captchas read right and characters wrong,
next to the loss.

Faults: after every epoch a checkpoint goes to ``.checkpoints/train/`` (see
``checkpoints.py``), so a killed training resumes there, in the same MLflow
run. A tracking server that goes away does not stop training: the logs it
missed are retried at the end, and what still fails is listed in
``models/train/mlflow_unlogged.json``.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time

import keras
import mlflow
import numpy as np
import pandas as pd

from captcha_ocr import paths, tracking
from captcha_ocr.config import MODEL_SECTIONS, Params, TrainParams, load_params
from captcha_ocr.core.metrics import character_error_rate, exact_match
from captcha_ocr.core.model import PACKAGE, build_training_model, predict_texts
from captcha_ocr.core.vocabulary import Vocabulary
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.files import all_or_nothing, atomic_path, write_with
from captcha_ocr.redaction import public_params
from captcha_ocr.steps.checkpoints import (
    Checkpoint,
    EpochCheckpoint,
    ResumableEarlyStopping,
    TrainState,
    checkpoint_key,
)
from captcha_ocr.steps.preprocess import load_split


@keras.saving.register_keras_serializable(package=PACKAGE)
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak``, then (optionally) cosine decay to zero."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, cosine: bool):
        self.peak, self.warmup_steps = peak, warmup_steps
        self.total_steps, self.cosine = total_steps, cosine

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * (step + 1) / max(1, self.warmup_steps)
        if not self.cosine:
            return keras.ops.minimum(warm, self.peak)
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = keras.ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = 0.5 * self.peak * (1 + keras.ops.cos(math.pi * progress))
        return keras.ops.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "cosine": self.cosine,
        }


class ValidationReading(keras.callbacks.Callback):
    """Adds val_exact_match and val_cer to each epoch's logs."""

    def __init__(self, images: np.ndarray, texts: list[str], vocabulary: Vocabulary):
        super().__init__()
        self.images, self.texts, self.vocabulary = images, texts, vocabulary

    def on_epoch_end(self, epoch, logs=None):
        predicted, _ = predict_texts(self.model, self.images, self.vocabulary)
        logs["val_exact_match"] = exact_match(self.texts, predicted)
        logs["val_cer"] = character_error_rate(self.texts, predicted)


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


def make_optimizer(params: TrainParams, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    schedule = WarmupCosine(
        peak=params.learning_rate,
        warmup_steps=params.warmup_epochs * steps_per_epoch,
        total_steps=params.epochs * steps_per_epoch,
        cosine=params.lr_schedule == "cosine",
    )
    if params.weight_decay:
        return keras.optimizers.AdamW(schedule, weight_decay=params.weight_decay)
    return keras.optimizers.Adam(schedule)


def distribution_strategy(device_type: str = "GPU"):
    """Every GPU the machine has: MirroredStrategy over two or more, else the default.

    ``batch_size`` stays the global batch, split across the replicas.
    """
    import tensorflow as tf

    devices = tf.config.list_logical_devices(device_type)
    if len(devices) < 2:
        return tf.distribute.get_strategy()
    print(f"train: mirroring over {len(devices)} {device_type}s")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def train(params: Params) -> keras.Model:
    p = params.train
    keras.utils.set_random_seed(p.seed)
    vocabulary = Vocabulary.load(paths.VOCABULARY)
    data = {name: load_split(name) for name in ("train", "val")}
    val_texts = pd.read_csv(paths.SPLITS / "val.csv", dtype=str)["label"].tolist()
    height, width = data["train"]["images"].shape[1:]

    data_files = [paths.PREPARED / "train.npz", paths.PREPARED / "val.npz", paths.VOCABULARY]
    checkpoint = Checkpoint(checkpoint_key(p, data_files))
    checkpoint.drop_others()
    state = checkpoint.load() or TrainState()

    steps_per_epoch = math.ceil(len(data["train"]["images"]) / p.batch_size)

    def compiled_model() -> keras.Model:
        model = build_training_model(p, height, width, vocabulary.num_classes)
        model.compile(optimizer=make_optimizer(p, steps_per_epoch), loss=keras.losses.CTC())
        return model

    with distribution_strategy().scope():
        model = compiled_model()
        # Restoring creates the optimizer's variables: under the same strategy.
        if state.epoch and not checkpoint.restore(model, state):
            state, model = TrainState(), compiled_model()
    if state.epoch:
        print(f"train: resuming after epoch {state.epoch} from {checkpoint.folder}")

    run = start_run(state, params, model)
    trained, summary, lost = fit_and_log(model, p, data, val_texts, vocabulary, checkpoint, state)
    if not lost:
        paths.MLFLOW_UNLOGGED.unlink(missing_ok=True)  # an earlier run's, now logged or replaced
    end_run("FINISHED")
    checkpoint.clear()
    print(
        f"train: {summary['epochs_run']} epochs in {summary['train_seconds']:.0f} s, best epoch "
        f"{summary['best_epoch']} (val_loss {summary['best_val_loss']:.3f}, val exact match "
        f"{summary['best_val_exact_match']:.3f}); model in {paths.TRAINED_MODEL}, "
        f"MLflow run {run.info.run_id}"
    )
    return trained


def fit_and_log(
    model: keras.Model,
    p: TrainParams,
    data: dict[str, dict[str, np.ndarray]],
    val_texts: list[str],
    vocabulary: Vocabulary,
    checkpoint: Checkpoint,
    state: TrainState,
) -> tuple[keras.Model, dict, list[str]]:
    """Train, log the summary, history and model to the open MLflow run, write the outputs.

    Returns the trained network, the summary metrics and the logging calls
    that failed even on retry.
    """
    log = tracking.RunLog()
    previous_handler = signal.signal(signal.SIGTERM, sigterm_as_exit)
    try:
        trained, frame, seconds = fit(model, p, data, val_texts, vocabulary, checkpoint, state, log)
        best = int(frame["val_loss"].idxmin())
        summary = {
            "train_seconds": seconds,
            "epochs_run": len(frame),
            "best_epoch": best + 1,
            "best_val_loss": float(frame["val_loss"][best]),
            "best_val_exact_match": float(frame["val_exact_match"][best]),
        }
        log("summary metrics", lambda: mlflow.log_metrics(summary), data=summary)
        # Logged from memory: the file is written below, with the other outputs.
        history = frame.to_csv(index=False)
        history_artifact = f"reports/{paths.TRAIN_HISTORY.name}"
        log(history_artifact, lambda: mlflow.log_text(history, history_artifact))
        log(str(paths.DATA_REPORT), lambda: mlflow.log_artifact(str(paths.DATA_REPORT), "reports"))
        example = data["val"]["images"][:2]
        log("logged model 'model'", lambda: tracking.log_keras_model(trained, example))
        # The model, history, run reference and list of unlogged calls move in
        # together: a training that fails or diverges leaves the old ones.
        with all_or_nothing():
            write_with(paths.TRAIN_HISTORY, lambda path: frame.to_csv(path, index=False))
            with atomic_path(paths.TRAINED_MODEL) as tmp:
                trained.save(tmp)
            tracking.save_run_ref(paths.MLFLOW_RUN, mlflow.active_run())
            lost = log.finish(paths.MLFLOW_UNLOGGED)
    except BaseException as err:
        # Ctrl-C or SIGTERM: KILLED; anything else: FAILED. The checkpoint stays for a rerun.
        killed = isinstance(err, KeyboardInterrupt | SystemExit)
        end_run("KILLED" if killed else "FAILED")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    return trained, summary, lost


def start_run(state: TrainState, params: Params, model: keras.Model) -> mlflow.ActiveRun:
    """Reopen the run of a resumed checkpoint, else start one (train records it at the end).

    Runs left RUNNING by a killed training on this machine are marked FAILED first.
    """
    experiment_id = tracking.use_experiment()
    try:
        tracking.end_orphaned_runs(experiment_id, keep=state.run_id)
        run = None
        if state.run_id:
            try:
                run = mlflow.start_run(run_id=state.run_id)
            except mlflow.exceptions.MlflowException as err:
                print(f"note: cannot reopen MLflow run {state.run_id} ({err}); starting a new one")
        if run is None:
            run = mlflow.start_run()
            state.run_id = run.info.run_id
            tracking.log_dataset_inputs()
            mlflow.log_params(public_params(params).flat(MODEL_SECTIONS))
            mlflow.log_param("model.parameters", model.count_params())
        tracking.tag_owner()
    except mlflow.exceptions.MlflowException as err:
        raise CaptchaOcrError(
            tracking.redact(f"MLflow tracking at {tracking.tracking_uri()} is not usable: {err}")
        ) from None
    return run


def fit(
    model: keras.Model,
    p: TrainParams,
    data: dict[str, dict[str, np.ndarray]],
    val_texts: list[str],
    vocabulary: Vocabulary,
    checkpoint: Checkpoint,
    state: TrainState,
    log: tracking.RunLog,
) -> tuple[keras.Model, pd.DataFrame, float]:
    """Train from ``state.epoch`` on; the network without its optimizer, and the history."""
    early = ResumableEarlyStopping(
        monitor="val_loss",
        patience=p.patience,
        restore_best_weights=True,
        resume=state.early,
        best_weights=checkpoint.best_weights(state) if state.epoch else None,
    )
    started = time.perf_counter()
    model.fit(
        **training_inputs(data["train"]["images"], data["train"]["labels"], p),
        validation_data=(data["val"]["images"][..., None], data["val"]["labels"]),
        # A checkpoint written after early stopping fired has nothing left to train.
        epochs=state.epoch if state.stopped else p.epochs,
        initial_epoch=state.epoch,
        verbose=2,
        callbacks=[
            StopOnNonFiniteLoss(),  # first: a diverged epoch is neither read nor saved
            ValidationReading(data["val"]["images"], val_texts, vocabulary),
            MlflowEpochLogger(log),
            early,  # before the checkpoint, which saves its counters
            EpochCheckpoint(checkpoint, state, early),
        ],
    )
    seconds = time.perf_counter() - started
    return without_optimizer(model), pd.DataFrame(state.rows), seconds


def training_inputs(images: np.ndarray, labels: np.ndarray, p: TrainParams) -> dict:
    """``model.fit``'s training data, reshuffled every epoch.

    With ``augment_squeeze`` the images go through a tf.data pipeline that
    narrows each one at random every epoch; the network itself is untouched,
    so export and serving do not change. (A random layer inside the model
    would follow it into the ONNX file, which has no op for it.)
    """
    if not p.augment_squeeze:
        return {"x": images[..., None], "y": labels, "batch_size": p.batch_size, "shuffle": True}
    import tensorflow as tf

    # Zooming the width out crowds the characters together and keeps the
    # height; "nearest" fills the new margins with the background at the edges.
    squeeze = keras.layers.RandomZoom(
        height_factor=0.0,
        width_factor=(0.0, p.augment_squeeze),
        fill_mode="nearest",
        seed=p.seed,
    )
    batches = (
        tf.data.Dataset.from_tensor_slices((images[..., None].astype("float32"), labels))
        .shuffle(len(images), seed=p.seed, reshuffle_each_iteration=True)
        .batch(p.batch_size)
        .map(lambda x, y: (squeeze(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    return {"x": batches}


def sigterm_as_exit(signum, frame) -> None:
    """SIGTERM (``kill``, a stopped container) unwinds like Ctrl-C, so the run is closed."""
    raise SystemExit(128 + signum)


def end_run(status: str) -> None:
    try:
        mlflow.end_run(status)
    except Exception as err:  # the server is gone; a later training marks the run
        print(
            tracking.redact(f"warning: could not mark the MLflow run {status}: {err}"),
            file=sys.stderr,
        )


def without_optimizer(model: keras.Model) -> keras.Model:
    """The trained network alone: it loads with plain Keras, no schedule class needed.

    A new Model over the same layers is uncompiled (``clone_model`` would copy
    the optimizer too).
    """
    return keras.Model(model.input, model.output, name=model.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr train", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    train(load_params(args.params))
