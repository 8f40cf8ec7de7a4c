"""The data source is a DVC input: in a real git + DVC repo, a new source reruns
ingest without `-f`, and dvc.lock records the source and the zip it gave."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from captcha_ocr.steps.ingest import sha256_of

from ..conftest import PROJECT_ROOT
from ..tiny import set_source


def dvc(root: Path, env: dict[str, str], *args: str, ok: bool = True) -> str:
    done = subprocess.run(["dvc", *args], cwd=root, env=env, capture_output=True, text=True)
    assert (done.returncode == 0) is ok, f"dvc {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def small_zip(path: Path, captcha_zip: Path, count: int) -> Path:
    with zipfile.ZipFile(captcha_zip) as source, zipfile.ZipFile(path, "w") as out:
        for name in sorted(n for n in source.namelist() if n.endswith(".png"))[:count]:
            out.writestr(name, source.read(name))
    return path


def locked_ingest(root: Path) -> tuple[str, str]:
    """The source dvc.lock records for ingest, and the digest ingest.json holds."""
    stage = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["ingest"]
    source = stage["params"]["params.yaml"]["ingest"]["source"]
    return source, json.loads((root / "data/raw/ingest.json").read_text())["sha256"]


@pytest.fixture
def repo(tmp_path, captcha_zip):
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(PROJECT_ROOT / "src", root / "src", ignore=shutil.ignore_patterns("*.pyc"))
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    env = {k: v for k, v in os.environ.items() if k != "CAPTCHA_OCR_SOURCE"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for role in ("AUTHOR", "COMMITTER"):
        env |= {f"GIT_{role}_NAME": "test", f"GIT_{role}_EMAIL": "test@example.org"}
    zips = [small_zip(tmp_path / f"v{i}.zip", captcha_zip, n) for i, n in ((1, 30), (2, 33))]
    set_source(root / "params.yaml", zips[0])
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(command, cwd=root, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "project"], cwd=root, env=env, check=True)
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
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "ingest v1"], cwd=root, env=env, check=True)
    output = dvc(root, env, "exp", "run", "-S", f"ingest.source={v2}", "ingest")
    assert "Running stage 'ingest'" in output
    assert locked_ingest(root) == (str(v2), sha256_of(v2))
    assert yaml.safe_load((root / "params.yaml").read_text())["ingest"]["source"] == str(v2)
