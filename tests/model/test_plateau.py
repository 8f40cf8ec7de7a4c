"""Early stopping waits until the model reads; epochs and patience sized by the data."""

import contextlib
import math

import keras
import numpy as np
import pytest

from captcha_ocr.config import TrainParams
from captcha_ocr.core.recipe import (
    AutoEpochs,
    WarmupCosine,
    attempt_start,
    auto_epochs_end,
    epochs_for,
    longest_auto_run,
    patience_for,
    restarts_for,
)
from captcha_ocr.steps.checkpoints import (
    Checkpoint,
    EpochCheckpoint,
    ResumableEarlyStopping,
    TrainState,
)


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
        (747, 8, 64),  # captcha_images_v2's training split: 94 steps an epoch
        (3200, 8, 15),  # 400 steps an epoch
        (20000, 8, 10),  # 2500 steps: 2.4 epochs would do, the floor is 10
        (150, 8, 200),  # 19 steps an epoch: 316, capped at 200 epochs
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


@pytest.mark.parametrize(
    ("budget", "done", "left_at", "end"),
    [
        (10, 3, 2, 10),  # left early (the library's set: epoch 2 to 4): ends at the budget
        (32, 5, 4, 32),  # captcha_images_v2
        (10, 9, 8, 13),  # left at epoch 8: half the budget more
        (10, 3, None, 10),  # still on the plateau, early: as if it left now
        (10, 8, None, 13),  # on the plateau late in the budget: as if it left now
        (10, 10, None, 20),  # on the plateau at the budget: a second attempt, with a budget
        (10, 13, 12, 20),  # the second attempt left in its second epoch: ends at its budget
        (10, 19, 18, 23),  # ... in its eighth: half the budget after leaving
        (10, 29, None, 34),  # the third (last) attempt, on the plateau: as if it left now
        (10, 30, None, 30),  # the last attempt on the plateau for its budget: gives up
        (150, 140, None, 200),  # never past 200 epochs
    ],
)
def test_auto_epochs_wait_for_a_late_plateau(budget, done, left_at, end):
    assert auto_epochs_end(budget, done, left_at) == end
    assert auto_epochs_end(budget, done, left_at) <= longest_auto_run(budget)


@pytest.mark.parametrize(
    ("done", "left_at", "start"),
    [(9, None, 0), (10, None, 10), (25, 11, 10), (25, 10, 0), (19, None, 10), (45, None, 20)],
)
def test_an_attempt_starts_each_budget_until_the_model_leaves(done, left_at, start):
    assert attempt_start(10, done, left_at) == start


class ScriptedReading(keras.callbacks.Callback):
    """Puts a chosen val_cer and val_loss in each epoch's logs, as ValidationReading would."""

    def __init__(self, cers: list[float]):
        super().__init__()
        self.cers = cers

    def on_epoch_end(self, epoch, logs=None):
        logs["val_cer"] = self.cers[epoch]
        logs["val_loss"] = 10.0 - epoch * 0.1  # always improving: patience never ends it


STEPS = 4  # an epoch of the tiny fits below


def tiny_fit(
    budget: int, cers: list[float], first: int = 0, resume: dict | None = None, fresh=None
):
    """A real (tiny) fit, on random data, with a cosine schedule over ``budget`` epochs and
    ``AutoEpochs``. From epoch ``first`` with early stopping's ``resume`` counters, it starts
    as a resumed training does: the optimizer's step count restored, its schedule new.
    Returns the learning rate at the start of each epoch it ran, the weights after
    each, and early stopping's counters."""
    schedule = WarmupCosine(peak=0.05, warmup_steps=0, total_steps=budget * STEPS, cosine=True)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(schedule), loss="mse")
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(first * STEPS)
    early = ResumableEarlyStopping(
        monitor="val_loss", patience=2, restore_best_weights=False, resume=resume
    )
    rates, weights = [], []
    rng = np.random.default_rng(0)
    model.fit(
        rng.normal(size=(4 * STEPS, 2)),
        rng.normal(size=(4 * STEPS, 1)),
        batch_size=4,
        shuffle=False,
        epochs=longest_auto_run(budget),
        initial_epoch=first,
        verbose=0,
        callbacks=[
            ScriptedReading(cers),
            early,
            AutoEpochs(budget, STEPS, early, done=first, fresh_weights=fresh),
            keras.callbacks.LambdaCallback(
                on_epoch_begin=lambda *_: rates.append(float(schedule(model.optimizer.iterations))),
                on_epoch_end=lambda *_: weights.append(model.get_weights()[0].copy()),
            ),
        ],
    )
    return rates, weights, early.counters()


def test_an_early_leaver_follows_the_fixed_cosine_and_ends_at_its_budget():
    rates, _, _ = tiny_fit(6, [0.9, 0.3] + [0.1] * 20)  # leaves in epoch 2 of 6
    fixed = WarmupCosine(peak=0.05, warmup_steps=0, total_steps=6 * STEPS, cosine=True)
    # Bit for bit: while the end has not moved the schedule divides by its planned
    # constant, as it did before the end could move (captcha_images_v2 trains as before).
    assert rates == [float(fixed(e * STEPS)) for e in range(6)]


class PlannedCosine(keras.optimizers.schedules.LearningRateSchedule):
    """The cosine as it was before its end could move: divided by the planned constant."""

    def __init__(self, total_steps: int):
        self.total_steps = total_steps

    def __call__(self, step):
        progress = keras.ops.clip(keras.ops.cast(step, "float32") / self.total_steps, 0.0, 1.0)
        return 0.5 * 0.05 * (1 + keras.ops.cos(math.pi * progress))


def test_an_early_leaver_trains_bit_for_bit_as_before_its_end_could_move():
    _, weights, _ = tiny_fit(6, [0.9, 0.3] + [0.1] * 20)  # leaves in epoch 2 of 6
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(PlannedCosine(6 * STEPS)), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4 * STEPS, 2)), rng.normal(size=(4 * STEPS, 1))
    model.fit(x, y, batch_size=4, shuffle=False, epochs=6, verbose=0)
    np.testing.assert_array_equal(weights[-1], model.get_weights()[0])


def test_a_late_leaver_trains_on_after_its_budget():
    # Leaves in epoch 5 of 6: three epochs after it, still learning in epochs 7 and 8.
    rates, weights, counters = tiny_fit(6, [1.0] * 4 + [0.4] + [0.1] * 20)
    assert counters["left_epoch"] == 5
    assert len(rates) == 8 and min(rates[6:]) > 1e-3
    assert not np.allclose(weights[5], weights[7])


def test_a_run_still_on_the_plateau_at_its_budget_starts_again_from_fresh_weights():
    drawn = []

    def fresh(attempt):
        drawn.append(attempt)
        return [np.full((2, 1), 100.0 + attempt), np.zeros(1)]

    rates, weights, _ = tiny_fit(6, [1.0] * 30, fresh=fresh)  # never leaves
    assert drawn == [1, 2] and len(rates) == 18  # three attempts of 6 epochs, then gives up
    # Each attempt starts from its fresh weights and its schedule's peak, as a new run does.
    assert rates[6] == rates[12] == pytest.approx(rates[0]) and rates[5] < rates[0] / 2
    assert rates[7] == pytest.approx(rates[1]) and rates[13] == pytest.approx(rates[1])
    assert np.abs(weights[6] - 101.0).max() < 1.0 and np.abs(weights[12] - 102.0).max() < 1.0
    # One that leaves in its second attempt trains half a budget after leaving.
    drawn.clear()
    rates, _, counters = tiny_fit(6, [1.0] * 7 + [0.3] * 30, fresh=fresh)
    assert drawn == [1] and counters["left_epoch"] == 8 and len(rates) == 12


def test_a_resumed_late_leaver_keeps_its_moved_end():
    cers = [1.0] * 4 + [0.4] + [0.1] * 20  # leaves in epoch 5 of 6: ends after epoch 8
    whole, _, counters = tiny_fit(6, cers)
    resumed, _, _ = tiny_fit(6, cers, first=7, resume=counters)  # killed after epoch 7
    assert len(resumed) == 1  # epoch 8 only
    # Its new schedule was moved to the run's end first: epoch 8 learns as it did in
    # the run that was not killed, not at the zero of a cosine that ended at epoch 6.
    assert resumed[0] == pytest.approx(whole[7], abs=1e-9) and resumed[0] > 1e-3


def test_a_checkpoint_saved_before_left_epoch_finds_it_in_its_history():
    rows = [{"epoch": e, "val_cer": cer} for e, cer in enumerate([0.9, 0.7, 0.4, 0.2], 1)]
    assert TrainState(epoch=4, rows=rows, early={"left_plateau": True}).left_epoch() == 3
    kept = {"left_plateau": True, "left_epoch": 2}  # what early stopping saved wins
    assert TrainState(epoch=4, rows=rows, early=kept).left_epoch() == 2
    assert TrainState(epoch=2, rows=rows[:2], early={"left_plateau": False}).left_epoch() is None


class KilledAfter(keras.callbacks.Callback):
    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):  # noqa: ARG002 (Keras's signature)
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def checkpointed_fit(cers: list[float], checkpoint: Checkpoint, kill: int | None = None):
    """A tiny fit with a budget of 6 epochs, checkpointed as train does, resumed from
    ``checkpoint`` when it holds one; killed after epoch ``kill``. Returns, per epoch run,
    the learning rate at its start and the optimizer's step count at its end."""
    state = checkpoint.load() or TrainState()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(WarmupCosine(0.05, 0, 6 * STEPS, True)), loss="mse")
    if state.epoch:
        assert checkpoint.restore(model, state)
    early = ResumableEarlyStopping(
        monitor="val_loss",
        patience=2,
        restore_best_weights=True,
        resume=state.early,
        best_weights=checkpoint.best_weights(state) if state.epoch else None,
    )
    rates, steps = {}, {}

    def fresh(attempt: int) -> list[np.ndarray]:
        keras.utils.set_random_seed(attempt)
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).get_weights()

    rng = np.random.default_rng(0)
    callbacks = [
        ScriptedReading(cers),
        early,
        AutoEpochs(6, STEPS, early, state.epoch, fresh),
        EpochCheckpoint(checkpoint, state, early),
        keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda e, *_: rates.__setitem__(
                e + 1, float(model.optimizer._learning_rate(model.optimizer.iterations))
            ),
            on_epoch_end=lambda e, *_: steps.__setitem__(e + 1, int(model.optimizer.iterations)),
        ),
        *([KilledAfter(kill)] if kill else []),
    ]
    with contextlib.suppress(KeyboardInterrupt):
        model.fit(
            rng.normal(size=(4 * STEPS, 2)),
            rng.normal(size=(4 * STEPS, 1)),
            batch_size=4,
            shuffle=False,
            epochs=longest_auto_run(6),
            initial_epoch=state.epoch,
            verbose=0,
            callbacks=callbacks,
        )
    return rates, steps


@pytest.mark.parametrize("kill", [6, 8])  # at the restart, and in the second attempt
def test_a_run_killed_in_its_second_attempt_resumes_where_it_was(tmp_path, kill):
    cers = [1.0] * 8 + [0.3] * 30  # leaves in epoch 9, the third of its second attempt
    whole_rates, whole_steps = checkpointed_fit(cers, Checkpoint("whole", tmp_path))
    assert len(whole_rates) == 6 + 6  # the second attempt ends at its own budget
    assert whole_steps[6] == 0 and whole_steps[7] == STEPS  # the step count starts over
    checkpoint = Checkpoint("killed", tmp_path)
    checkpointed_fit(cers, checkpoint, kill=kill)
    rates, steps = checkpointed_fit(cers, checkpoint)
    assert min(rates) == kill + 1 and max(rates) == 12
    for epoch in rates:
        assert rates[epoch] == pytest.approx(whole_rates[epoch], abs=1e-7)
        assert steps[epoch] == whole_steps[epoch]


@pytest.mark.parametrize(("budget", "restarts"), [(10, 2), (66, 2), (67, 1), (100, 1), (101, 0)])
def test_restarts_fit_within_200_epochs(budget, restarts):
    assert restarts_for(budget) == restarts
    assert attempt_start(budget, budget * 5, None) == budget * restarts
    assert longest_auto_run(budget) <= 200
