"""Early stopping waits until the model reads; epochs and patience sized by the data."""

import keras
import pytest

from captcha_ocr.config import TrainParams
from captcha_ocr.core.recipe import epochs_for, patience_for
from captcha_ocr.steps.checkpoints import ResumableEarlyStopping


def stopping(patience: int, resume: dict | None = None) -> ResumableEarlyStopping:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    early = ResumableEarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True, resume=resume
    )
    early.set_model(model)
    model.stop_training = False
    early.on_train_begin()
    return early


def run_epochs(early: ResumableEarlyStopping, logs: list[dict], start: int = 0) -> int | None:
    """Feed the epochs' logs; the epoch (counted from 1) that stopped training, or None."""
    for epoch, log in enumerate(logs, start):
        early.on_epoch_end(epoch, log)
        if early.model.stop_training:
            return epoch + 1
    return None


def test_a_flat_loss_on_the_plateau_never_stops_training():
    early = stopping(patience=2)
    flat = [{"val_loss": 16.0, "val_cer": 0.95}] * 30
    assert run_epochs(early, flat) is None
    assert early.counters()["left_plateau"] is False


def test_patience_counts_from_leaving_the_plateau():
    early = stopping(patience=2)
    logs = [{"val_loss": 16.0, "val_cer": 1.0}] * 5  # a stuck start, best loss at epoch 1
    logs += [{"val_loss": 3.0, "val_cer": 0.4}]  # epoch 6: reads, and the best loss
    logs += [{"val_loss": 3.5, "val_cer": 0.3}] * 5  # no better loss from here
    assert run_epochs(early, logs) == 8  # two epochs of patience after epoch 6
    assert early.counters()["left_plateau"] is True


def test_without_val_cer_it_is_plain_early_stopping_that_never_starts_counting():
    # val_cer comes from ValidationReading; without it the model is never known to read.
    early = stopping(patience=1)
    assert run_epochs(early, [{"val_loss": 5.0}] * 10) is None


def test_a_resumed_training_remembers_it_left_the_plateau():
    early = stopping(patience=2)
    run_epochs(early, [{"val_loss": 3.0, "val_cer": 0.2}])
    resumed = stopping(patience=2, resume=early.counters())
    # Off the plateau already: the loss not improving now counts at once.
    assert run_epochs(resumed, [{"val_loss": 3.5, "val_cer": 0.6}] * 3, start=1) == 3


@pytest.mark.parametrize(
    ("images", "batch", "epochs"),
    [
        (747, 8, 32),  # captcha_images_v2's training split: 94 steps an epoch
        (3200, 8, 10),  # 400 steps: 7.5 epochs would do, the floor is 10
        (150, 8, 158),  # 19 steps an epoch
        (20, 8, 200),  # 3 steps: capped at 200 epochs
    ],
)
def test_auto_epochs_aim_at_the_target_steps_within_bounds(images, batch, epochs):
    params = TrainParams(batch_size=batch)
    steps = -(-images // batch)
    assert epochs_for(params, steps) == epochs
    assert epochs_for(TrainParams(epochs=7), steps) == 7  # a number is a number


@pytest.mark.parametrize(("epochs", "patience"), [(10, 5), (32, 8), (158, 20)])
def test_auto_patience_is_a_quarter_of_the_epochs_within_bounds(epochs, patience):
    assert patience_for(TrainParams(), epochs) == patience
    assert patience_for(TrainParams(patience=3), epochs) == 3
