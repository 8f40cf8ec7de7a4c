"""The Dockerfile, checked without Docker (there is no engine here): it
installs from the same requirement files as the README's set-up command, runs
as a non-root user, and its build context holds no data, models or stores."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from ..conftest import PROJECT_ROOT


def instructions() -> list[tuple[str, str]]:
    text = (PROJECT_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def requirement_files(command: str) -> list[str]:
    words = shlex.split(command)
    return [words[i + 1] for i, word in enumerate(words) if word == "-r"]


def readme_setup_command() -> str:
    readme = (PROJECT_ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if "dvc repro" in line and "venv" in line]
    assert commands, "README.md gives no set-up command that runs dvc repro"
    return commands[0]


def test_image_installs_what_the_readme_installs():
    runs = [arg for op, arg in instructions() if op == "RUN" and "pip install" in arg]
    install = next(arg for arg in runs if "-r " in arg)
    assert requirement_files(install) == requirement_files(readme_setup_command())
    assert requirement_files(install) == ["requirements.txt"]
    # The package itself, from the copied source, with its pinned requirements.
    assert re.search(r"pip install[^&]*-r requirements.txt[^&]* \.(\s|$)", install)
    copied = " ".join(arg for op, arg in instructions() if op == "COPY")
    for needed in ("requirements.txt", "constraints.txt", "pyproject.toml", "src"):
        assert needed in copied


def test_image_base_user_and_gpu_variant():
    ops = instructions()
    assert ops[0] == ("FROM", "python:3.11-slim")
    users = [arg for op, arg in ops if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(op == "ARG" and arg.startswith("TENSORFLOW=tensorflow-cpu==") for op, arg in ops)
    pinned = (PROJECT_ROOT / "requirements.txt").read_text()
    default_tf = next(arg for op, arg in ops if op == "ARG").split("=", 1)[1]
    assert default_tf in pinned.splitlines()  # the same TensorFlow as everywhere else


def test_build_context_leaves_out_data_models_and_stores():
    patterns = (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    rules = [p for p in patterns if p and not p.startswith("#")]
    assert rules[0] == "*"  # an allow-list: nothing goes in unless named
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"requirements.txt", "constraints.txt", "pyproject.toml", "README.md", "src"}
    # And nothing under src/ is data or a model.
    bulky = [p for p in Path(PROJECT_ROOT, "src").rglob("*") if p.suffix in {".keras", ".db"}]
    assert bulky == []


def build_context(target: Path) -> Path:
    """Copy what .dockerignore lets into the build context, as `docker build` would."""
    target.mkdir()
    rules = [r for r in (PROJECT_ROOT / ".dockerignore").read_text().splitlines() if r]
    for rule in rules:
        if rule.startswith("!"):
            name = rule[1:].rstrip("/")
            source = PROJECT_ROOT / name
            if source.is_dir():
                ignored = shutil.ignore_patterns("__pycache__", "*.egg-info")
                shutil.copytree(source, target / name, ignore=ignored)
            else:
                shutil.copy(source, target / name)
    return target


def test_the_package_the_image_installs_builds_from_its_context(tmp_path):
    # The image runs `pip install ... .` in the build context: the package must
    # build from exactly that, with the demo page and the Kubeflow pipeline inside.
    context = build_context(tmp_path / "context")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    command += ["-q", "-w", str(tmp_path / "wheel"), str(context)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "wheel").glob("captcha_ocr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "captcha_ocr/serving/web/demo.html",
        "captcha_ocr/serving/pyfunc_model.py",
        "captcha_ocr/kubeflow/pipeline.py",
        "captcha_ocr/kubeflow/components.py",
    ):
        assert needed in names
    from captcha_ocr import __version__

    assert wheel.name.startswith(f"captcha_ocr-{__version__}-")


def test_components_default_to_the_image_the_readme_builds():
    from captcha_ocr.kubeflow.image import DEFAULT_IMAGE

    readme = (PROJECT_ROOT / "README.md").read_text()
    assert f"docker build -t {DEFAULT_IMAGE} ." in readme
