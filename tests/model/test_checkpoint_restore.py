"""A checkpoint brings back the network and the optimizer; a broken one is
dropped with a warning instead of blocking every later training."""

from __future__ import annotations

import keras
import numpy as np

from captcha_ocr.config import TrainParams
from captcha_ocr.core.model import build_training_model
from captcha_ocr.steps.checkpoints import Checkpoint, TrainState

TINY = TrainParams(conv_filters=[4], conv_pool=[(2, 2)], dense_units=8, sequence_units=[8])


def compiled() -> keras.Model:
    model = build_training_model(TINY, 50, 200, 20)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.CTC())
    return model


def trained_checkpoint(tmp_path) -> tuple[keras.Model, Checkpoint, TrainState]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 50, 200, 1)).astype("float32")
    labels = rng.integers(1, 20, (4, 5))
    model = compiled()
    model.fit(images, labels, epochs=1, batch_size=2, verbose=0)
    checkpoint = Checkpoint("key", root=tmp_path)
    state = TrainState(epoch=1)
    checkpoint.save(model, state, best=model.get_weights())
    return model, checkpoint, checkpoint.load()


def test_restore_brings_back_weights_and_optimizer(tmp_path):
    model, checkpoint, state = trained_checkpoint(tmp_path)
    fresh = compiled()
    assert checkpoint.restore(fresh, state)
    for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.optimizer.iterations.numpy()) == 2
    best = checkpoint.best_weights(state)
    assert len(best) == len(model.get_weights())


def test_a_broken_checkpoint_is_dropped_with_a_warning(tmp_path, capsys):
    _, checkpoint, state = trained_checkpoint(tmp_path)
    (checkpoint.folder / state.weights).write_bytes(b"half a file from a bad disk")
    assert not checkpoint.restore(compiled(), state)
    assert "training starts over" in capsys.readouterr().err
    assert not checkpoint.folder.exists()


def test_an_unreadable_state_is_no_checkpoint(tmp_path, capsys):
    checkpoint = Checkpoint("key", root=tmp_path)
    checkpoint.folder.mkdir()
    (checkpoint.folder / "state.json").write_text('{"epoch": 3, "from_a_newer_version": 1}')
    assert checkpoint.load() is None
    assert "unreadable" in capsys.readouterr().err
