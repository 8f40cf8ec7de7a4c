"""A real git + DVC project in a temporary folder: the package's stages, tiny data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import PROJECT_ROOT
from tests.helpers import set_source, tiny_params


def small_zip(path: Path, captcha_zip: Path, count: int) -> Path:
    """The first ``count`` captchas of the real zip, as a zip of their own."""
    with zipfile.ZipFile(captcha_zip) as source, zipfile.ZipFile(path, "w") as out:
        for name in sorted(n for n in source.namelist() if n.endswith(".png"))[:count]:
            out.writestr(name, source.read(name))
    return path


def make_project(root: Path, source: Path, epochs: int | None = None) -> dict[str, str]:
    """A committed git + DVC project at ``root`` reading ``source``; its environment.

    With ``epochs``, the tiny training params (``helpers.tiny_params``). The
    environment names no MLflow store: each project keeps its own ``mlflow.db``,
    whatever an earlier test set in this process.
    """
    root.mkdir(parents=True)
    shutil.copytree(PROJECT_ROOT / "src", root / "src", ignore=shutil.ignore_patterns("*.pyc"))
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "CAPTCHA_OCR_SOURCE" and not k.startswith("MLFLOW_")
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for role in ("AUTHOR", "COMMITTER"):
        env |= {f"GIT_{role}_NAME": "test", f"GIT_{role}_EMAIL": "test@example.org"}
    set_source(root / "params.yaml", source)
    if epochs is not None:
        tiny_params(root / "params.yaml", epochs)
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(command, cwd=root, env=env, check=True)
    commit(root, env, "project")
    return env


def commit(root: Path, env: dict[str, str], message: str) -> str:
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", message], cwd=root, env=env, check=True)
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, env=env, capture_output=True, text=True
    )
    return done.stdout.strip()


def dvc(root: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["dvc", *args], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr
