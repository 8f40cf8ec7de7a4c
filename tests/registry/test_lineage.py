"""Lineage from the registry back to the data: a real git + DVC project, a real
MLflow sqlite store, and the printed commands run to bring the splits back."""

from __future__ import annotations

import json
import shlex
import subprocess

import mlflow
import pytest

from captcha_ocr.config import Params, PromoteParams
from captcha_ocr.lineage import NOT_COMMITTED, data_tags, lineage
from captcha_ocr.promotion.gate import promote
from captcha_ocr.registry import register_reader

from ..dvc_project import commit, dvc, make_project, small_zip
from ..helpers import set_source

NAME = "captcha-ocr-lineage"
URI = f"models:/{NAME}@champion"


def register_from(root, reader_file, png: bytes) -> str:
    """Register a version with the tags export gives it, from the project at ``root``."""
    ingest = json.loads((root / "data/raw/ingest.json").read_text())
    params = Params.model_validate({"ingest": {"source": ingest["source"]}})
    tags = {
        "dataset_sha256": ingest["sha256"],
        "test_split_sha256": "t" * 64,
        "params": json.dumps(params.model_dump()),
        **data_tags(root),
    }
    with mlflow.start_run():
        metrics = {"test_exact_match": 1.0, "test_cer": 0.0}
        return str(register_reader(reader_file, NAME, metrics, tags, png).version)


@pytest.fixture
def project(store, captcha_zip):
    zips = [small_zip(store / f"v{i}.zip", captcha_zip, n) for i, n in ((1, 40), (2, 44))]
    root = store / "project"
    env = make_project(root, zips[0])
    dvc(root, env, "repro", "preprocess")
    return root, env, zips


def test_before_dvc_lock_is_committed_lineage_says_it_cannot(project, reader_file, captcha_pngs):
    root, _, (v1, _) = project
    assert data_tags(root)["data_commit"].startswith(NOT_COMMITTED)
    register_from(root, reader_file, next(iter(captcha_pngs.values())))
    promote(NAME, PromoteParams(min_exact_match=0.0))

    lines = "\n".join(lineage(URI, root))
    assert "cannot restore from git: no commit of dvc.lock here records" in lines
    # The same bytes give the same splits: re-ingesting the pinned zip is the way back.
    ingest = json.loads((root / "data/raw/ingest.json").read_text())
    source = shlex.quote(f"ingest.source={v1}")
    assert f"dvc exp run -S {source} -S ingest.sha256={ingest['sha256']}" in lines


def test_the_restore_command_quotes_what_the_registry_says():
    from captcha_ocr.lineage import _cannot

    evil = "x.zip'; touch /tmp/owned; echo '"
    (line,) = [
        x for x in _cannot({"dataset_sha256": "d" * 64}, {"source": evil}, {}) if "exp run" in x
    ]
    # One shell word per -S value, whatever the tag holds.
    words = shlex.split(line)
    assert words[:4] == ["dvc", "exp", "run", "-S"] and words[4] == f"ingest.source={evil}"


def test_the_printed_commands_bring_the_data_back(project, reader_file, captcha_pngs):
    root, env, (_, v2) = project
    data_commit = commit(root, env, "data v1")
    splits = {p.name: p.read_bytes() for p in (root / "data/splits").iterdir()}
    register_from(root, reader_file, next(iter(captcha_pngs.values())))
    promote(NAME, PromoteParams(min_exact_match=0.0))
    version = mlflow.MlflowClient().get_model_version_by_alias(NAME, "champion")
    assert version.tags["data_commit"] == data_commit

    # The data moves on: version 2 of the zip, committed.
    set_source(root / "params.yaml", v2)
    dvc(root, env, "repro", "preprocess")
    commit(root, env, "data v2")
    assert {p.name: p.read_bytes() for p in (root / "data/splits").iterdir()} != splits

    lines = lineage(URI, root)
    assert f"commit whose dvc.lock records this data: {data_commit}" in lines
    checkout = next(line.strip() for line in lines if line.strip().startswith("git checkout"))
    assert checkout == f"git checkout {data_commit}"
    assert "  dvc pull --with-deps preprocess" in "\n".join(lines)
    subprocess.run(checkout.split(), cwd=root, env=env, check=True, capture_output=True)
    dvc(root, env, "checkout", "--with-deps", "preprocess")  # the cache is local here
    assert {p.name: p.read_bytes() for p in (root / "data/splits").iterdir()} == splits


def test_a_uri_that_is_not_a_model_is_refused_by_name(store, capsys):
    from captcha_ocr.cli import main
    from captcha_ocr.lineage import LineageError

    assert main(["lineage", "runs:/abc"]) == 1
    assert "captcha-ocr lineage: error: runs:/abc: expected models:/" in capsys.readouterr().err

    with pytest.raises(LineageError, match="runs:/abc"):
        lineage("runs:/abc", store)
    with pytest.raises(LineageError, match=f"models:/{NAME}@champion: not found"):
        lineage(f"models:/{NAME}@champion", store)
