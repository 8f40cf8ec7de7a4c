"""Register, promote and load by alias against a real MLflow sqlite store."""

from __future__ import annotations

import re

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from captcha_ocr.config import PromoteParams
from captcha_ocr.core.images import decode_image
from captcha_ocr.promotion.gate import PromotionError, promote
from captcha_ocr.serving.uploads import encode_image

from .conftest import register as register_as

NAME = "captcha-ocr-test"
GATE = PromoteParams(min_exact_match=0.5, min_gain=0.0)


def register(reader_file, png: bytes, exact_match: float, cer: float) -> str:
    return register_as(reader_file, NAME, png, exact_match, cer)


def aliases() -> dict[str, str]:
    return {k: str(v) for k, v in MlflowClient().get_registered_model(NAME).aliases.items()}


def test_gate_keeps_the_better_champion(store, reader_file, captcha_pngs):
    png = next(iter(captcha_pngs.values()))
    v1 = register(reader_file, png, exact_match=0.4, cer=0.3)
    result = promote(NAME, GATE)
    assert not result.promoted and aliases() == {"challenger": v1}

    v2 = register(reader_file, png, exact_match=0.9, cer=0.02)
    assert promote(NAME, GATE).promoted
    assert aliases() == {"champion": v2, "challenger": v1}

    v3 = register(reader_file, png, exact_match=0.85, cer=0.01)
    result = promote(NAME, GATE)
    assert not result.promoted and "not better" in result.reason
    assert aliases() == {"champion": v2, "challenger": v3}
    assert result.before["champion"] == result.after["champion"] == v2

    forced = promote(NAME, GATE, version=v3, force=True, reason="hotfix for n/m")
    assert forced.promoted and aliases()["champion"] == v3
    tags = MlflowClient().get_model_version(NAME, v3).tags
    assert tags["promotion.forced_reason"] == "hotfix for n/m"
    assert tags["test_exact_match"] == "0.85" and tags["git_commit"]


def test_force_without_reason_changes_nothing(store, reader_file, captcha_pngs):
    register(reader_file, next(iter(captcha_pngs.values())), exact_match=0.9, cer=0.0)
    with pytest.raises(PromotionError, match="--reason"):
        promote(NAME, GATE, force=True)
    assert aliases() == {}


def test_champion_loads_by_alias_and_reads_images(store, reader_file, captcha_pngs):
    pngs = list(captcha_pngs.values())
    register(reader_file, pngs[0], exact_match=0.9, cer=0.0)
    promote(NAME, GATE)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    out = model.predict(pd.DataFrame({"image": [encode_image(p) for p in pngs]}))
    assert list(out.columns) == ["text", "confidence"] and len(out) == len(pngs)

    # The same answers as the network it serves (int8, OpenVINO): the registry adds no drift.
    from captcha_ocr.core.runtimes import OpenVinoReader
    from captcha_ocr.core.vocabulary import Vocabulary

    vocabulary = Vocabulary.load(reader_file.with_name("vocabulary.json"))
    reader = OpenVinoReader(reader_file.with_name("captcha_network_int8.onnx"), vocabulary)
    texts, confidence = reader.read(np.stack([decode_image(p, 50, 200) for p in pngs]))
    assert out["text"].tolist() == texts
    np.testing.assert_allclose(out["confidence"], confidence, rtol=1e-5)


def test_promoting_a_missing_version_names_it_and_changes_nothing(store, reader_file, captcha_pngs):
    v1 = register(reader_file, next(iter(captcha_pngs.values())), exact_match=0.9, cer=0.02)
    promote(NAME, GATE)
    with pytest.raises(PromotionError, match="version 99"):
        promote(NAME, GATE, version="99")
    assert aliases() == {"champion": v1}


@pytest.mark.parametrize("name", ["it's", "x' OR name LIKE '%"])
def test_a_model_name_that_would_break_the_search_filter_is_refused(store, name):
    with pytest.raises(PromotionError, match=re.escape(repr(name))):
        promote(name, GATE)
    assert MlflowClient().search_registered_models() == []  # no lock left behind
