"""The registered model is code plus a .keras file: nothing to unpickle."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import yaml

from .conftest import register

NAME = "captcha-ocr-code"


def test_registered_reader_holds_no_pickle(store, reader_file, captcha_pngs):
    version = register(reader_file, NAME, next(iter(captcha_pngs.values())), 0.9, 0.0)
    folder = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{NAME}/{version}", dst_path=str(store / "download")
        )
    )
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert any(p.suffix == ".keras" for p in files)
    assert [p.name for p in files if p.suffix in (".pkl", ".pickle", ".cloudpickle")] == []
    pyfunc = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    # Loaded by running the stored source file, not by unpickling an object.
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert pyfunc["model_code_path"].endswith("pyfunc_model.py")


def test_a_registered_network_that_is_no_onnx_model_is_named_by_its_uri(
    store, reader_file, captcha_pngs
):
    from captcha_ocr.serving.predict import Predictor
    from captcha_ocr.serving.readers import NotOurModel

    version = register(reader_file, NAME, next(iter(captcha_pngs.values())), 0.9, 0.0)
    (stored,) = (store / "mlartifacts").rglob("artifacts/*_int8.onnx")
    stored.write_bytes(b"\x80\x04not ONNX, a pickle would start like this")
    uri = f"models:/{NAME}/{version}"
    message = f"^{uri}/artifacts/{stored.name}: is not an ONNX model"
    with pytest.raises(NotOurModel, match=message):
        Predictor(uri)
