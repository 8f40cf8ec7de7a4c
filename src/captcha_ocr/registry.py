"""The MLflow Model Registry: register the reader with its code, scores and data tags.

Promotion (which version is ``champion``) is ``captcha_ocr.promotion``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion

GIT_COMMIT_ENV = "CAPTCHA_OCR_GIT_COMMIT"


# Bump when exact-match or CER change meaning: versions scored differently never compete.
METRICS_VERSION = "1"


def register_reader(
    reader_path: Path,
    model_name: str,
    metrics: dict,
    tags: dict[str, str],
    example_png: bytes,
) -> ModelVersion:
    """Log the reader as a pyfunc model in the active run and register it.

    The model carries this package's code (``code/captcha_ocr``) and names only
    public packages it needs, pinned to what is installed: an environment
    built from it (``mlflow models serve``, ``build-docker``, MLServer) never
    asks an index for ``captcha-ocr``, a name this project does not own there.
    """
    import tempfile

    import pandas as pd
    from mlflow.models import infer_signature

    from captcha_ocr.serving.pyfunc import encode_image

    example = pd.DataFrame({"image": [encode_image(example_png)]})
    signature = infer_signature(example, pd.DataFrame({"text": ["abcde"], "confidence": [1.0]}))
    with tempfile.TemporaryDirectory() as scratch:
        info = mlflow.pyfunc.log_model(
            name="reader",
            # Models from code: the model is this file plus the .keras artifact, no pickle.
            python_model=str(Path(__file__).parent / "serving" / "pyfunc_model.py"),
            artifacts={"reader": str(reader_path)},
            code_paths=[str(package_copy(Path(scratch)))],
            signature=signature,
            input_example=example,
            pip_requirements=serving_requirements(),
        )
    all_tags = {
        "test_exact_match": str(metrics["test_exact_match"]),
        "test_cer": str(metrics["test_cer"]),
        "metrics_version": METRICS_VERSION,
        "git_commit": git_commit(),
        **tags,
    }
    # The version is created with its tags in one call: a crash can leave a
    # logged model that was never registered, never a version without scores.
    return mlflow.register_model(info.model_uri, model_name, tags=all_tags)


# What the pyfunc model imports (serving, images, model, config and what they
# import), by distribution name. TensorFlow is named by version: a GPU build
# installs it under another name, and serving runs on the CPU build.
SERVING_DISTRIBUTIONS = ("keras", "mlflow", "numpy", "pandas", "pillow", "pydantic", "pyyaml")


def serving_requirements() -> list[str]:
    """Public packages the served model needs, pinned to the installed releases."""
    from importlib.metadata import version

    import tensorflow as tf

    pins = [f"{name}=={version(name)}" for name in SERVING_DISTRIBUTIONS]
    return [f"tensorflow-cpu=={tf.__version__}", *pins]


def package_copy(scratch: Path) -> Path:
    """A copy of this package without bytecode caches, to ship with the model."""
    import shutil

    here = Path(__file__).parent
    return Path(
        shutil.copytree(
            here, scratch / here.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    )


def git_commit() -> str:
    """The commit the code came from: $CAPTCHA_OCR_GIT_COMMIT (set where there is no
    git checkout, as in a Kubeflow pod), else ``git rev-parse HEAD``."""
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"
