"""The MLflow Model Registry: register the reader with its code, scores and data tags.

Promotion (which version is ``champion``) is ``captcha_ocr.promotion``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion

from captcha_ocr import paths

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

    The model reads with the exported network beside ``reader_path``: the int8
    one under OpenVINO when the export kept it, else the float one under
    onnxruntime (``served_network``); the version's ``serving_runtime`` tag
    says which. The ``.keras`` reader rides along as the training-side
    reference (promotion rescores with it); serving never opens it.

    The model carries this package's code (``code/captcha_ocr``) and names only
    public packages it needs, pinned to what is installed: an environment
    built from it (``mlflow models serve``, ``build-docker``, KServe) never
    asks an index for ``captcha-ocr``, a name this project does not own there,
    and installs no TensorFlow.
    """
    import tempfile

    import pandas as pd
    from mlflow.models import infer_signature

    from captcha_ocr.serving.uploads import encode_image

    network, runtime, runtime_tag = served_network(Path(reader_path))
    example = pd.DataFrame({"image": [encode_image(example_png)]})
    signature = infer_signature(example, pd.DataFrame({"text": ["abcde"], "confidence": [1.0]}))
    with tempfile.TemporaryDirectory() as scratch:
        info = mlflow.pyfunc.log_model(
            name="reader",
            # Models from code: the model is this file plus the .keras artifact, no pickle.
            python_model=str(Path(__file__).parent / "serving" / "pyfunc_model.py"),
            artifacts={
                "reader": str(reader_path),
                "network": str(network),
                "vocabulary": str(network.with_name(VOCABULARY_FILE)),
            },
            model_config={"runtime": runtime},
            code_paths=[str(package_copy(Path(scratch)))],
            signature=signature,
            input_example=example,
            pip_requirements=serving_requirements(runtime),
        )
    all_tags = {
        "test_exact_match": str(metrics["test_exact_match"]),
        "test_cer": str(metrics["test_cer"]),
        "metrics_version": METRICS_VERSION,
        "git_commit": git_commit(),
        SERVING_RUNTIME_TAG: runtime_tag,
        **tags,
    }
    # The version is created with its tags in one call: a crash can leave a
    # logged model that was never registered, never a version without scores.
    return mlflow.register_model(info.model_uri, model_name, tags=all_tags)


# The files export writes beside the reader.
FLOAT_NETWORK_FILE = paths.ONNX_NETWORK.name
INT8_NETWORK_FILE = paths.INT8_NETWORK.name
VOCABULARY_FILE = paths.ONNX_VOCABULARY.name
SERVING_RUNTIME_TAG = "serving_runtime"

# What the pyfunc model imports (serving.pyfunc, core.images, core.runtimes and
# what they import), by distribution name, plus the runtime of its network.
# mlflow-skinny is the part of MLflow that loads and serves a pyfunc model; the
# full package adds the tracking server's scipy, scikit-learn, pyarrow, ...
SERVING_DISTRIBUTIONS = ("mlflow-skinny", "numpy", "pandas", "pillow")
RUNTIME_DISTRIBUTIONS = {"openvino": "openvino", "onnxruntime": "onnxruntime"}


def served_network(reader_path: Path) -> tuple[Path, str, str]:
    """(network file, runtime, tag) the model serves with: int8 under OpenVINO if the
    export kept it, else the float network under onnxruntime."""
    int8 = reader_path.with_name(INT8_NETWORK_FILE)
    if int8.is_file():
        network, runtime, tag = int8, "openvino", "openvino-int8"
    else:
        network, runtime, tag = (
            reader_path.with_name(FLOAT_NETWORK_FILE),
            "onnxruntime",
            "onnxruntime-float32",
        )
    for needed in (network, reader_path.with_name(VOCABULARY_FILE)):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed}: missing beside {reader_path.name}; the export step writes it"
            )
    return network, runtime, tag


def serving_requirements(runtime: str) -> list[str]:
    """Public packages the served model needs, pinned to the installed releases."""
    from importlib.metadata import version

    names = [*SERVING_DISTRIBUTIONS, RUNTIME_DISTRIBUTIONS[runtime]]
    return [f"{name}=={version(name)}" for name in names]


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
