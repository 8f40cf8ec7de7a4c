"""Run one pipeline step in a scratch folder laid out like the project.

Under DVC every step runs in the project folder and finds its inputs at fixed
relative paths (``data/raw/...``, ``models/train/...``). A Kubeflow component
gets its inputs as artifact folders instead. So each artifact folder holds a
step's outputs under those same relative paths, and running a step from
Kubeflow is: copy the input artifacts into a scratch folder, write the params
there, run the very ``captcha-ocr STEP`` command that ``dvc.yaml`` runs, and
copy the step's outputs (its ``outs`` in ``dvc.yaml``) into the output artifact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml

from captcha_ocr import paths
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.files import read_text_table

# Steps that log to MLflow and so need a store that outlives them.
TRACKED_STEPS = ("train", "evaluate", "export", "promote")
# The data URL from a Kubernetes secret (a presigned URL is a credential); the
# ingest component puts it into the step's own params.yaml inside the pod.
SECRET_SOURCE_ENV = "CAPTCHA_OCR_SECRET_SOURCE"


class StepFailed(CaptchaOcrError):
    pass


def run_step(
    step: str,
    params: Mapping[str, Mapping],
    inputs: Sequence[str | Path],
    output: str | Path,
    tracking_uri: str = "",
    extra_args: Sequence[str] = (),
) -> Path:
    """Run ``captcha-ocr STEP`` on the inputs; its outputs land in ``output``.

    ``params`` holds the params.yaml sections the step reads (the others take
    their defaults); they are validated by the step itself, as under DVC.
    ``tracking_uri`` names the MLflow store; empty keeps $MLFLOW_TRACKING_URI.
    """
    from captcha_ocr.cli import main as cli

    if step not in paths.STEP_OUTPUTS:
        raise StepFailed(f"unknown step {step!r}; steps: {', '.join(paths.STEP_OUTPUTS)}")
    if step in TRACKED_STEPS and not (tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
        # A store inside the scratch folder would vanish with it, and the next
        # step could not find the run: name a store every step can reach.
        raise StepFailed(f"{step}: mlflow_tracking_uri is empty; pass the MLflow server's URI")
    with scratch_folder(step) as scratch:
        for folder in inputs:
            shutil.copytree(folder, scratch, dirs_exist_ok=True)
        (scratch / "params.yaml").write_text(yaml.safe_dump(dict(params), sort_keys=False))
        with environment(MLFLOW_TRACKING_URI=tracking_uri), working_directory(scratch):
            code = cli([step, "--params", "params.yaml", *extra_args])
        if code != 0:
            raise StepFailed(f"captcha-ocr {step} failed (exit code {code}); see the log above")
        return collect(scratch, paths.STEP_OUTPUTS[step], Path(output))


def with_secret_source(ingest: Mapping) -> dict:
    """The ingest params, with the source from the secret when one is mounted."""
    secret = os.environ.get(SECRET_SOURCE_ENV)
    return {**ingest, "source": secret} if secret else dict(ingest)


def collect(scratch: Path, relative_paths: Sequence[str | Path], output: Path) -> Path:
    """Copy the step's outputs from ``scratch`` to ``output``, keeping their paths."""
    for relative in relative_paths:
        source = scratch / relative
        if not source.exists():
            raise StepFailed(f"the step did not write {relative}")
        target = output / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    return output


def read_json(artifact: str | Path, relative: str | Path) -> dict:
    """A JSON file a step wrote into an artifact folder."""
    path = Path(artifact) / relative
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StepFailed(f"{path}: not found in the artifact") from None


def confusion_matrix(artifact: str | Path) -> tuple[list[str], list[list[int]]]:
    """The evaluate step's character confusion as (labels, rows = actual, columns = predicted).

    ``char_confusion.csv`` has one row per aligned (actual, predicted) pair;
    ``metrics.GAP`` stands for a missing or extra character.
    """
    import pandas as pd

    pairs = read_text_table(Path(artifact) / paths.CHAR_CONFUSION)
    labels = sorted(set(pairs["actual"]) | set(pairs["predicted"]))
    counts = pd.crosstab(pairs["actual"], pairs["predicted"]).reindex(
        index=labels, columns=labels, fill_value=0
    )
    return labels, counts.astype(int).values.tolist()


@contextmanager
def scratch_folder(step: str) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=f"captcha-ocr-{step}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set the non-empty ``values`` as environment variables for the block."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update({key: value for key, value in values.items() if value})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
