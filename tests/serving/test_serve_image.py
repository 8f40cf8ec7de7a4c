"""Dockerfile.serve, checked without Docker (there is no engine here): it installs
exactly what the README's serving command installs, no TensorFlow, runs as a
non-root user the KServe predictor, and its build context holds no data."""

from __future__ import annotations

import re
import shlex

from ..conftest import PROJECT_ROOT


def instructions() -> list[tuple[str, str]]:
    text = (PROJECT_ROOT / "Dockerfile.serve").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def pip_installs(command: str) -> list[list[str]]:
    """The arguments of each ``pip install`` in a shell command, options included."""
    found = []
    for part in re.split(r"&&", command):
        words = shlex.split(part)
        if "pip" in " ".join(words) and "install" in words:
            arguments = words[words.index("install") + 1 :]
            found.append([w for w in arguments if w not in ("--no-cache-dir", "-q")])
    return found


def readme_serving_command() -> str:
    readme = (PROJECT_ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if "requirements-serve.txt" in line]
    assert commands, "README.md gives no command that installs requirements-serve.txt"
    return commands[0]


def test_the_image_installs_what_the_readme_serving_command_installs():
    run = next(arg for op, arg in instructions() if op == "RUN" and "pip install" in arg)
    assert pip_installs(run) == pip_installs(readme_serving_command())
    assert pip_installs(run) == [["-r", "requirements-serve.txt"], ["--no-deps", "."]]
    copied = " ".join(arg for op, arg in instructions() if op == "COPY")
    for needed in ("requirements-serve.txt", "pyproject.toml", "src"):
        assert needed in copied


def test_no_tensorflow_and_a_non_root_user_running_the_predictor():
    requirements = (PROJECT_ROOT / "requirements-serve.txt").read_text().lower()
    pins = [line.split("==")[0] for line in requirements.splitlines() if "==" in line]
    assert not {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx"} & set(pins)
    assert all("==" in line for line in requirements.splitlines() if line and line[0] != "#")
    ops = instructions()
    assert ops[0] == ("FROM", "python:3.11-slim")
    users = [arg for op, arg in ops if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    entry = next(arg for op, arg in ops if op == "ENTRYPOINT")
    assert "captcha_ocr.serving.kserve_predictor" in entry


def test_build_context_leaves_out_data_models_and_stores():
    ignore = (PROJECT_ROOT / "Dockerfile.serve.dockerignore").read_text().splitlines()
    rules = [p for p in ignore if p and not p.startswith("#")]
    assert rules[0] == "*"  # an allow-list: nothing goes in unless named
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"requirements-serve.txt", "pyproject.toml", "README.md", "src"}
