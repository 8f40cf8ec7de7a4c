"""The data source is a DVC input: in a real git + DVC repo, a new source reruns
ingest without `-f`, and dvc.lock records the source and the zip it gave."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from captcha_ocr.steps.ingest import sha256_of

from ..dvc_project import commit, dvc, make_project, small_zip
from ..helpers import set_source


def locked_ingest(root: Path) -> tuple[str, str]:
    """The source dvc.lock records for ingest, and the digest ingest.json holds."""
    stage = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["ingest"]
    source = stage["params"]["params.yaml"]["ingest"]["source"]
    return source, json.loads((root / "data/raw/ingest.json").read_text())["sha256"]


@pytest.fixture
def repo(tmp_path, captcha_zip):
    zips = [small_zip(tmp_path / f"v{i}.zip", captcha_zip, n) for i, n in ((1, 30), (2, 33))]
    root = tmp_path / "project"
    env = make_project(root, zips[0])
    return root, env, zips


def test_a_new_source_reruns_ingest_and_is_locked(repo):
    root, env, (v1, v2) = repo
    assert "Running stage 'ingest'" in dvc(root, env, "repro", "ingest")
    assert locked_ingest(root) == (str(v1), sha256_of(v1))
    assert "Running stage" not in dvc(root, env, "repro", "ingest")

    set_source(root / "params.yaml", v2)
    status = dvc(root, env, "status", "ingest")
    assert "params.yaml" in status and "modified" in status
    assert "Running stage 'ingest'" in dvc(root, env, "repro", "ingest")
    assert locked_ingest(root) == (str(v2), sha256_of(v2))
    assert len(list((root / "data/raw/images").rglob("*.png"))) == 33


def test_dvc_exp_run_sets_the_source(repo):
    root, env, (v1, v2) = repo
    dvc(root, env, "repro", "ingest")
    commit(root, env, "ingest v1")
    output = dvc(root, env, "exp", "run", "-S", f"ingest.source={v2}", "ingest")
    assert "Running stage 'ingest'" in output
    assert locked_ingest(root) == (str(v2), sha256_of(v2))
    assert yaml.safe_load((root / "params.yaml").read_text())["ingest"]["source"] == str(v2)


def failed_repro(root: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["dvc", "repro", "ingest"], cwd=root, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0, done.stdout
    return done.stdout + done.stderr


def test_a_source_that_fails_leaves_the_last_ingest_in_place(repo):
    # DVC deletes a stage's outputs before it runs it, unless they persist.
    root, env, (v1, _) = repo
    dvc(root, env, "repro", "ingest")
    set_source(root / "params.yaml", root / "typo.zip")
    assert "typo.zip': no such file" in failed_repro(root, env)
    assert json.loads((root / "data/raw/ingest.json").read_text())["sha256"] == sha256_of(v1)
    assert len(list((root / "data/raw/images").rglob("*.png"))) == 30


def test_a_users_zip_saved_over_the_ingested_one_is_refused_not_lost(repo):
    root, env, (_, v2) = repo
    dvc(root, env, "repro", "ingest")
    own = root / "data/raw/captcha_images_v2.zip"
    own.write_bytes(v2.read_bytes())
    set_source(root / "params.yaml", "data/raw/captcha_images_v2.zip")
    assert "inside ingest's own output" in failed_repro(root, env)
    assert own.read_bytes() == v2.read_bytes()
