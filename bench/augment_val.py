"""Augmentation and regularization, compared on the validation split only.

    python bench/augment_val.py NAME SEED '{"augment": false, "epochs": 20}'

Run from the project folder after ``dvc repro preprocess``. Trains the
params.yaml ``train:`` recipe with the JSON overrides as the train step does
(same feed, epochs and patience rule, early stopping that waits for the
plateau to be left) and prints one JSON line: epochs run, seconds, and the
best epoch's validation loss, exact match and CER, with the per-epoch curves.
It never opens the test split: recipes are chosen on validation, and the test
split is read once, by evaluate. Cheap enough to run two at a time with
TF_NUM_INTRAOP_THREADS=1 each.
"""

from __future__ import annotations

import json
import math
import sys
import time

import keras

from captcha_ocr import paths
from captcha_ocr.config import TrainParams, load_params
from captcha_ocr.core.images import with_channels
from captcha_ocr.core.model import build_training_model
from captcha_ocr.core.recipe import (
    AugmentOffThePlateau,
    ValidationReading,
    epochs_for,
    make_optimizer,
    patience_for,
    training_inputs,
)
from captcha_ocr.core.vocabulary import Vocabulary
from captcha_ocr.files import read_text_table
from captcha_ocr.steps.checkpoints import ResumableEarlyStopping
from captcha_ocr.steps.preprocess import load_split


def main() -> None:
    name, seed = sys.argv[1], int(sys.argv[2])
    overrides = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    # "augment_from_start": true augments from the first epoch (the train step
    # waits until the model has left the plateau).
    from_start = overrides.pop("augment_from_start", False)
    base = load_params("params.yaml").train.model_dump()
    params = TrainParams.model_validate({**base, **overrides, "seed": seed})

    keras.utils.set_random_seed(seed)
    vocabulary = Vocabulary.load(paths.VOCABULARY)
    train, val = load_split("train"), load_split("val")
    val_texts = read_text_table(paths.split_csv("val"))["label"].tolist()
    model = build_training_model(params, *train["images"].shape[1:3], vocabulary.num_classes)
    steps = math.ceil(len(train["images"]) / params.batch_size)
    model.compile(optimizer=make_optimizer(params, steps), loss=keras.losses.CTC())
    epochs = epochs_for(params, steps)
    early = ResumableEarlyStopping(
        monitor="val_loss", patience=patience_for(params, epochs), restore_best_weights=True
    )

    import tensorflow as tf

    strength = tf.Variable(1.0 if from_start else 0.0, trainable=False)
    started = time.perf_counter()
    history = model.fit(
        **training_inputs(train["images"], train["labels"], params, strength),
        validation_data=(with_channels(val["images"]), val["labels"]),
        epochs=epochs,
        verbose=0,
        callbacks=[
            ValidationReading(val["images"], val_texts, vocabulary),
            AugmentOffThePlateau(strength),
            early,
        ],
    ).history
    best = min(range(len(history["val_loss"])), key=history["val_loss"].__getitem__)
    result = {
        "name": name,
        "seed": seed,
        "epochs": len(history["loss"]),
        "secs": round(time.perf_counter() - started),
        "best_epoch": best + 1,
        "val_loss": round(history["val_loss"][best], 4),
        "val_exact_match": round(history["val_exact_match"][best], 4),
        "val_cer": round(history["val_cer"][best], 4),
        "loss": [round(x, 3) for x in history["loss"]],
        "val_losses": [round(x, 3) for x in history["val_loss"]],
        "val_em": [round(x, 3) for x in history["val_exact_match"]],
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
