"""The hostile-input suite: bad input gets a clear error and loses no data.

Every case runs a real ``captcha-ocr STEP`` command in a copy of a project that
has been through every step once (tiny model, real captchas), then checks three
things: the exit code, that the message names the bad input, and that every file
under ``data/``, ``models/`` and ``reports/`` is byte for byte what it was.
``dvc repro`` is not used here: it deletes a stage's outputs before running it,
by design, so only the step commands can show that a step keeps the old ones.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers import tiny_params

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "captcha-ocr")
STEPS = ("ingest", "preprocess", "train", "evaluate", "export", "promote")
WATCHED = ("data", "models", "reports")


@dataclass
class Project:
    """A project folder that has run every step; commands run inside it."""

    root: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = os.environ.copy()
        env.pop("CAPTCHA_OCR_SOURCE", None)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{self.root / 'mlflow.db'}"
        env["PYTHONWARNINGS"] = "ignore"
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        return env | extra

    def run(
        self, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, *args],
            cwd=self.root,
            env=self.env(**(env or {})),
            input=stdin.decode("latin-1") if stdin is not None else None,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def set_params(self, section: str, **values: object) -> None:
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        params[section] |= values
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def set_param_text(self, section: str, key: str, text: str) -> None:
        """Set one key to raw YAML text (``.inf``, ``[1, 2``) that safe_dump cannot write."""
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        params[section].pop(key, None)
        lines = yaml.safe_dump(params, sort_keys=False).splitlines()
        at = lines.index(f"{section}:") + 1
        lines.insert(at, f"  {key}: {text}")
        path.write_text("\n".join(lines) + "\n")

    def checksums(self) -> dict[str, str]:
        sums = {}
        for top in WATCHED:
            for path in sorted((self.root / top).rglob("*")):
                if path.is_file():
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    sums[str(path.relative_to(self.root))] = digest
        return sums


def assert_refused(
    result: subprocess.CompletedProcess[str],
    *names: str,
    before: dict[str, str],
    after: dict[str, str],
    code: int = 1,
) -> None:
    """Exit ``code``, no traceback, every name in the message, no output changed."""
    message = result.stderr + result.stdout
    assert result.returncode == code, message
    assert "Traceback" not in message, message
    for name in names:
        assert name in message, f"{name!r} not named in: {message}"
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"changed or lost: {changed[:10]}"


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory, captcha_zip) -> Path:
    """A project folder after ingest..promote with the tiny params (built once)."""
    root = tmp_path_factory.mktemp("hostile") / "template"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "params.yaml", root / "params.yaml")
    tiny_params(root / "params.yaml", epochs=1)
    project = Project(root)
    project.set_params("ingest", source=str(captcha_zip))
    for step in STEPS:
        result = project.run(step)
        assert result.returncode == 0, f"{step}: {result.stderr[-3000:]}"
    return root


@pytest.fixture
def project(trained_project, tmp_path) -> Project:
    """A fresh copy of the trained project for one case."""
    root = tmp_path / "project"
    shutil.copytree(trained_project, root, symlinks=True)
    return Project(root)
