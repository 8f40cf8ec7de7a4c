"""``captcha-ocr deploy kserve``: the InferenceService manifest for a registered version.

The manifest is checked against the kserve SDK's InferenceService models in the
serving venv (``validate_inference_service.py``): every field known, every
value of its type, nothing required missing. The checker itself is shown to
refuse a broken manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from captcha_ocr import cli
from captcha_ocr.config import PromoteParams
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.promotion.gate import promote
from captcha_ocr.serving.deploy import inference_service

from ..registry.conftest import register
from .serve_venv import run_in_venv, serve_venv

NAME = "captcha-ocr"
CHECKER = Path(__file__).with_name("validate_inference_service.py")


def validate(manifest: dict) -> str:
    done = run_in_venv(serve_venv(), [str(CHECKER)], input=json.dumps(manifest))
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return done.stdout.strip()


@pytest.fixture
def champion(store, reader_file, captcha_pngs) -> str:
    register(reader_file, NAME, next(iter(captcha_pngs.values())), 0.5, 0.2)
    version = register(reader_file, NAME, next(iter(captcha_pngs.values())), 0.9, 0.05)
    promote(NAME, PromoteParams(min_exact_match=0.5))
    assert str(MlflowClient().get_model_version_by_alias(NAME, "champion").version) == version
    return version


@pytest.mark.slow
def test_the_manifest_serves_the_champion_version_and_is_a_valid_inference_service(
    champion, tmp_path, capsys
):
    out = tmp_path / "isvc.yaml"
    argv = ["deploy", "kserve", "--model", f"models:/{NAME}@champion", "-o", str(out)]
    storage = "s3://models/captcha-ocr/2"
    assert cli.main([*argv, "--storage-uri", storage, "--namespace", "ocr"]) == 0
    assert f"kubectl apply -f {out}" in capsys.readouterr().out
    manifest = yaml.safe_load(out.read_text())
    assert manifest["kind"] == "InferenceService" and manifest["metadata"]["namespace"] == "ocr"
    # The version the alias meant when the manifest was written, and how it serves.
    annotations = manifest["metadata"]["annotations"]
    assert annotations["captcha-ocr/model"] == f"models:/{NAME}/{champion}"
    assert annotations["captcha-ocr/serving-runtime"] == "openvino-int8"
    (container,) = manifest["spec"]["predictor"]["containers"]
    assert {"name": "STORAGE_URI", "value": storage} in container["env"]
    assert container["args"][:4] == ["--model_name", NAME, "--model_dir", "/mnt/models"]
    assert validate(manifest) == "ok"

    broken = json.loads(json.dumps(manifest))
    broken["spec"]["predictor"]["storageUri"] = storage  # not a field of a custom predictor
    assert "has no field 'storageUri'" in validate(broken)
    del broken["spec"]["predictor"]["storageUri"]
    broken["spec"]["predictor"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    assert "containerPort: '8080' is not int" in validate(broken)


def test_a_store_on_this_machine_needs_a_storage_uri(champion, tmp_path, capsys):
    out = tmp_path / "isvc.yaml"
    assert cli.main(["deploy", "kserve", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"models:/{NAME}/{champion}: its files are at" in err
    assert "--storage-uri" in err and not out.exists()
    assert cli.main(["deploy", "kserve", "--name", "Not_A_Name", "--storage-uri", "s3://b"]) == 1
    assert "--name 'Not_A_Name'" in capsys.readouterr().err
    assert cli.main(["deploy", "kserve", "--model", f"models:/{NAME}@nobody"]) == 1
    assert f"models:/{NAME}@nobody" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("tag", "served"),
    [("openvino-int8", "openvino-int8"), ("onnxruntime-float32", "openvino-float32")],
)
def test_the_manifest_names_the_runtime_the_predictor_reads_with(tag, served):
    # The serving image has OpenVINO alone: a float version's pyfunc uses
    # onnxruntime, its predictor reads the same float network under OpenVINO.
    source = {"uri": f"models:/{NAME}/3", "serving_runtime": tag}
    manifest = inference_service(NAME, "s3://models/x", source)
    assert manifest["metadata"]["annotations"]["captcha-ocr/serving-runtime"] == served


def test_a_version_with_an_unknown_runtime_tag_is_refused_by_name():
    source = {"uri": f"models:/{NAME}/3", "serving_runtime": "tensorrt-fp16"}
    with pytest.raises(CaptchaOcrError, match=r"serving_runtime tag 'tensorrt-fp16': expected"):
        inference_service(NAME, "s3://models/x", source)
