"""The wiring recipes of docs/architecture.md, checked.

A step exists in six places (its module, the CLI, params, the map of files,
dvc.yaml, the Kubeflow pipeline) and a params key in two (the params model and
params.yaml). Each test names what a half-done change forgot.
"""

from __future__ import annotations

import importlib

import yaml

from captcha_ocr import paths
from captcha_ocr.cli import MODULES, STEPS
from captcha_ocr.config import Params

from ..conftest import PROJECT_ROOT

PIPELINE_STEPS = ("ingest", "preprocess", "train", "evaluate", "export", "register", "promote")
# Under DVC only: it checks the store in use holds the exported reader, because
# DVC may skip or restore export. Kubeflow never caches export, which registers.
DVC_ONLY = {"register": "export"}  # the step, and the params section it reads


def test_every_pipeline_step_is_wired_everywhere():
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    entry_points = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())["entry_points"]
    assert list(stages) == list(PIPELINE_STEPS), "dvc.yaml stages"
    assert set(PIPELINE_STEPS) <= set(STEPS), "cli.STEPS"
    assert list(paths.STEP_OUTPUTS) == list(PIPELINE_STEPS), "paths.STEP_OUTPUTS"
    assert set(PIPELINE_STEPS) <= set(entry_points), "MLproject entry points"
    for step in PIPELINE_STEPS:
        assert stages[step]["cmd"].split()[:2] == ["captcha-ocr", step]
        section = DVC_ONLY.get(step, step)
        assert stages[step]["params"] == [section], f"dvc.yaml {step}: params"
        assert f"captcha-ocr {step}" in entry_points[step]["command"]
        module = importlib.import_module(f"captcha_ocr.{MODULES[step]}")
        assert callable(getattr(module, step)) and callable(module.main), MODULES[step]
        assert section in Params.model_fields, f"config.Params.{section}"


def test_every_pipeline_step_has_a_kubeflow_task(tmp_path):
    from kfp import compiler

    from captcha_ocr.kubeflow.pipeline import PipelineOptions, build_pipeline

    out = tmp_path / "pipeline.yaml"
    pipeline = build_pipeline(PipelineOptions(params_path=PROJECT_ROOT / "params.yaml"))
    compiler.Compiler().compile(pipeline, str(out))
    tasks = yaml.safe_load(out.read_text().split("\n---\n")[0])["root"]["dag"]["tasks"]
    names = {task["taskInfo"]["name"] for task in tasks.values()}
    # Beside the steps, one helper: the key ingest is cached by.
    assert names == set(PIPELINE_STEPS) - set(DVC_ONLY) | {"data cache key"}


def test_every_code_default_is_the_value_in_params_yaml():
    # One source of defaults: deleting a key from params.yaml changes nothing.
    written = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    defaults = Params().model_dump(mode="json")
    for section, values in written.items():
        for key, value in values.items():
            assert defaults[section][key] == value, f"{section}.{key}"


def test_params_yaml_names_every_key_of_the_params_model():
    written = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    for section, model in Params.model_fields.items():
        missing = set(model.annotation.model_fields) - set(written[section])
        assert not missing, f"params.yaml {section} lacks {sorted(missing)}"
