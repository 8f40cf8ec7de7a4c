"""Promotion across data versions, against a real MLflow sqlite store.

Version 1 is scored on the test split of set A; version 2 on the test split of
A plus new images. The gate reads the champion from the registry, scores it on
version 2's test images, and decides without --force.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from captcha_ocr import paths
from captcha_ocr.config import PreprocessParams, PromoteParams
from captcha_ocr.core.metrics import character_error_rate, exact_match
from captcha_ocr.core.model import CaptchaReader
from captcha_ocr.promotion.gate import promote
from captcha_ocr.promotion.rescoring import on_equal_terms
from captcha_ocr.registry import register_reader
from captcha_ocr.steps.preprocess import load_split, preprocess, split_identity

NAME = "captcha-ocr-versions"
GATE = PromoteParams(min_exact_match=0.0, min_gain=0.0)


def data_version(folder: Path, version: str, pngs: dict[str, bytes]) -> str:
    """Ingest-like: these images and this version; then preprocess. The test split's id."""
    images = folder / paths.RAW_IMAGES
    images.mkdir(parents=True, exist_ok=True)
    for name, data in pngs.items():
        (images / name).write_bytes(data)
    paths.INGEST_INFO.write_text(json.dumps({"sha256": version}))
    preprocess(PreprocessParams())
    return split_identity("test")


def register(reader_file: Path, png: bytes, split: str, exact: float, cer: float) -> str:
    tags = {"dataset_sha256": "d" * 64, "test_split_sha256": split, "params": "{}"}
    metrics = {"test_exact_match": exact, "test_cer": cer}
    with mlflow.start_run():
        return str(register_reader(reader_file, NAME, metrics, tags, png).version)


@pytest.fixture
def versions(store, reader_file, captcha_zip):
    """v1 champion on set A's test split; the folder then holds A + 10% new images."""
    with zipfile.ZipFile(captcha_zip) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".png"))[:220]
        pngs = {Path(n).name: archive.read(n) for n in names}
    first = dict(list(pngs.items())[:200])
    split_a = data_version(store, "a" * 64, first)
    png = next(iter(pngs.values()))
    v1 = register(reader_file, png, split_a, exact=0.9, cer=0.02)
    assert promote(NAME, GATE).promoted
    split_b = data_version(store, "b" * 64, pngs)
    assert split_b != split_a
    return v1, split_a, split_b, png


def champion_on_this_split(reader_file: Path) -> tuple[float, float]:
    labels = pd.read_csv(paths.split_csv("test"), dtype=str)["label"].tolist()
    texts, _ = CaptchaReader.load(reader_file).read(load_split("test")["images"])
    return exact_match(labels, texts), character_error_rate(labels, texts)


def test_a_candidate_on_new_data_is_compared_on_its_own_test_images(versions, reader_file):
    v1, split_a, split_b, png = versions
    # v1's own tag (0.9 on split A) would beat v2; on v2's test images it reads
    # what the untrained reader reads, and v2 wins on equal terms.
    v2 = register(reader_file, png, split_b, exact=0.5, cer=0.1)
    result = promote(NAME, GATE, rescore=on_equal_terms)

    exact, cer = champion_on_this_split(reader_file)
    assert exact < 0.5
    assert result.promoted and result.after["champion"] == v2
    images = len(pd.read_csv(paths.split_csv("test")))
    assert f"exact match 0.5000 beats champion's {exact:.4f}" in result.reason
    assert f"both read the candidate's {images} test images, split {split_b[:12]}" in (
        result.reason
    )
    assert "v1 had exact match 0.9000" in result.reason
    client = MlflowClient()
    candidate, champion = (client.get_model_version(NAME, v).tags for v in (v2, v1))
    assert float(candidate["promotion.champion_test_exact_match"]) == pytest.approx(exact)
    assert float(candidate["promotion.champion_test_cer"]) == pytest.approx(cer)
    assert candidate["promotion.champion_test_split_sha256"] == split_b
    assert candidate["test_exact_match"] == "0.5"  # its own score stays
    assert champion["test_exact_match"] == "0.9" and champion["test_split_sha256"] == split_a
    assert float(champion[f"test_exact_match.{split_b[:12]}"]) == pytest.approx(exact)


def test_a_worse_candidate_on_new_data_stays_challenger(versions, reader_file):
    v1, _, split_b, png = versions
    # An untrained reader can emit up to 50 characters for 5: a CER up to 10. The
    # candidate's 20 is worse than anything the champion can score.
    v2 = register(reader_file, png, split_b, exact=0.0, cer=20.0)
    result = promote(NAME, GATE, rescore=on_equal_terms)
    assert not result.promoted
    assert result.after == {"champion": v1, "challenger": v2}
    assert "not better than champion v1" in result.reason
    assert "CER 20.0000 vs" in result.reason and "both read the candidate's" in result.reason


def test_without_the_candidates_test_split_the_gate_refuses_and_says_why(versions, reader_file):
    v1, _, _, png = versions
    v2 = register(reader_file, png, "c" * 64, exact=0.99, cer=0.0)
    result = promote(NAME, GATE, rescore=on_equal_terms)
    assert not result.promoted and result.after["challenger"] == v2
    assert "scored on another test split" in result.reason
    assert "v1 could not be scored on the candidate's test split" in result.reason
    assert f"is not the candidate's ({'c' * 12})" in result.reason
