"""The Keras example "OCR model for reading Captchas" as a baseline: model and recipe.

The architecture is not written out again here: the project's
``build_training_model`` with the example's params (no BatchNorm, dropout 0.2
after the dense layer, 0.25 inside the LSTMs, conv 32/64, dense 64, BiLSTM
128/64) builds the same network, which ``tests/model/test_model.py::
test_reference_architecture_size`` pins at the example's 432,725 parameters
(less the 129 weights of the example's out-of-vocabulary class, which this
vocabulary does not have).

The recipe is the example's: Adam at its defaults (learning rate 1e-3),
batch 16, up to 100 epochs, early stopping on val_loss with patience 10 and
the best weights restored. Two differences, both shared with the project's
training so that only the params differ between the two in a comparison:
the loss is ``keras.losses.CTC`` on logits (the example applies a softmax and
takes its log inside ``ctc_batch_cost``: the same loss), and the training
images are reshuffled every epoch (the example batches them in one fixed order).
"""

from __future__ import annotations

import keras

from captcha_ocr.config import TrainParams
from captcha_ocr.core.model import build_training_model

REFERENCE_PARAMS = TrainParams(
    seed=1337,
    epochs=100,
    batch_size=16,
    learning_rate=1e-3,
    warmup_epochs=0,
    lr_schedule="constant",
    weight_decay=0.0,
    patience=10,
    augment=False,
    augment_squeeze=0.0,
    conv_filters=[32, 64],
    conv_pool=[(2, 2), (2, 2)],
    conv_strides=None,
    conv_separable=False,
    batch_norm=False,
    dense_units=64,
    dropout=0.2,
    sequence="lstm",
    sequence_units=[128, 64],
    sequence_kernel=5,
    sequence_dilate=False,
    sequence_dropout=0.25,
)
# The example's size with its 21 output classes; ours has 20 (19 characters and the blank).
REFERENCE_PARAMETERS_21_CLASSES = 432_725


def build_reference(height: int, width: int, num_classes: int) -> keras.Model:
    """The example's network, compiled as the example compiles it."""
    model = build_training_model(REFERENCE_PARAMS, height, width, num_classes)
    model.compile(optimizer=keras.optimizers.Adam(), loss=keras.losses.CTC())
    return model


def reference_train_section() -> dict:
    """The recipe as a ``train:`` section of params.yaml, for ``captcha-ocr train``."""
    return REFERENCE_PARAMS.model_dump(mode="json", exclude={"seed"})
