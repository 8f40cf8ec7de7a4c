"""The registered model's environment, built offline from what the model declares.

Anything that builds an environment from the model (``mlflow models serve``
without ``--env-manager local``, ``build-docker``, MLServer) installs its
requirements.txt from an index. So the model must name only public packages
this project needs, never ``captcha-ocr`` (that name on the public index is
someone else's), and must load with its own code and those packages alone.
The environment here is a folder holding just the declared distributions and
their dependencies, linked from this venv; Python runs with no site-packages
and without this checkout on its path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import Distribution
from pathlib import Path, PurePath

import mlflow
import pytest
import yaml

from bench.serving_size import closure
from captcha_ocr.core.images import decode_image
from captcha_ocr.core.runtimes import OpenVinoReader
from captcha_ocr.core.vocabulary import Vocabulary

from ..conftest import PROJECT_ROOT
from .conftest import register

pytestmark = pytest.mark.slow
NAME = "captcha-ocr-env"

LOAD = """
import base64, json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
import captcha_ocr
image = base64.b64encode(open(sys.argv[2], "rb").read()).decode()
texts = model.predict(pd.DataFrame({"image": [image]}))["text"].tolist()
print(json.dumps({"code": captcha_ocr.__file__, "texts": texts}))
"""


def link_site(folder: Path, dists: dict[str, Distribution]) -> Path:
    """A site folder with each distribution's top-level files linked in, nothing else."""
    folder.mkdir()
    for dist in dists.values():
        for top in {PurePath(f).parts[0] for f in dist.files or []} - {".."}:
            target = folder / top
            if not target.exists():
                target.symlink_to(Path(dist.locate_file(top)))
    return folder


def test_the_model_builds_from_its_own_code_and_public_packages(
    store, reader_file, captcha_pngs, tmp_path
):
    png = next(iter(captcha_pngs.values()))
    version = register(reader_file, NAME, png, 0.9, 0.0)
    model = Path(
        mlflow.artifacts.download_artifacts(f"models:/{NAME}/{version}", dst_path=str(tmp_path))
    )
    declared = (model / "requirements.txt").read_text().split()
    assert [r for r in declared if "captcha" in r] == []
    pinned = (PROJECT_ROOT / "constraints.txt").read_text().splitlines()
    assert set(declared) <= {line.strip() for line in pinned}, "each pinned as in constraints.txt"
    assert not [r for r in declared if r.split("==")[0] in ("tensorflow-cpu", "keras")]
    python = yaml.safe_load((model / "python_env.yaml").read_text())["python"]
    assert python.startswith("3.11."), python

    site = link_site(tmp_path / "site", closure(declared, strict=True))
    (tmp_path / "one.png").write_bytes(png)
    env = {"PATH": os.defpath, "HOME": str(tmp_path), "PYTHONPATH": str(site)}
    loaded = subprocess.run(
        [sys.executable, "-S", "-c", LOAD, str(model), str(tmp_path / "one.png")],
        cwd=tmp_path,
        env=env | {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    answer = json.loads(loaded.stdout.splitlines()[-1])
    assert Path(answer["code"]).is_relative_to(model / "code")
    vocabulary = Vocabulary.load(reader_file.with_name("vocabulary.json"))
    served = OpenVinoReader(reader_file.with_name("captcha_network_int8.onnx"), vocabulary)
    (text,), _ = served.read(decode_image(png, 50, 200)[None])
    assert answer["texts"] == [text]
