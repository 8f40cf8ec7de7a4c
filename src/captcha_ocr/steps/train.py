"""Step 3, train: fit the CNN + CTC model (core/recipe.py) and log the run to MLflow.

Early stopping watches val_loss and restores the best weights. After every
epoch the model reads the whole validation split, so the history (and MLflow)
shows what users care about, whole captchas read right and characters wrong,
next to the loss. Patience counts only once validation CER is below 0.5 (the
model has left the CTC plateau); a training that never gets there still ends
well, and says plainly that the model reads nothing yet and what to try.

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import keras
import mlflow
import numpy as np
import pandas as pd

from captcha_ocr import paths, tracking
from captcha_ocr.config import (
    MODEL_SECTIONS,
    Params,
    ParamsError,
    TrainParams,
    check_network_fits,
    load_params,
)
from captcha_ocr.core.images import channels_of, with_channels
from captcha_ocr.core.metrics import PLATEAU_CER, plateau_note
from captcha_ocr.core.model import build_training_model
from captcha_ocr.core.recipe import (
    AugmentOffThePlateau,
    AutoEpochs,
    ValidationReading,
    auto_epochs_end,
    epochs_for,
    longest_auto_run,
    make_optimizer,
    patience_for,
    restarts_for,
    training_inputs,
    without_optimizer,
)
from captcha_ocr.core.vocabulary import ReadingSpec, Vocabulary
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.files import all_or_nothing, atomic_path, read_text_table, write_with
from captcha_ocr.redaction import public_params
from captcha_ocr.steps.checkpoints import (
    Checkpoint,
    EpochCheckpoint,
    ResumableEarlyStopping,
    TrainState,
    checkpoint_key,
)
from captcha_ocr.steps.preprocess import load_split
from captcha_ocr.steps.train_callbacks import MlflowEpochLogger, StopOnNonFiniteLoss


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


@dataclass(frozen=True)
class TrainingData:
    """The prepared train and val splits, and the vocabulary that reads their labels."""

    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    val_texts: list[str]
    vocabulary: Vocabulary

    # What a checkpoint was trained on: a change to any of them starts afresh.
    FILES = (paths.split_arrays("train"), paths.split_arrays("val"), paths.VOCABULARY)

    @classmethod
    def load(cls) -> TrainingData:
        return cls(
            train=load_split("train"),
            val=load_split("val"),
            val_texts=read_text_table(paths.split_csv("val"))["label"].tolist(),
            vocabulary=Vocabulary.load(paths.VOCABULARY),
        )

    @property
    def image_size(self) -> tuple[int, int]:
        height, width = self.train["images"].shape[1:3]
        return height, width

    @property
    def channels(self) -> int:
        return channels_of(self.train["images"])

    def check_fits(self, p: TrainParams) -> None:
        """The network reads these images and labels: checked by config for fixed sizes,
        here for those preprocess read from the data (``auto``)."""
        # The longest training label, as preprocess read it: the label arrays are
        # padded to the longest label of any split, and val or test must not decide.
        spec = ReadingSpec.load(paths.VOCABULARY)
        longest = spec.max_label_length if spec else self.train["labels"].shape[1]
        try:
            check_network_fits(p, *self.image_size, longest)
        except ValueError as err:
            raise ParamsError(f"{paths.VOCABULARY} (what preprocess chose): {err}") from None

    def resolved_params(self) -> dict[str, object]:
        """What preprocess's auto params became, as MLflow params ``data.*``."""
        spec = ReadingSpec.load(paths.VOCABULARY)
        found = asdict(spec) if spec else {}
        return {f"data.{k}": v for k, v in found.items()} | {
            "data.charset": self.vocabulary.characters
        }


@dataclass(frozen=True)
class Fitted:
    """A finished training: the network without its optimizer, and its history."""

    model: keras.Model
    history: pd.DataFrame
    seconds: float

    def summary(self) -> dict[str, float]:
        best = int(self.history["val_loss"].idxmin())
        return {
            "train_seconds": self.seconds,
            "epochs_run": len(self.history),
            "best_epoch": best + 1,
            "best_val_loss": float(self.history["val_loss"][best]),
            "best_val_exact_match": float(self.history["val_exact_match"][best]),
            "left_plateau": float(self.plateau_note() is None),
        }

    def plateau_note(self) -> str | None:
        """What to say when validation CER never went below 0.5 (None when it did)."""
        return plateau_note(self.history["val_cer"].tolist())

    def plateau_tag(self) -> str:
        """The run's ``plateau`` tag: the note, or the epoch the model left the plateau."""
        below = self.history.index[self.history["val_cer"] < PLATEAU_CER]
        note = self.plateau_note()
        return note if note else f"left in epoch {int(self.history['epoch'][below[0]])}"


def train(params: Params) -> keras.Model:
    p = params.train
    keras.utils.set_random_seed(p.seed)
    data = TrainingData.load()
    data.check_fits(p)
    checkpoint = Checkpoint(checkpoint_key(p, TrainingData.FILES))
    checkpoint.drop_others()
    state = checkpoint.load() or TrainState()
    model, state = build_or_resume(p, data, checkpoint, state)
    with tracked_run(state, params, model, data.resolved_params()) as log:
        fitted = fit(model, p, data, Resume(checkpoint, state), log)
        save_and_log(fitted, data, log)
    checkpoint.clear()
    summary = fitted.summary()
    note = fitted.plateau_note()
    if note:
        # Not a failure: the pipeline goes on and every later step reports it.
        print(f"train: WARNING: {note}")
    print(
        f"train: {summary['epochs_run']} epochs in {summary['train_seconds']:.0f} s, best epoch "
        f"{summary['best_epoch']} (val_loss {summary['best_val_loss']:.3f}, val exact match "
        f"{summary['best_val_exact_match']:.3f}); model in {paths.TRAINED_MODEL}, "
        f"MLflow run {state.run_id}"
    )
    return fitted.model


def build_or_resume(
    p: TrainParams, data: TrainingData, checkpoint: Checkpoint, state: TrainState
) -> tuple[keras.Model, TrainState]:
    """A compiled network, with the checkpoint's weights and optimizer when there is one."""
    steps_per_epoch = math.ceil(len(data.train["images"]) / p.batch_size)

    def compiled_model() -> keras.Model:
        model = build_training_model(
            p, *data.image_size, data.vocabulary.num_classes, channels=data.channels
        )
        model.compile(optimizer=make_optimizer(p, steps_per_epoch), loss=keras.losses.CTC())
        return model

    with distribution_strategy().scope():
        model = compiled_model()
        # Restoring creates the optimizer's variables: under the same strategy.
        if state.epoch and not checkpoint.restore(model, state):
            state, model = TrainState(), compiled_model()
    if state.epoch:
        print(f"train: resuming after epoch {state.epoch} from {checkpoint.folder}")
    return model, state


@contextmanager
def tracked_run(
    state: TrainState, params: Params, model: keras.Model, resolved: dict[str, object]
) -> Iterator[tracking.RunLog]:
    """The MLflow run of this training, from start (or reopening) to its end status.

    The run ends FINISHED when the block does, KILLED on Ctrl-C or SIGTERM,
    FAILED on anything else; the checkpoint stays for a rerun.
    """
    start_run(state, params, model, resolved)
    previous_handler = signal.signal(signal.SIGTERM, sigterm_as_exit)
    try:
        yield tracking.RunLog()
    except BaseException as err:
        killed = isinstance(err, KeyboardInterrupt | SystemExit)
        end_run("KILLED" if killed else "FAILED")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    end_run("FINISHED")


def save_and_log(fitted: Fitted, data: TrainingData, log: tracking.RunLog) -> None:
    """Log the summary, history and model to the run, then write the step's outputs."""
    summary = fitted.summary()
    log("summary metrics", lambda: mlflow.log_metrics(summary), data=summary)
    plateau = fitted.plateau_tag()
    log("plateau tag", lambda: mlflow.set_tag("plateau", plateau), data={"plateau": plateau})
    # Logged from memory: the file is written below, with the other outputs.
    history = fitted.history.to_csv(index=False)
    history_artifact = f"reports/{paths.TRAIN_HISTORY.name}"
    log(history_artifact, lambda: mlflow.log_text(history, history_artifact))
    log(str(paths.DATA_REPORT), lambda: mlflow.log_artifact(str(paths.DATA_REPORT), "reports"))
    example = data.val["images"][:2]
    log("logged model 'model'", lambda: tracking.log_keras_model(fitted.model, example))
    # The model, history, run reference and list of unlogged calls move in
    # together: a training that fails or diverges leaves the old ones.
    with all_or_nothing():
        write_with(paths.TRAIN_HISTORY, lambda path: fitted.history.to_csv(path, index=False))
        with atomic_path(paths.TRAINED_MODEL) as tmp:
            fitted.model.save(tmp)
        tracking.save_run_ref(paths.MLFLOW_RUN, mlflow.active_run())
        lost = log.finish(paths.MLFLOW_UNLOGGED)
    if not lost:
        paths.MLFLOW_UNLOGGED.unlink(missing_ok=True)  # an earlier run's, now logged or replaced


def start_run(
    state: TrainState, params: Params, model: keras.Model, resolved: dict[str, object]
) -> None:
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
            # The auto params as preprocess resolved them: what the model was made for.
            mlflow.log_params(resolved)
            mlflow.log_param("model.parameters", model.count_params())
        tracking.tag_owner()
    except mlflow.exceptions.MlflowException as err:
        raise CaptchaOcrError(
            tracking.redact(f"MLflow tracking at {tracking.tracking_uri()} is not usable: {err}")
        ) from None


@dataclass
class Resume:
    """Where a training stands: its checkpoint folder and the state saved there."""

    checkpoint: Checkpoint
    state: TrainState


def fit(
    model: keras.Model, p: TrainParams, data: TrainingData, resume: Resume, log: tracking.RunLog
) -> Fitted:
    """Train from ``resume.state.epoch`` on, checkpointing and logging every epoch."""
    state = resume.state
    steps_per_epoch = math.ceil(len(data.train["images"]) / p.batch_size)
    epochs = epochs_for(p, steps_per_epoch)
    patience = patience_for(p, epochs)
    sized = {"train.epochs_budget": epochs, "train.patience_used": patience}
    log("epochs and patience", lambda: mlflow.log_params(sized), data=sized)
    auto = p.epochs == "auto"
    more = (
        f" (more if the model leaves the plateau late, or starts again on it: "
        f"up to {longest_auto_run(epochs)})"
    )
    print(
        f"train: {epochs} epochs of {steps_per_epoch} steps (train.epochs: {p.epochs})"
        f"{more if auto else ''}, patience {patience} (train.patience: {p.patience}) "
        f"once validation CER < {PLATEAU_CER}"
    )
    state.early["left_epoch"] = state.left_epoch()  # restored into early stopping below
    # Fit's epochs are the most it may train; an auto run ends where AutoEpochs says.
    last = longest_auto_run(epochs) if auto else epochs
    if state.stopped or (
        auto and state.epoch >= auto_epochs_end(epochs, state.epoch, state.early["left_epoch"])
    ):
        last = state.epoch  # a checkpoint written at the end has nothing left to train
    early = ResumableEarlyStopping(
        monitor="val_loss",
        patience=patience,
        restore_best_weights=True,
        resume=state.early,
        best_weights=resume.checkpoint.best_weights(state) if state.epoch else None,
    )

    def fresh(attempt: int) -> list[np.ndarray]:
        """New weights for an auto run's next attempt, drawn from its own seed."""
        seed = p.seed + 1000 * attempt
        print(
            f"train: still on the plateau after epoch {attempt * epochs}: starting again from "
            f"fresh weights (train.seed {p.seed} + {1000 * attempt}), attempt {attempt + 1} "
            f"of {restarts_for(epochs) + 1}"
        )
        tags = {"restarts": str(attempt)}
        log("restarts tag", lambda: mlflow.set_tags(tags), data=tags)
        keras.utils.set_random_seed(seed)
        return build_training_model(
            p, *data.image_size, data.vocabulary.num_classes, channels=data.channels
        ).get_weights()

    import tensorflow as tf

    # Augmentation starts once the model reads (a resumed run that did: at once).
    strength = tf.Variable(1.0 if state.early.get("left_plateau") else 0.0, trainable=False)
    started = time.perf_counter()
    model.fit(
        **training_inputs(data.train["images"], data.train["labels"], p, strength),
        # Validation images as they are: augmentation is for training images only.
        validation_data=(with_channels(data.val["images"]), data.val["labels"]),
        epochs=last,
        initial_epoch=state.epoch,
        verbose=2,
        callbacks=[
            StopOnNonFiniteLoss(),  # first: a diverged epoch is neither read nor saved
            ValidationReading(data.val["images"], data.val_texts, data.vocabulary),
            AugmentOffThePlateau(strength),
            MlflowEpochLogger(log),
            early,  # before the checkpoint, which saves its counters
            *([AutoEpochs(epochs, steps_per_epoch, early, state.epoch, fresh)] if auto else []),
            EpochCheckpoint(resume.checkpoint, state, early),
        ],
    )
    seconds = time.perf_counter() - started
    return Fitted(without_optimizer(model), pd.DataFrame(state.rows), seconds)


def sigterm_as_exit(signum, _frame) -> None:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr train", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    train(load_params(args.params))
