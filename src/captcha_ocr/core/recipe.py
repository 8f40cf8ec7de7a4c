"""The training recipe: optimizer and its schedule, the input feed, reading while training.

Plain Keras, no files and no MLflow: the train step and the benchmarks build
the same training from these.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from captcha_ocr.config import TrainParams
from captcha_ocr.core.augment import augment_batch, augments
from captcha_ocr.core.images import with_channels
from captcha_ocr.core.metrics import PLATEAU_CER, character_error_rate, exact_match
from captcha_ocr.core.model import PACKAGE, predict_texts
from captcha_ocr.core.vocabulary import Vocabulary


@keras.saving.register_keras_serializable(package=PACKAGE)
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak``, then (optionally) cosine decay to zero."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, cosine: bool):
        self.peak, self.warmup_steps, self.cosine = peak, warmup_steps, cosine
        self.planned_steps = total_steps
        # A variable, read at every step: an ``epochs: auto`` run that leaves the
        # plateau late moves its end (``AutoEpochs``).
        self.total_steps = keras.Variable(
            float(total_steps), dtype="float32", trainable=False, name="schedule_total_steps"
        )

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * (step + 1) / max(1, self.warmup_steps)
        if not self.cosine:
            return keras.ops.minimum(warm, self.peak)
        # TF turns a division by a constant into a multiplication, which rounds
        # differently from a division by the variable: while the end is where it
        # was planned, the constant is used, so such a run trains bit for bit as
        # it did before the end could move.
        planned = (step - self.warmup_steps) / max(1, self.planned_steps - self.warmup_steps)
        moved = (step - self.warmup_steps) / keras.ops.maximum(
            1.0, self.total_steps - self.warmup_steps
        )
        unmoved = keras.ops.equal(self.total_steps, float(self.planned_steps))
        progress = keras.ops.clip(keras.ops.where(unmoved, planned, moved), 0.0, 1.0)
        cosine = 0.5 * self.peak * (1 + keras.ops.cos(math.pi * progress))
        return keras.ops.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.planned_steps,
            "cosine": self.cosine,
        }


# The size rule of ``epochs: auto`` and ``patience: auto``.
MIN_EPOCHS, MAX_EPOCHS = 10, 200
MIN_PATIENCE, MAX_PATIENCE = 5, 20


def epochs_for(params: TrainParams, steps_per_epoch: int) -> int:
    """``train.epochs``, or for "auto" about ``target_steps`` updates in 10 to 200 epochs.

    A set of 750 images in batches of 8 (94 steps an epoch) gets 32 epochs; one
    of 3200 gets 10 (4000 steps), one of 150 gets 158.
    """
    if params.epochs != "auto":
        return params.epochs
    wanted = math.ceil(params.target_steps / max(1, steps_per_epoch))
    return min(MAX_EPOCHS, max(MIN_EPOCHS, wanted))


# A run of ``epochs: auto`` still on the plateau at the end of its budget starts
# again from fresh weights, this many times at most.
RESTARTS = 2


def restarts_for(budget: int) -> int:
    """How many fresh starts a budget allows: ``RESTARTS``, as far as whole budgets
    fit in ``MAX_EPOCHS`` (a budget of 67 to 100 gets one, over 100 none)."""
    return min(RESTARTS, (MAX_EPOCHS - budget) // budget)


def attempt_start(budget: int, done: int, left_epoch: int | None) -> int:
    """The epochs before the current attempt of an ``epochs: auto`` run began
    (0: the first), after ``done`` epochs; ``left_epoch`` as in ``auto_epochs_end``.

    Each attempt has the budget to leave the plateau; one that has not by then
    is dropped, and the next starts from fresh weights (``AutoEpochs``).
    """
    on_plateau = done if left_epoch is None else max(0, left_epoch - 1)
    return budget * min(restarts_for(budget), on_plateau // budget)


def auto_epochs_end(budget: int, done: int, left_epoch: int | None) -> int:
    """Where an ``epochs: auto`` run ends, as seen after ``done`` epochs: its budget
    (``epochs_for``), and ``left_epoch``, the epoch in which the model left the
    plateau (None: not yet).

    The budget assumes the model starts reading early, as it does on most sets
    (captcha_images_v2 and the captcha library's set: by epoch 2 to 4), and
    such a run ends at its budget. One that leaves late still trains half its
    budget after leaving. One still on the plateau at its budget starts again
    from fresh weights (``attempt_start``): which start leaves the plateau is
    luck of the draw (a set of hard colour captchas, on a budget of 10, left
    it in epoch 6 and 7 on two seeds, and on the third only in its third
    attempt: bench/README.md). The last attempt gives up at its budget.
    """
    start = attempt_start(budget, done, left_epoch)
    half = math.ceil(budget / 2)
    if left_epoch is not None:
        end = start + max(budget, left_epoch - start + half)
    elif done - start >= budget:
        end = done  # the last attempt, on the plateau for its whole budget: give up
    else:
        end = start + max(budget, done - start + half)  # as if it left now
    return min(MAX_EPOCHS, end)


def longest_auto_run(budget: int) -> int:
    """The most epochs ``auto_epochs_end`` can give: every attempt on the plateau
    for its budget, the last leaving in its last epoch."""
    return min(MAX_EPOCHS, (restarts_for(budget) + 1) * budget + math.ceil(budget / 2))


class AutoEpochs(keras.callbacks.Callback):
    """Ends an ``epochs: auto`` run where ``auto_epochs_end`` says, and moves the
    learning-rate schedule's end with it (a cosine that reached zero at the
    budget would leave nothing to train with).

    When a new attempt begins (``attempt_start``) it gives the model
    ``fresh_weights(attempt)`` and a new optimizer state: the step count back
    to zero, so the schedule starts over too. Fit is given
    ``longest_auto_run`` epochs, and ``done``, the epochs a resumed run has
    behind it. Needs ``ResumableEarlyStopping`` (which knows when the model
    left the plateau) earlier in the callback list.
    """

    def __init__(self, budget: int, steps_per_epoch: int, early, done: int = 0, fresh_weights=None):
        super().__init__()
        self.budget, self.steps_per_epoch, self.early = budget, steps_per_epoch, early
        self.done, self.fresh_weights = done, fresh_weights

    def on_train_begin(self, logs=None):  # noqa: ARG002 (Keras's signature)
        # A resumed run's schedule is new: give it the end the run had reached.
        self._move_end(self.done)

    def on_epoch_end(self, epoch, logs=None):  # noqa: ARG002 (Keras's signature)
        started = attempt_start(self.budget, epoch, self._left_epoch())
        if attempt_start(self.budget, epoch + 1, self._left_epoch()) > started:
            self._start_again((epoch + 1) // self.budget)
        if epoch + 1 >= self._move_end(epoch + 1):
            self.model.stop_training = True

    def _left_epoch(self) -> int | None:
        return self.early.left_epoch if self.early.left_plateau else None

    def _start_again(self, attempt: int) -> None:
        if self.fresh_weights is None:
            raise ValueError("AutoEpochs needs fresh_weights to start an attempt again")
        self.model.set_weights(self.fresh_weights(attempt))
        for variable in self.model.optimizer.variables:  # a new Adam: all zeros
            variable.assign(keras.ops.zeros_like(variable))

    def _move_end(self, done: int) -> int:
        left_epoch = self._left_epoch()
        end = auto_epochs_end(self.budget, done, left_epoch)
        # The optimizer counts steps from the attempt's start.
        steps = (end - attempt_start(self.budget, done, left_epoch)) * self.steps_per_epoch
        # Keras keeps an optimizer's schedule in _learning_rate (learning_rate is its value).
        schedule = getattr(self.model.optimizer, "_learning_rate", None)
        if isinstance(schedule, WarmupCosine):
            schedule.total_steps.assign(float(steps))
        return end


def patience_for(params: TrainParams, epochs: int) -> int:
    """``train.patience``, or for "auto" a quarter of the epochs, 5 to 20."""
    if params.patience != "auto":
        return params.patience
    return min(MAX_PATIENCE, max(MIN_PATIENCE, math.ceil(epochs / 4)))


def make_optimizer(params: TrainParams, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    schedule = WarmupCosine(
        peak=params.learning_rate,
        warmup_steps=params.warmup_epochs * steps_per_epoch,
        total_steps=epochs_for(params, steps_per_epoch) * steps_per_epoch,
        cosine=params.lr_schedule == "cosine",
    )
    if params.weight_decay:
        return keras.optimizers.AdamW(schedule, weight_decay=params.weight_decay)
    return keras.optimizers.Adam(schedule)


class ValidationReading(keras.callbacks.Callback):
    """Adds val_exact_match and val_cer to each epoch's logs."""

    def __init__(self, images: np.ndarray, texts: list[str], vocabulary: Vocabulary):
        super().__init__()
        self.images, self.texts, self.vocabulary = images, texts, vocabulary

    def on_epoch_end(self, epoch, logs=None):  # noqa: ARG002 (Keras's signature)
        predicted, _ = predict_texts(self.model, self.images, self.vocabulary)
        logs["val_exact_match"] = exact_match(self.texts, predicted)
        logs["val_cer"] = character_error_rate(self.texts, predicted)


def training_inputs(images: np.ndarray, labels: np.ndarray, p: TrainParams, strength=None) -> dict:
    """``model.fit``'s training data, reshuffled (and augmented) anew every epoch.

    Augmentation (``core/augment.py``) runs in the tf.data pipeline on training
    batches only; the network itself is untouched, so export and serving do not
    change. (A random layer inside the model would follow it into the ONNX
    file, which has no op for it.)

    ``strength``, a scalar ``tf.Variable`` (0 to 1) that scales every change, is
    read as each batch is made (``AugmentOffThePlateau`` sets it); None: 1.
    """
    images = with_channels(images)
    if not augments(p):
        return {"x": images, "y": labels, "batch_size": p.batch_size, "shuffle": True}
    import tensorflow as tf

    # One seed per batch, redrawn every epoch, the same for the same train.seed.
    seeds = tf.data.Dataset.random(seed=p.seed, rerandomize_each_iteration=True).batch(2)
    batches = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(images), seed=p.seed, reshuffle_each_iteration=True)
        .batch(p.batch_size)
    )
    feed = (
        tf.data.Dataset.zip(batches, seeds)
        .map(
            lambda batch, seed: (
                augment_batch(batch[0], seed, p, 1.0 if strength is None else strength),
                batch[1],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )
    return {"x": feed, "shuffle": False}  # shuffled above; fit warns otherwise


class AugmentOffThePlateau(keras.callbacks.Callback):
    """Augment only once the model reads: ``strength`` goes from 0 to 1 after the
    first epoch whose validation CER is below ``PLATEAU_CER``.

    Augmented images make the CTC plateau longer (bench/README.md: a
    2000-image set was first read at epoch 8 in place of 3); once the model has found the characters
    they are what keeps it from learning the training images by heart. Keras
    makes each epoch's batches after the previous epoch's callbacks, so the
    change starts with a whole epoch. Needs ``val_cer`` (``ValidationReading``)
    earlier in the callback list.
    """

    def __init__(self, strength):
        super().__init__()
        self.strength = strength

    def on_epoch_end(self, epoch, logs=None):  # noqa: ARG002 (Keras's signature)
        if float((logs or {}).get("val_cer", 1.0)) < PLATEAU_CER:
            self.strength.assign(1.0)


def without_optimizer(model: keras.Model) -> keras.Model:
    """The trained network alone: it loads with plain Keras, no schedule class needed.

    A new Model over the same layers is uncompiled (``clone_model`` would copy
    the optimizer too).
    """
    return keras.Model(model.input, model.output, name=model.name)
