"""A user's own captchas end to end: a folder of 48 RGB captchas of 4 to 6 characters
over 0-9A-Z, made here with the ``captcha`` library, goes through `dvc repro` with
the auto params (only ingest.source set, plus a tiny network for speed) and is
read by `captcha-ocr predict`."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml
from PIL import Image

from ..dvc_project import commit, make_project
from ..own_data import SYMBOLS, captcha_folder

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    base = tmp_path_factory.mktemp("own")
    labels = captcha_folder(base / "my_captchas", 48)
    root = base / "project"
    env = make_project(root, base / "my_captchas", epochs=2)
    params = yaml.safe_load((root / "params.yaml").read_text())
    # The champion then serves the float network, which reads as the Keras reader
    # does (a 2-epoch network's int8 copy may read its noise otherwise).
    params["export"]["int8"] = False
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit(root, env, "export without int8")
    output = run(["dvc", "repro"], root, env)
    return root, env, output, labels


def test_the_preprocess_params_stayed_auto(repo):
    root, *_ = repo
    preprocess = yaml.safe_load((root / "params.yaml").read_text())["preprocess"]
    for key in ("image_height", "image_width", "channels", "allowed_chars"):
        assert preprocess[key] == "auto"


def test_every_stage_ran_and_the_auto_values_are_recorded(repo):
    root, _, output, labels = repo
    for stage in ("ingest", "preprocess", "train", "evaluate", "export", "promote"):
        assert f"Running stage '{stage}'" in output
    assert "images 160x60, 3 channel(s)" in output
    report = json.loads((root / "reports/data_report.json").read_text())
    resolved = report["resolved"]
    assert (resolved["image_height"], resolved["image_width"], resolved["channels"]) == (60, 160, 3)
    assert report["accepted"] == len(labels) and report["rejected"] == []
    vocabulary = json.loads((root / "data/vocabulary.json").read_text())
    for key in ("image_height", "image_width", "channels", "min_label_length", "max_label_length"):
        assert vocabulary[key] == resolved[key], key
    assert set(vocabulary["characters"]) <= set(SYMBOLS)
    # What readers read by goes with the exported network too, and is in the reader.
    assert json.loads((root / "models/export/vocabulary.json").read_text()) == vocabulary
    from captcha_ocr.core.model import CaptchaReader

    reader = CaptchaReader.load(root / "models/export/captcha_reader.keras")
    assert (reader.height, reader.width, reader.channels) == (60, 160, 3)
    assert reader.vocabulary.characters == vocabulary["characters"]
    assert reader.label_lengths == [vocabulary["min_label_length"], vocabulary["max_label_length"]]

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    run_id = json.loads((root / "models/train/mlflow_run.json").read_text())["run_id"]
    params = mlflow.get_run(run_id).data.params
    assert params["preprocess.channels"] == "auto"
    assert (params["data.image_width"], params["data.channels"]) == ("160", "3")
    assert params["data.charset"] == vocabulary["characters"]


def test_predict_reads_the_users_captchas_in_colour(repo):
    root, env, _, labels = repo
    images = [str(p) for p in sorted((root / "data/raw/images").rglob("*.png"))[:3]]
    # One of another size and format: fitted, not stretched, and read all the same.
    other = root.parent / "bigger.jpg"
    picture = Image.open(images[0]).convert("RGB").resize((320, 120))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG")
    other.write_bytes(buffer.getvalue())
    files = [*images, str(other)]
    rows = json.loads(run(["captcha-ocr", "predict", "--json", *files], root, env))
    assert [r["file"] for r in rows] == files
    characters = json.loads((root / "data/vocabulary.json").read_text())["characters"]
    assert all(set(r["text"]) <= set(characters) for r in rows), rows
    # The ONNX network takes the three channels too, and reads as the reader does.
    command = ["captcha-ocr", "predict", "--json", "--model", "models/export/captcha_network.onnx"]
    onnx = json.loads(run([*command, *files], root, env))
    assert [r["text"] for r in onnx] == [r["text"] for r in rows]
    # And the registered champion, through the registry.
    command = ["captcha-ocr", "predict", "--json", "--model", "models:/captcha-ocr@champion"]
    champion = json.loads(run([*command, *files], root, env))
    assert [r["text"] for r in champion] == [r["text"] for r in rows]
