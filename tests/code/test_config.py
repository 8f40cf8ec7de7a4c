import math
import re

import pytest
import yaml

from captcha_ocr.config import (
    UPSTREAM_URL,
    Params,
    ParamsError,
    TrainParams,
    load_params,
)

from ..conftest import PROJECT_ROOT


def write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_project_params_are_the_code_defaults():
    # params.yaml and the code say the same: an empty params file runs the same pipeline.
    assert load_params(PROJECT_ROOT / "params.yaml") == Params()
    assert Params().ingest.source == UPSTREAM_URL


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ParamsError, match=r"train\.epochz"):
        load_params(write(tmp_path, {"train": {"epochz": 3}}))


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ParamsError, match=r"train\.batch_size"):
        load_params(write(tmp_path, {"train": {"batch_size": "big"}}))


@pytest.mark.parametrize("source", ["", "  "])
def test_an_empty_source_is_refused_by_name(tmp_path, source):
    # An empty path is the current folder: ingest would pack the project itself.
    with pytest.raises(ParamsError, match=r"ingest\.source: is empty"):
        load_params(write(tmp_path, {"ingest": {"source": source}}))


def test_allowed_chars_are_read_composed_as_labels_are(tmp_path):
    # A combining accent typed after "e" is "é", the one symbol NFC labels hold.
    params = load_params(write(tmp_path, {"preprocess": {"allowed_chars": "abce\u0301"}}))
    assert params.preprocess.allowed_chars == "abc\u00e9"


def test_impossible_split_is_refused(tmp_path):
    with pytest.raises(ParamsError, match="nothing to train on"):
        load_params(write(tmp_path, {"preprocess": {"val_fraction": 0.5, "test_fraction": 0.5}}))


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"conv_strides": [[1, 1]]}, "conv_strides needs one"),
        ({"conv_pool": [[2, 2], [0, 2]]}, "at least 1"),
        ({"conv_strides": [[1, 1], [2, 0]]}, "at least 1"),
    ],
)
def test_conv_block_sizes_are_checked(tmp_path, train, message):
    with pytest.raises(ParamsError, match=rf"train: .*{message}"):
        load_params(write(tmp_path, {"train": train}))


def test_the_retired_source_variable_is_refused_by_name(tmp_path, monkeypatch, capsys):
    # DVC cannot see an environment variable: honouring it would ingest data
    # that dvc.lock does not record. It is refused, with the command to use.
    from captcha_ocr.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAPTCHA_OCR_SOURCE", "/data/copy.zip")
    assert main(["ingest", "--params", str(write(tmp_path, {}))]) == 1
    err = capsys.readouterr().err
    assert "CAPTCHA_OCR_SOURCE='/data/copy.zip' is no longer read" in err
    assert "dvc exp run -S ingest.source=/data/copy.zip" in err
    assert not (tmp_path / "data").exists()


def test_cli_reports_a_bad_key_and_exits_nonzero(tmp_path, capsys):
    from captcha_ocr.cli import main

    assert main(["ingest", "--params", str(write(tmp_path, {"ingest": {"sourse": "x"}}))]) == 1
    assert "ingest.sourse" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("train:\n  learning_rate: .inf\n", "train.learning_rate"),
        ("train:\n  weight_decay: .inf\n", "train.weight_decay"),
        ("train:\n  learning_rate: -.inf\n", "train.learning_rate"),
        ("train:\n  dropout: .nan\n", "train.dropout"),
        ("preprocess:\n  max_rejected_fraction: .nan\n", "preprocess.max_rejected_fraction"),
        ("promote:\n  min_gain: .nan\n", "promote.min_gain"),
    ],
)
def test_non_finite_numbers_are_refused_by_key(tmp_path, text, key):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=rf"{re.escape(key)}: \S+ is not a finite number"):
        load_params(path)


def test_sections_refuse_non_finite_numbers_built_in_code():
    with pytest.raises(ValueError, match="finite number"):
        TrainParams(learning_rate=math.inf)


# Sizes and lengths fixed (not auto, which train checks once preprocess has read them).
FIXED = {"image_height": 50, "image_width": 200, "min_label_length": 5, "max_label_length": 5}
# (params, the message's words); the image is 50x200, labels up to 5.
UNBUILDABLE = [
    ({"train": {"conv_pool": [[64, 64], [2, 2]]}}, "pool 64x64"),
    ({"train": {"conv_strides": [[8, 8], [8, 8]]}}, "after conv block 2"),
    ({"train": {"conv_pool": [[2, 8], [2, 8]]}}, "leave 3 time steps"),
    ({"preprocess": {"image_width": 35}}, "leave 8 time steps"),
    ({"preprocess": {"max_label_length": 40}}, "needs at least 79"),
    ({"preprocess": {"max_label_length": 10**9}}, r"max_label_length: .*less than or equal to 64"),
    ({"train": {"conv_filters": [0, 8]}}, r"train\.conv_filters\.0"),
    ({"train": {"sequence_units": [-1]}}, r"train\.sequence_units\.0"),
]


@pytest.mark.parametrize(("data", "message"), UNBUILDABLE)
def test_params_that_build_no_network_are_refused_before_training(tmp_path, data, message):
    data = data | {"preprocess": FIXED | data.get("preprocess", {})}
    with pytest.raises(ParamsError, match=message):
        load_params(write(tmp_path, data))


def test_auto_sizes_are_left_to_train_to_check(tmp_path):
    # The same unbuildable pools pass here: the image size is not known before preprocess.
    load_params(write(tmp_path, {"train": {"conv_pool": [[64, 64], [2, 2]]}}))


def test_just_enough_time_steps_for_the_longest_label_are_accepted(tmp_path):
    # 36 columns pooled twice by 2: 9 steps, a blank between each of 5 characters.
    load_params(write(tmp_path, {"preprocess": FIXED | {"image_width": 36}}))


@pytest.mark.parametrize("name", ["captcha-ocr", "a.b_c-1", "X" * 100])
def test_plain_model_names_are_accepted(tmp_path, name):
    assert load_params(write(tmp_path, {"export": {"model_name": name}})).export.model_name == name


@pytest.mark.parametrize("name", ["it's", "x' OR name LIKE '%", "a b", "", "-x", "X" * 101])
def test_model_names_that_would_break_a_registry_filter_are_refused(tmp_path, name):
    with pytest.raises(ParamsError, match=r"export\.model_name: .* not a usable"):
        load_params(write(tmp_path, {"export": {"model_name": name}}))


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), (3, 3), (3.0, 3), ("3", 3)])
def test_epochs_and_patience_take_a_whole_number_or_auto(value, expected):
    # Kubeflow hands sections over as JSON, where 3 may come back as 3.0.
    params = TrainParams(epochs=value, patience=value)
    assert params.epochs == expected and params.patience == expected


@pytest.mark.parametrize("value", [0, 2.5, "many", True, None])
def test_epochs_that_are_no_count_are_refused_by_name(tmp_path, value):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": value}}))
    with pytest.raises(ParamsError, match=r"train\.epochs: .* is neither a whole number"):
        load_params(path)
