"""Training under MirroredStrategy, as the train step does on a multi-GPU node.

No GPU here: two logical CPU devices stand in for two GPUs, in a fresh
process because devices are fixed when TensorFlow starts.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from captcha_ocr.config import TrainParams
from captcha_ocr.core.model import build_training_model
from captcha_ocr.steps.train import distribution_strategy

strategy = distribution_strategy(device_type="CPU")
print("replicas", strategy.num_replicas_in_sync)
params = TrainParams(
    conv_filters=[4, 8], dense_units=8, sequence_units=[8], dropout=0, sequence_dropout=0
)
with strategy.scope():
    model = build_training_model(params, 50, 200, 20)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.CTC())
rng = np.random.default_rng(0)
images = rng.integers(0, 255, (16, 50, 200, 1)).astype("float32")
labels = rng.integers(1, 20, (16, 5)).astype("int32")
history = model.fit(images, labels, batch_size=8, epochs=3, verbose=0)
print("losses", *history.history["loss"])
"""


def test_training_runs_mirrored_over_two_devices():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert lines["replicas"] == "2"
    losses = [float(x) for x in lines["losses"].split()]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
