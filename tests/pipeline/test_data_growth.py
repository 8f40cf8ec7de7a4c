"""The data grows by 10%: `dvc repro` in a real git + DVC project reruns from
ingest without -f, no old test captcha enters training, and promote compares
the new model with the champion on the same test images, without --force."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from ..dvc_project import commit, dvc, make_project, small_zip
from ..helpers import set_source, tiny_params

pytestmark = pytest.mark.slow

STAGES = ["ingest", "preprocess", "train", "evaluate", "export", "register", "promote"]


def splits(root) -> dict[str, set[str]]:
    return {
        name: set(pd.read_csv(root / f"data/splits/{name}.csv", dtype=str)["sha256"])
        for name in ("train", "val", "test")
    }


def test_ten_percent_more_images_keep_the_test_split_and_promote_on_equal_terms(
    tmp_path, captcha_zip
):
    first, grown = (small_zip(tmp_path / f"{n}.zip", captcha_zip, n) for n in (200, 220))
    root = tmp_path / "project"
    env = make_project(root, first)
    tiny_params(root / "params.yaml", epochs=1)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["preprocess"]["limit"] = None
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(root, env, "repro")
    commit(root, env, "model on 200 captchas")
    before = splits(root)
    v1 = json.loads((root / "reports/promotion.json").read_text())
    assert v1["after"]["champion"] == "1"

    set_source(root / "params.yaml", grown)
    output = dvc(root, env, "repro")
    assert [s for s in STAGES if f"Running stage '{s}'" in output] == STAGES
    after = splits(root)
    assert before["test"] < after["test"]  # new test images: the champion must be rescored
    assert not (before["test"] | before["val"]) & after["train"]
    assert sum(map(len, after.values())) == 220

    promotion = json.loads((root / "reports/promotion.json").read_text())
    assert promotion["candidate"] == "2" and promotion["before"]["champion"] == "1"
    images = len(after["test"])
    assert f"both read the candidate's {images} test images" in promotion["reason"]
    assert "forced" not in promotion["reason"]
    new = pd.concat(pd.read_csv(root / f"data/splits/{n}.csv", dtype=str) for n in after)
    ingest = json.loads((root / "data/raw/ingest.json").read_text())
    assert (new["first_seen"] == ingest["sha256"]).sum() == 20
