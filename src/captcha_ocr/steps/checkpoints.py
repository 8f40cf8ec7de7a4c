"""Resume a killed training where it stopped: a checkpoint after every epoch.

DVC deletes a stage's outputs before it runs the stage's command, so the
checkpoint cannot live in ``models/train``: it lives in
``.checkpoints/train/<key>/`` (git-ignored), where ``key`` hashes the train
params and the training data. A changed param or new data gets a new key, so a
stale checkpoint is never resumed; the old folders are removed.

After each epoch the checkpoint writes, each file atomically:

- ``epoch-NNNN.weights.h5``: the network and optimizer state;
- ``best-NNNN.npz``: early stopping's best weights so far;
- ``state.json`` last: the epoch count, the history rows, early stopping's
  counters, the MLflow run id. It names the two files above, so a kill at any
  point leaves a state that points at complete files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from captcha_ocr import paths
from captcha_ocr.config import TrainParams
from captcha_ocr.core.metrics import PLATEAU_CER
from captcha_ocr.files import atomic_path, write_json


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    rows: list[dict] = field(default_factory=list)  # one history row per epoch
    early: dict = field(default_factory=dict)  # EarlyStopping's counters
    stopped: bool = False  # early stopping ended the fit
    run_id: str | None = None
    weights: str | None = None
    best: str | None = None

    def left_epoch(self) -> int | None:
        """The epoch in which the model left the plateau, None if it has not; read
        from the history for a checkpoint saved before early stopping kept it."""
        if not self.early.get("left_plateau"):
            return None
        if self.early.get("left_epoch") is not None:
            return self.early["left_epoch"]
        return next((r["epoch"] for r in self.rows if r.get("val_cer", 1.0) < PLATEAU_CER), 0)


def checkpoint_key(params: TrainParams, data_files: Sequence[Path]) -> str:
    """A digest of the train params and the bytes of the training data."""
    digest = hashlib.sha256(json.dumps(params.model_dump(), sort_keys=True).encode())
    for path in data_files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


class Checkpoint:
    """The checkpoint folder of one training setup (params + data)."""

    def __init__(self, key: str, root: Path = paths.CHECKPOINTS):
        self.root, self.folder = Path(root), Path(root) / key

    def load(self) -> TrainState | None:
        path = self.folder / "state.json"
        if not path.is_file():
            return None
        try:
            return TrainState(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as err:
            self._discard(f"unreadable {path} ({err})")
            return None

    def drop_others(self) -> list[Path]:
        """Remove checkpoints of other params or data: they can never be resumed."""
        stale = [p for p in self.root.glob("*") if p.is_dir() and p != self.folder]
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return stale

    def restore(self, model: keras.Model, state: TrainState) -> bool:
        """Load the checkpoint into ``model``; False (and the checkpoint gone) if it is broken.

        After a False the model may hold part of the checkpoint: build a new one.
        """
        try:
            # The optimizer must exist before its saved variables can be loaded into it.
            model.optimizer.build(model.trainable_variables)
            model.load_weights(self.folder / str(state.weights))
            self.best_weights(state)
        except (OSError, ValueError, KeyError) as err:
            self._discard(f"cannot load epoch {state.epoch} ({err})")
            return False
        return True

    def _discard(self, why: str) -> None:
        print(f"warning: checkpoint {self.folder}: {why}; training starts over", file=sys.stderr)
        self.clear()

    def best_weights(self, state: TrainState) -> list[np.ndarray] | None:
        if not state.best:
            return None
        with np.load(self.folder / state.best) as data:
            return [data[f"arr_{i}"] for i in range(len(data.files))]

    def save(self, model: keras.Model, state: TrainState, best: list | None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        old = {n for n in (state.weights, state.best) if n}
        state.weights = f"epoch-{state.epoch:04d}.weights.h5"
        with atomic_path(self.folder / state.weights, suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
        state.best = None
        if best is not None:
            state.best = f"best-{state.epoch:04d}.npz"
            with atomic_path(self.folder / state.best) as tmp:
                np.savez(tmp, *best)
        write_json(self.folder / "state.json", asdict(state))
        for name in old - {n for n in (state.weights, state.best) if n}:
            (self.folder / name).unlink(missing_ok=True)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that starts from a checkpoint's counters and waits for the model to read.

    Patience counts only once validation CER has gone below ``plateau_cer``
    (the model "left the plateau"): before that, a flat val_loss says the
    network has not started, not that it has finished. Needs ``val_cer`` in
    the logs (``recipe.ValidationReading``, earlier in the callback list).
    """

    COUNTERS = ("wait", "best", "best_epoch", "stopped_epoch", "left_plateau", "left_epoch")

    def __init__(
        self,
        *args,
        resume: dict | None = None,
        best_weights=None,
        plateau_cer: float = PLATEAU_CER,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.resume, self.resume_weights = resume or {}, best_weights
        self.plateau_cer, self.left_plateau = plateau_cer, False
        self.left_epoch: int | None = None  # the epoch (from 1) in which it left

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.left_plateau, self.left_epoch = False, None
        for name in self.COUNTERS:
            if name in self.resume:
                setattr(self, name, self.resume[name])
        self.best_weights = self.resume_weights

    def on_epoch_end(self, epoch, logs=None):
        cer = (logs or {}).get("val_cer")
        if cer is not None and float(cer) < self.plateau_cer and not self.left_plateau:
            self.left_plateau, self.left_epoch = True, epoch + 1
        super().on_epoch_end(epoch, logs)
        if not self.left_plateau:
            # Still on the plateau: patience has not started, so nothing stops.
            self.wait = 0
            if self.stopped_epoch == epoch:  # type: ignore[has-type]  # (Keras sets it)
                self.stopped_epoch, self.model.stop_training = 0, False

    def counters(self) -> dict:
        return {
            "wait": int(self.wait),
            "best": None if self.best is None else float(self.best),
            "best_epoch": int(self.best_epoch),
            "stopped_epoch": int(self.stopped_epoch),
            "left_plateau": bool(self.left_plateau),
            "left_epoch": self.left_epoch,
        }


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch (and after early stopping has looked at it), save the state.

    Must come after the callbacks that add to the epoch's logs and after
    early stopping in the callback list.
    """

    def __init__(self, checkpoint: Checkpoint, state: TrainState, early: ResumableEarlyStopping):
        super().__init__()
        self.checkpoint, self.state, self.early = checkpoint, state, early

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        # A killed attempt may have logged this epoch already; the rerun's row wins.
        self.state.rows = [r for r in self.state.rows if r["epoch"] <= epoch] + [row]
        self.state.epoch = epoch + 1
        self.state.early = self.early.counters()
        self.state.stopped = bool(self.model.stop_training)
        self.checkpoint.save(self.model, self.state, self.early.best_weights)
