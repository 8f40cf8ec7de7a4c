"""The demo on a registered model: it names the version that answers."""

from __future__ import annotations

import pytest
import requests
from mlflow import MlflowClient

from captcha_ocr import cli
from captcha_ocr.core.images import decode_image
from captcha_ocr.core.model import CaptchaReader
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.serving.demo import create_app
from captcha_ocr.serving.predict import Predictor, resolve_model_uri

from ..registry.conftest import register
from .conftest import serving

NAME = "captcha-ocr"


def test_alias_is_resolved_once_and_the_page_names_that_version(store, reader_path, captcha_pngs):
    png = next(iter(captcha_pngs.values()))
    v1 = register(reader_path, NAME, png, 0.5, 0.2)
    v2 = register(reader_path, NAME, png, 0.9, 0.05)
    client = MlflowClient()
    client.set_registered_model_alias(NAME, "champion", v2)

    predictor = Predictor(f"models:/{NAME}@champion")
    assert predictor.source == {
        "kind": "registered model",
        "uri": f"models:/{NAME}/{v2}",
        "name": NAME,
        "version": v2,
        "alias": "champion",
        "run_id": client.get_model_version(NAME, v2).run_id,
        "test_exact_match": "0.9",
    }
    # The alias moves on; the loaded model is still version 2 and says so.
    client.set_registered_model_alias(NAME, "champion", v1)
    with serving(create_app(predictor, {})) as url:
        answer = requests.post(
            f"{url}/api/read", files={"file": ("a.png", png, "image/png")}, timeout=60
        ).json()
    assert answer["model"]["version"] == v2
    (text,), _ = CaptchaReader.load(reader_path).read(decode_image(png, 50, 200)[None])
    assert answer["text"] == text
    assert resolve_model_uri(f"models:/{NAME}/{v1}")["version"] == v1


def test_unknown_alias_is_a_clear_error(store, reader_path, captcha_pngs, capsys):
    register(reader_path, NAME, next(iter(captcha_pngs.values())), 0.5, 0.2)
    with pytest.raises(CaptchaOcrError, match=f"models:/{NAME}@nobody"):
        Predictor(f"models:/{NAME}@nobody")
    assert cli.main(["demo", "--model", f"models:/{NAME}@nobody"]) == 1
    err = capsys.readouterr().err
    assert "captcha-ocr demo: error: models:/captcha-ocr@nobody" in err
    assert "--model models/export" in err


def test_a_logged_model_uri_is_read_like_its_registered_version(store, reader_path, captcha_pngs):
    png = next(iter(captcha_pngs.values()))
    version = register(reader_path, NAME, png, 0.5, 0.2)
    logged = MlflowClient().get_model_version(NAME, version).source  # models:/m-<id>
    assert logged.startswith("models:/m-")
    images = list(decode_image(png, 50, 200)[None])
    texts, _ = Predictor(f"models:/{NAME}/{version}").read(images)
    assert Predictor(logged).read(images)[0] == texts
