"""The registry as teams run it: `mlflow server` on PostgreSQL, artifacts in a
bucket (the S3 stand-in) proxied by the server. Registration, two promotions at
once under the lock, `mlflow models serve` of the champion and the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from captcha_ocr import store, tracking
from captcha_ocr.config import PromoteParams
from captcha_ocr.core.images import decode_image
from captcha_ocr.core.runtimes import OpenVinoReader
from captcha_ocr.core.vocabulary import Vocabulary
from captcha_ocr.promotion.gate import CHAMPION, promote
from captcha_ocr.registry import register_reader
from captcha_ocr.serving.demo import create_app
from captcha_ocr.serving.predict import Predictor
from captcha_ocr.serving.uploads import encode_image
from tests.demo.conftest import serving
from tests.helpers import free_port, stop, untrained_reader, wait_until_up
from tests.registry.test_concurrent_promotion import add_version, race

from .conftest import artifact_keys

pytestmark = pytest.mark.slow
# Versions made by the race test point at no model: none is ever loaded.
SOURCE = "s3://team/no-model"
AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")


@pytest.fixture
def on_server(team_server, tmp_path, monkeypatch):
    """This process as a team member's: the server's URL, and no S3 credentials at all."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_server.url)
    for key in AWS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    tracking.use_experiment()
    return team_server


@pytest.fixture(scope="module")
def reader_file(tmp_path_factory) -> Path:
    return untrained_reader(tmp_path_factory.mktemp("reader"), seed=5)


def register(reader_file: Path, name: str, png: bytes) -> str:
    with mlflow.start_run():
        metrics = {"test_exact_match": 0.9, "test_cer": 0.01}
        tags = {"test_split_sha256": "s" * 64, **store.reader_tags(reader_file)}
        return str(register_reader(reader_file, name, metrics, tags, png).version)


def test_registration_goes_to_postgres_and_the_bucket(on_server, reader_file, captcha_pngs):
    version = register(reader_file, "pg-registered", next(iter(captcha_pngs.values())))
    client = MlflowClient()
    found = store.find_version(client, "pg-registered", store.file_sha256(reader_file))
    assert found is not None and str(found.version) == version
    # The server wrote the model to the bucket; this client had no S3 credentials.
    keys = artifact_keys(on_server.s3, "mlflow/")
    assert any(key.endswith("/artifacts/MLmodel") for key in keys), keys[:20]
    assert store.store_id(client) == store.store_id(client)


def test_two_promotions_at_once_on_postgres_leave_the_better_champion(on_server):
    client = MlflowClient()
    gate = PromoteParams(min_exact_match=0.5, min_gain=0.0)
    for round_, better_first in enumerate((True, False, True)):
        name = f"pg-race-{round_}"
        client.create_registered_model(name)
        first = add_version(client, name, SOURCE, 0.8)
        promote(name, gate, version=first)
        good = add_version(client, name, SOURCE, 0.9)
        best = add_version(client, name, SOURCE, 0.95)
        order = [best, good] if better_first else [good, best]
        errors = race(*(lambda n=name, v=v: promote(n, gate, version=v) for v in order))
        assert errors == []
        assert str(client.get_model_version_by_alias(name, CHAMPION).version) == best


def test_models_serve_and_the_demo_read_the_champion(on_server, reader_file, captcha_pngs):
    name = "pg-served"
    pngs = list(captcha_pngs.values())[:3]
    version = register(reader_file, name, pngs[0])
    promote(name, PromoteParams(min_exact_match=0.5))
    # What the served int8 network reads (an untrained one: int8 and float may differ).
    vocabulary = Vocabulary.load(reader_file.with_name("vocabulary.json"))
    served = OpenVinoReader(reader_file.with_name("captcha_network_int8.onnx"), vocabulary)
    expected, _ = served.read(decode_image(pngs[0], 50, 200)[None])

    # The demo, in this process.
    with serving(create_app(Predictor(f"models:/{name}@champion"), {})) as url:
        answer = requests.post(
            f"{url}/api/read", files={"file": ("a.png", pngs[0], "image/png")}, timeout=60
        ).json()
    assert (answer["text"], answer["model"]["version"]) == (expected[0], version)

    # `mlflow models serve`, a process with no S3 credentials: artifacts come through the server.
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in AWS}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    command = ["mlflow", "models", "serve", "-m", f"models:/{name}@champion"]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"

    def pings() -> bool:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            return response.status == 200

    try:
        wait_until_up(pings, process, "mlflow models serve", lambda: process.stderr.read())
        body = {"dataframe_split": {"columns": ["image"], "data": [[encode_image(pngs[0])]]}}
        answer = requests.post(f"{url}/invocations", json=body, timeout=60).json()
        assert answer["predictions"][0]["text"] == expected[0], json.dumps(answer)[:500]
    finally:
        stop(process, grace=30)
