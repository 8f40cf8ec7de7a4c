import pytest
import yaml

from captcha_ocr.config import UPSTREAM_URL, ParamsError, load_params

from ..conftest import PROJECT_ROOT


def write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_project_params_load_and_match_code_defaults():
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params.ingest.source == UPSTREAM_URL
    assert params.preprocess.val_fraction == 0.1
    assert "train.epochs" in params.flat()


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ParamsError, match=r"train\.epochz"):
        load_params(write(tmp_path, {"train": {"epochz": 3}}))


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ParamsError, match=r"train\.batch_size"):
        load_params(write(tmp_path, {"train": {"batch_size": "big"}}))


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
