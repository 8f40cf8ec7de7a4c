"""Bad train, export and promote params: refused by key before any work, nothing lost."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import assert_refused

# case: (step run, section, key, raw YAML value, names the message must hold)
BAD_PARAMS = {
    "infinite learning rate": (
        "train",
        "train",
        "learning_rate",
        ".inf",
        ["train.learning_rate", "finite"],
    ),
    "infinite weight decay": (
        "train",
        "train",
        "weight_decay",
        ".inf",
        ["train.weight_decay", "finite"],
    ),
    "pool larger than the image": (
        "train",
        "train",
        "conv_pool",
        "[[64, 64], [2, 2]]",
        ["train.conv_pool", "preprocess.image_height"],
    ),
    "strides and pools shrink the image to nothing": (
        "train",
        "train",
        "conv_strides",
        "[[8, 8], [8, 8]]",
        ["train.conv_strides", "train.conv_pool", "preprocess.image_height"],
    ),
    "fewer time steps than a label needs": (
        "train",
        "train",
        "conv_pool",
        "[[2, 8], [2, 8]]",
        ["train.conv_pool", "preprocess.max_label_length"],
    ),
    "a quote in the model name": (
        "promote",
        "export",
        "model_name",
        '"it\'s"',
        ["export.model_name"],
    ),
    "a filter expression in the model name": (
        "promote",
        "export",
        "model_name",
        "\"x' OR name LIKE '%\"",
        ["export.model_name"],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_PARAMS))
def test_bad_params_are_refused_by_key_before_any_work(project, case):
    step, section, key, text, names = BAD_PARAMS[case]
    project.set_param_text(section, key, text)
    before = project.checksums()
    result = project.run(step)
    assert_refused(result, *names, before=before, after=project.checksums())


@pytest.mark.slow
def test_a_loss_that_turns_nan_stops_training_and_keeps_the_old_model(project):
    # Finite, so the params check lets it through; Adam's first steps blow the weights up.
    project.set_params("train", learning_rate=1e30, epochs=3, patience=3)
    before = project.checksums()
    result = project.run("train")
    assert_refused(result, "NaN", "epoch 1", before=before, after=project.checksums())
