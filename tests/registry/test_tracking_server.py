"""Register, promote and load by alias through a real `mlflow server` over HTTP.

The server runs on 127.0.0.1 with an sqlite backend and an artifacts folder,
the way a team would run it; the client talks to it only by HTTP.
"""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from captcha_ocr import tracking
from captcha_ocr.config import PromoteParams
from captcha_ocr.promotion.gate import promote
from captcha_ocr.serving.uploads import encode_image
from tests.helpers import stop

from ..mlflow_server import start_tracking_server
from .conftest import register

pytestmark = pytest.mark.slow
NAME = "captcha-ocr-remote"


@pytest.fixture
def tracking_server(tmp_path, monkeypatch):
    process, url = start_tracking_server(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.chdir(tmp_path)
    tracking.use_experiment()
    yield url, tmp_path / "artifacts"
    stop(process)  # the server and its workers


def test_register_promote_and_load_over_http(tracking_server, reader_file, captcha_pngs):
    url, artifacts = tracking_server
    pngs = list(captcha_pngs.values())
    gate = PromoteParams(min_exact_match=0.5)
    v1 = register(reader_file, NAME, pngs[0], exact_match=0.9, cer=0.02)
    assert promote(NAME, gate).after["champion"] == v1
    v2 = register(reader_file, NAME, pngs[0], exact_match=0.8, cer=0.01)
    result = promote(NAME, gate)
    assert result.after == {"champion": v1, "challenger": v2}

    assert mlflow.get_tracking_uri() == url
    aliases = MlflowClient().get_registered_model(NAME).aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": v1, "challenger": v2}
    # The server, not the client, stored the model files.
    assert any(artifacts.rglob("captcha_reader.keras"))

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    out = model.predict(pd.DataFrame({"image": [encode_image(p) for p in pngs[:2]]}))
    assert len(out) == 2 and set(out.columns) == {"text", "confidence"}
