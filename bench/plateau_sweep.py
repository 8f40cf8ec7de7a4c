"""How many epochs a recipe needs to leave the CTC loss plateau, for one seed.

    python bench/plateau_sweep.py NAME SEED MAX_EPOCHS '{"learning_rate": 0.0005}'

Run from the project folder after ``dvc repro preprocess``. Trains the
params.yaml ``train:`` recipe with the JSON overrides (plus ``"invert": true``
to feed 255 - pixels) for at most MAX_EPOCHS, stopping once validation
exact-match reaches 0.97, and prints one JSON line: the first epoch whose
train loss is below 15 (off the plateau), the first epochs with validation
exact-match above 0.5 and at 0.97, and the per-epoch loss and exact-match.
Cheap enough to run two at a time with TF_NUM_INTRAOP_THREADS=1 each.
"""

from __future__ import annotations

import json
import math
import sys
import time

import keras
import pandas as pd

from captcha_ocr import paths
from captcha_ocr.config import TrainParams, load_params
from captcha_ocr.core.model import build_training_model
from captcha_ocr.core.recipe import ValidationReading, make_optimizer
from captcha_ocr.core.vocabulary import Vocabulary
from captcha_ocr.steps.preprocess import load_split

PLATEAU_LOSS = 15.0
READ_ENOUGH = 0.97


class StopWhenRead(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):  # noqa: ARG002 (Keras's signature)
        if (logs or {}).get("val_exact_match", 0) >= READ_ENOUGH:
            self.model.stop_training = True


def first_epoch(values: list[float], condition) -> int | None:
    return next((i + 1 for i, value in enumerate(values) if condition(value)), None)


def main() -> None:
    name, seed, max_epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    overrides = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    invert = overrides.pop("invert", False)
    base = load_params("params.yaml").train.model_dump()
    params = TrainParams.model_validate({**base, **overrides, "seed": seed})

    keras.utils.set_random_seed(seed)
    vocabulary = Vocabulary.load(paths.VOCABULARY)
    train, val = load_split("train"), load_split("val")
    val_texts = pd.read_csv(paths.SPLITS / "val.csv", dtype=str, keep_default_na=False)[
        "label"
    ].tolist()
    x_train, x_val = train["images"], val["images"]
    if invert:  # dark text on light ground becomes light strokes on zero
        x_train, x_val = 255 - x_train, 255 - x_val
    model = build_training_model(params, *x_train.shape[1:], vocabulary.num_classes)
    steps = math.ceil(len(x_train) / params.batch_size)
    model.compile(optimizer=make_optimizer(params, steps), loss=keras.losses.CTC())

    started = time.perf_counter()
    history = model.fit(
        x_train[..., None],
        train["labels"],
        validation_data=(x_val[..., None], val["labels"]),
        batch_size=params.batch_size,
        epochs=max_epochs,
        shuffle=True,
        verbose=0,
        callbacks=[ValidationReading(x_val, val_texts, vocabulary), StopWhenRead()],
    ).history
    loss, read = history["loss"], history["val_exact_match"]
    result = {
        "name": name,
        "seed": seed,
        "loss<15": first_epoch(loss, lambda x: x < PLATEAU_LOSS),
        "em>0.5": first_epoch(read, lambda x: x > 0.5),
        "em>0.97": first_epoch(read, lambda x: x >= READ_ENOUGH),
        "epochs": len(loss),
        "secs": round(time.perf_counter() - started),
        "loss": [round(x, 2) for x in loss],
        "em": [round(x, 3) for x in read],
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
