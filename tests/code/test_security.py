"""Security rules that a change could quietly break: models load in Keras
safe mode, nothing unpickles, servers bind to 127.0.0.1 by default, no
credentials in params, files or messages."""

from __future__ import annotations

import os
import re

import keras
import pytest

from captcha_ocr.config import Params
from captcha_ocr.core.model import CaptchaReader
from captcha_ocr.tracking import redact

from ..conftest import PROJECT_ROOT

CODE_DIRS = ("src", "components", "pipeline", "bench")


def project_files(*suffixes: str) -> list:
    files = []
    for folder in CODE_DIRS:
        files += [p for p in (PROJECT_ROOT / folder).rglob("*") if p.suffix in suffixes]
    return [p for p in files if ".egg-info" not in str(p)]


def test_a_model_with_code_in_it_is_refused(tmp_path):
    # A Lambda layer carries Python bytecode: loading it would run the sender's code.
    image = keras.Input((50, 200, 1))
    evil = keras.Model(image, keras.layers.Lambda(lambda x: x * 2)(image))
    path = tmp_path / "evil.keras"
    evil.save(path)
    with pytest.raises(ValueError, match="safe_mode"):
        CaptchaReader.load(path)


def test_predict_refuses_a_model_with_code_by_name(tmp_path, captcha_pngs, capsys):
    from captcha_ocr.cli import main

    image = keras.Input((50, 200, 1))
    keras.Model(image, keras.layers.Lambda(lambda x: x * 2)(image)).save(tmp_path / "evil.keras")
    (tmp_path / "one.png").write_bytes(next(iter(captcha_pngs.values())))

    code = main(["predict", "--model", str(tmp_path / "evil.keras"), str(tmp_path / "one.png")])
    err = capsys.readouterr().err
    assert code == 1
    assert "evil.keras" in err and "safe_mode" in err and "Traceback" not in err


UNSAFE = [
    (r"safe_mode\s*=\s*False", "a model loaded with safe_mode off"),
    (r"^\s*(import|from)\s+(c?pickle|cloudpickle|dill|joblib)\b", "a pickle module"),
    (r"allow_pickle\s*=\s*True", "NumPy unpickling"),
    (r"yaml\.load\(", "yaml.load (use yaml.safe_load)"),
    (r"torch\.load\(", "torch.load unpickles"),
    (r"\"0\.0\.0\.0\"|'0\.0\.0\.0'", "a default bind to every interface"),
    (r"Image\.open\((?!.*formats=)", "Pillow free to pick any format, PostScript too"),
]


@pytest.mark.parametrize(("pattern", "what"), UNSAFE, ids=[w for _, w in UNSAFE])
def test_no_unsafe_loading_or_binding_in_the_code(pattern, what):
    found = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}"
        for path in project_files(".py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(pattern, line)
    ]
    assert found == [], f"{what} in {found}"


def test_the_package_never_hands_a_model_to_mlflow_to_load():
    # MLflow's loaders unpickle or run what a model folder holds; readers.py
    # checks MLmodel and opens only the .keras file, in safe mode.
    loaders = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}"
        for path in (PROJECT_ROOT / "src").rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"(pyfunc|mlflow\.\w+)\.load_model\(", line)
    ]
    assert loaders == [], f"an MLflow model loader in {loaders}"


def test_mlflow_servers_default_to_loopback():
    # README commands and tests pass -h 127.0.0.1; this guards the default
    # for anyone who leaves it out, should an MLflow upgrade change it.
    from mlflow.cli import cli
    from mlflow.models.cli import commands

    for command in (cli.commands["server"], commands.commands["serve"]):
        (host,) = [p for p in command.params if p.name == "host"]
        assert host.default == "127.0.0.1", command.name


def test_no_param_is_a_credential():
    names = list(Params().flat())
    assert not [n for n in names if re.search(r"pass|secret|token|credential|auth", n)], names


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://alice:s3cret@mlflow.example.org:5000", "http://mlflow.example.org:5000"),
        ("https://token@mlflow.example.org/path", "https://mlflow.example.org/path"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_credentials_in_a_tracking_uri_are_never_written(uri, shown):
    assert redact(uri) == shown


def test_an_unusable_tracking_server_is_named_without_its_password(monkeypatch):
    from captcha_ocr.errors import CaptchaOcrError
    from captcha_ocr.tracking import use_experiment
    from tests.helpers import free_port

    port = free_port()  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:s3cret@127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(CaptchaOcrError, match=f"tracking at http://127.0.0.1:{port} is not") as err:
        use_experiment()
    assert "s3cret" not in str(err.value)


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 160 60\nnewpath 0 0 moveto stroke\n"


def test_an_image_file_never_makes_pillow_run_a_program(tmp_path, monkeypatch):
    # Pillow opens PostScript by running Ghostscript (`gs`), whatever the file
    # is called. A `gs` on PATH that leaves a mark shows whether it was run.
    from captcha_ocr.core.images import ImageError, decode_image

    mark = tmp_path / "gs-ran"
    fake_gs = tmp_path / "bin" / "gs"
    fake_gs.parent.mkdir()
    fake_gs.write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    fake_gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_gs.parent}:{os.environ['PATH']}")
    with pytest.raises(ImageError, match="unknown format"):
        decode_image(EPS, 50, 200)
    assert not mark.exists()
