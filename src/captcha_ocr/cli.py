"""``captcha-ocr STEP [--params params.yaml]``: one command per pipeline step.

Steps are imported only when called, so ``captcha-ocr ingest`` does not pay
for loading TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from captcha_ocr.errors import CaptchaOcrError

STEPS = (
    "ingest",
    "preprocess",
    "train",
    "evaluate",
    "export",
    "promote",
    "register",
    "predict",
    "demo",
    "pipeline",
    "lineage",
    "deploy",
)
# What the project venv has and the serving venv does not.
PROJECT_ONLY = {"mlflow", "tensorflow", "keras", "dvc", "kfp", "onnx", "onnxruntime"}
# The module that runs each command, under captcha_ocr.
MODULES = {
    **{step: f"steps.{step}" for step in STEPS[:7]},
    "predict": "serving.predict",
    "demo": "serving.demo",
    "pipeline": "kubeflow.cli",
    "lineage": "lineage",
    "deploy": "serving.deploy",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STEPS:
        print(f"usage: captcha-ocr {{{','.join(STEPS)}}} [options]")
        print("Run one step of the captcha-ocr pipeline (`dvc repro` runs them all),")
        print("or read captchas: captcha-ocr predict PATH... [--model URI] [--json]")
        print("or try them in a browser: captcha-ocr demo [--model URI] [--port 8000]")
        print("or run it on Kubeflow: captcha-ocr pipeline {compile,run-local,submit}")
        print("or find a model's data: captcha-ocr lineage [models:/captcha-ocr@champion]")
        print("or serve it on KServe: captcha-ocr deploy kserve [--model URI] [-o FILE]")
        return 0 if argv[:1] in ([], ["-h"], ["--help"]) else 2
    step, rest = argv[0], argv[1:]
    try:
        module = importlib.import_module(f"captcha_ocr.{MODULES[step]}")
        module.main(rest)
    except (CaptchaOcrError, FileNotFoundError) as err:
        print(f"captcha-ocr {step}: error: {err}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as err:
        # The serving venv (requirements-serve.txt) holds the KServe predictor alone;
        # anything else missing is a real error, with its traceback.
        top = (err.name or "").partition(".")[0]
        if top not in PROJECT_ONLY or importlib.util.find_spec(top) is not None:
            raise
        print(
            f"captcha-ocr {step}: error: needs {err.name}, which this Python environment "
            "lacks: run it from the project venv (README: pip install -r requirements.txt -e .)",
            file=sys.stderr,
        )
        return 1
    return 0
