"""The compiled pipeline (KFP IR): every step, parameter, resource, retry and
caching setting as intended, and params checked before anything is sent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from captcha_ocr import paths
from captcha_ocr.config import ParamsError
from captcha_ocr.kubeflow.cli import (
    PipelineError,
    apply_overrides,
    checked_tracking_uri,
    compile_pipeline,
    load_pipeline_module,
    local_run_arguments,
)

from ..conftest import PROJECT_ROOT

TASKS = {
    "ingest-data": "ingest",
    "preprocess-data": "preprocess",
    "train-model": "train",
    "evaluate-model": "evaluate",
    "export-model": "export",
    "promote-model": "promote",
}


@pytest.fixture(scope="module")
def module():
    return load_pipeline_module()


def compile_to(module, tmp_path: Path, **options) -> tuple[dict, dict | None]:
    path = compile_pipeline(
        module,
        module.PipelineOptions(params_path=PROJECT_ROOT / "params.yaml", **options),
        tmp_path / "pipeline.yaml",
    )
    documents = list(yaml.safe_load_all(path.read_text()))
    # Parsing into the protobuf proves the IR is a valid PipelineSpec.
    json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())
    return documents[0], (documents[1] if len(documents) > 1 else None)


def test_every_step_is_a_task_with_its_settings(module, tmp_path):
    spec, platform = compile_to(module, tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert {name: tasks[name]["taskInfo"]["name"] for name in TASKS} == TASKS

    # Promote always runs, as under DVC (the registry's gate decides the alias), on
    # the version that export registered.
    assert not any("triggerPolicy" in t for t in tasks.values())
    version = tasks["promote-model"]["inputs"]["parameters"]["version"]
    assert version["taskOutputParameter"] == {
        "outputParameterKey": "Output",
        "producerTask": "export-model",
    }

    assert tasks["ingest-data"]["retryPolicy"]["maxRetryCount"] == 3
    for name in ("ingest-data", "preprocess-data", "train-model", "evaluate-model"):
        assert tasks[name]["cachingOptions"]["enableCache"] is True, name
    # Registry writes are never taken from cache.
    assert tasks["export-model"]["cachingOptions"].get("enableCache", False) is False
    assert tasks["promote-model"]["cachingOptions"].get("enableCache", False) is False

    executors = spec["deploymentSpec"]["executors"]
    resources = executors["exec-train-model"]["container"]["resources"]
    assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"]) == ("2", "4G")
    assert "accelerator" not in resources
    for executor, step in [
        ("exec-ingest-data", "ingest"),
        ("exec-preprocess-data", "preprocess"),
        ("exec-evaluate-model", "evaluate"),
        ("exec-export-model", "export"),
        ("exec-promote-model", "promote"),
    ]:
        resources = executors[executor]["container"]["resources"]
        requested = (resources["resourceCpuRequest"], resources["resourceMemoryRequest"])
        assert requested == module.STEP_RESOURCES[step], executor
    assert {e["container"]["image"] for e in executors.values()} == {module.IMAGE}
    assert platform is None  # no secret asked for, none mounted


def test_params_yaml_sections_are_the_pipeline_parameters(module, tmp_path):
    spec, _ = compile_to(module, tmp_path, mlflow_tracking_uri="http://mlflow:5000")
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    for section, values in params.items():
        assert parameters[section]["parameterType"] == "STRUCT"
        default = parameters[section]["defaultValue"]
        # KFP has no null: null params are left out and take the code's default.
        assert default == {k: v for k, v in values.items() if v is not None}, section
    assert parameters["mlflow_tracking_uri"]["defaultValue"] == "http://mlflow:5000"
    assert parameters["git_commit"]["parameterType"] == "STRING"


def test_image_accelerator_and_secret_are_set_at_compile_time(tmp_path):
    # A new process: the image is read when the components are defined.
    env = {k: v for k, v in os.environ.items() if k != "CAPTCHA_OCR_IMAGE"}
    out = tmp_path / "gpu.yaml"
    command = [sys.executable, "-m", "captcha_ocr", "pipeline", "compile", "-o", str(out)]
    command += ["--image", "registry.example.org/ml/captcha-ocr:7", "--train-memory", "16G"]
    command += ["--accelerator-type", "nvidia.com/gpu", "--accelerator-count", "2"]
    command += ["--mlflow-secret", "mlflow-credentials"]
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    spec, platform = yaml.safe_load_all(out.read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {
        "registry.example.org/ml/captcha-ocr:7"
    }
    resources = executors["exec-train-model"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "2"
    assert resources["resourceMemoryRequest"] == "16G"
    mounted = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(mounted) == {
        "exec-train-model",
        "exec-evaluate-model",
        "exec-export-model",
        "exec-promote-model",
    }
    envs = {k["envVar"] for k in mounted["exec-train-model"]["secretAsEnv"][0]["keyToEnv"]}
    assert envs == {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    # The secret's values never appear in the pipeline, only its name.
    assert "mlflow-credentials" in out.read_text()


def test_overrides_are_checked_like_params_yaml(module):
    sections = module.default_params(PROJECT_ROOT / "params.yaml")
    changed = apply_overrides(sections, ["train.epochs=3", "train.conv_filters=[8, 16]"])
    assert changed["train"]["epochs"] == 3 and changed["train"]["conv_filters"] == [8, 16]
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    assert sections["train"]["epochs"] == params["train"]["epochs"]  # the input is untouched
    for bad, named in [
        ("train.epoch=3", "train.epoch"),
        ("train.epochs=many", "train.epochs"),
        ("trian.epochs=3", "trian"),
        ("epochs=3", "section.key=value"),
    ]:
        with pytest.raises(ParamsError, match=named.replace(".", r"\.")):
            apply_overrides(sections, [bad])


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.conv_filters=[1, 2", "--param 'train.conv_filters=[1, 2': the value is not valid"),
        ("train.learning_rate=.inf", "train.learning_rate: inf is not a finite number"),
        ("train.conv_pool=[[64, 64], [2, 2]]", "train.conv_pool"),
    ],
)
def test_a_bad_override_is_named(module, override, named):
    sections = module.default_params(PROJECT_ROOT / "params.yaml")
    # Fixed sizes: with the auto ones, the network is checked once preprocess has read them.
    sections["preprocess"] |= {"image_height": 50, "image_width": 200, "max_label_length": 5}
    with pytest.raises(ParamsError, match=re.escape(named)):
        apply_overrides(sections, [override])


def test_compile_takes_param_overrides_as_the_compiled_defaults(tmp_path):
    out = tmp_path / "pipeline.yaml"
    command = [sys.executable, "-m", "captcha_ocr", "pipeline", "compile", "-o", str(out)]
    command += ["--param", "train.epochs=3", "--param", "export.model_name=reader-b"]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    parameters = next(yaml.safe_load_all(out.read_text()))["root"]["inputDefinitions"]
    assert parameters["parameters"]["train"]["defaultValue"]["epochs"] == 3
    assert parameters["parameters"]["export"]["defaultValue"]["model_name"] == "reader-b"


# (the ingest.source override, the ingest.source the components get); {up} is
# the folder above the one the command runs in, {here} that folder.
SOURCES = [
    ("../shared/data/captchas.zip", "{up}/shared/data/captchas.zip"),
    ("file://../captchas.zip", "{up}/captchas.zip"),
    ("~/captchas.zip", str(Path("~/captchas.zip").expanduser())),
    ("/data/captchas.zip", "/data/captchas.zip"),
    ("https://example.org/c.zip?x=1", "https://example.org/c.zip?x=1"),
    ("s3://bucket/c.zip", "s3://bucket/c.zip"),
    ("data/captchas.zip", "{here}/data/captchas.zip"),
]


@pytest.mark.parametrize(("source", "expected"), SOURCES)
def test_a_local_run_hands_the_components_an_absolute_source(
    module, tmp_path, monkeypatch, source, expected
):
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    options = module.PipelineOptions(params_path=PROJECT_ROOT / "params.yaml")
    overrides = [f"ingest.source={source}"]
    arguments = local_run_arguments(module, options, overrides, "sqlite:////m.db", Path.cwd())
    here = Path.cwd()
    assert arguments["ingest"]["source"] == expected.format(up=here.parent, here=here)


def test_each_step_writes_what_its_dvc_stage_declares():
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    for step, outputs in paths.STEP_OUTPUTS.items():
        declared = set()
        for kind in ("outs", "metrics", "plots"):
            for entry in stages[step].get(kind, []):
                declared.add(next(iter(entry)) if isinstance(entry, dict) else entry)
        assert {str(p) for p in outputs} == declared, step


def test_tracking_uri_is_made_absolute_and_kept_free_of_credentials(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # Steps run in scratch folders: a relative store would be a new one for each.
    assert checked_tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert checked_tracking_uri("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db"
    assert checked_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"
    with pytest.raises(PipelineError, match="mlflow-secret"):
        checked_tracking_uri("http://bob:pw@mlflow:5000")


def test_the_pipeline_compiles_from_any_folder(tmp_path):
    # The pipeline ships in the installed package: no project folder on sys.path.
    out = tmp_path / "pipeline.yaml"
    command = [sys.executable, "-m", "captcha_ocr", "pipeline", "compile", "-o", str(out)]
    command += ["--params", str(PROJECT_ROOT / "params.yaml")]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    spec = next(yaml.safe_load_all(out.read_text()))
    assert set(TASKS) <= set(spec["root"]["dag"]["tasks"])


def test_the_project_folders_re_export_the_packaged_pipeline():
    import components
    from captcha_ocr.kubeflow import components as packaged
    from captcha_ocr.kubeflow import pipeline as packaged_pipeline
    from pipeline import captcha_pipeline

    assert components.train_model is packaged.train_model
    assert captcha_pipeline.build_pipeline is packaged_pipeline.build_pipeline


def test_the_data_url_and_storage_credentials_can_come_from_secrets(module, tmp_path):
    spec, platform = compile_to(
        module,
        tmp_path,
        source_secret="captcha-data",
        storage_secret="team-s3",
        storage_endpoint="http://minio.storage:9000",
    )
    mounted = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    # Ingest reads the bucket; every step that logs to MLflow may write its artifacts there.
    writers = {"exec-train-model", "exec-evaluate-model", "exec-export-model", "exec-promote-model"}
    assert set(mounted) == {"exec-ingest-data"} | writers
    url, storage = mounted["exec-ingest-data"]["secretAsEnv"]
    assert url["keyToEnv"] == [{"secretKey": "source", "envVar": "CAPTCHA_OCR_SECRET_SOURCE"}]
    aws = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for executor in writers | {"exec-ingest-data"}:
        storage = mounted[executor]["secretAsEnv"][-1]
        assert storage["secretName"] == "team-s3", executor
        assert {k["envVar"] for k in storage["keyToEnv"]} == aws, executor
        env = spec["deploymentSpec"]["executors"][executor]["container"]["env"]
        assert {e["name"]: e["value"] for e in env} == {
            "AWS_ENDPOINT_URL": "http://minio.storage:9000",
            "MLFLOW_S3_ENDPOINT_URL": "http://minio.storage:9000",
        }, executor


def test_a_storage_endpoint_with_credentials_is_refused(tmp_path):
    out = tmp_path / "pipeline.yaml"
    command = [sys.executable, "-m", "captcha_ocr", "pipeline", "compile", "-o", str(out)]
    command += ["--params", str(PROJECT_ROOT / "params.yaml")]
    command += ["--storage-endpoint", "http://key:SeCrEt42@minio:9000"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "--storage-secret" in done.stderr and "SeCrEt42" not in done.stderr
    assert not out.exists()


def test_ingest_is_cached_by_the_pinned_digest_else_fetched_every_run(module, tmp_path):
    spec, _ = compile_to(module, tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    key = tasks["ingest-data"]["inputs"]["parameters"]["cache_key"]
    assert key["taskOutputParameter"]["producerTask"] == "data-cache-key"
    assert tasks["data-cache-key"]["cachingOptions"].get("enableCache", False) is False
    assert tasks["ingest-data"]["cachingOptions"]["enableCache"] is True

    # The key component's own function: the digest when pinned, never the same twice when not.
    from captcha_ocr.kubeflow.components import data_cache_key

    make_key = data_cache_key.python_func
    assert make_key({"source": "s3://a/b.zip", "sha256": "AB" * 32}) == f"sha256:{'ab' * 32}"
    unpinned = {"source": "s3://a/b.zip"}
    assert make_key(unpinned) != make_key(unpinned)
    assert make_key(unpinned).startswith("unpinned:")


def test_compile_refuses_a_source_with_a_token_without_showing_it(tmp_path):
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["ingest"]["source"] = "https://h.example.org/c.zip?X-Amz-Signature=SeCrEt42"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "pipeline.yaml"
    command = [sys.executable, "-m", "captcha_ocr", "pipeline", "compile", "-o", str(out)]
    command += ["--params", str(tmp_path / "params.yaml")]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "ingest.source 'https://h.example.org/c.zip?X-Amz-Signature=***'" in done.stderr
    assert "--source-secret" in done.stderr and "Traceback" not in done.stderr
    assert "SeCrEt42" not in done.stdout + done.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "param",
    [
        "ingest.source=https://h.example.org/c.zip?sig=SeCrEt42",
        "ingest.repo=https://bob:SeCrEt42@git.example.org/captchas.git",
    ],
)
def test_compile_refuses_a_param_override_with_a_token(tmp_path, param):
    # --param values become the compiled defaults: they show in the Kubeflow UI.
    out = tmp_path / "pipeline.yaml"
    command = [sys.executable, "-m", "captcha_ocr", "pipeline", "compile", "-o", str(out)]
    command += ["--params", str(PROJECT_ROOT / "params.yaml"), "--param", param]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "holds credentials" in done.stderr and "Traceback" not in done.stderr
    assert "SeCrEt42" not in done.stdout + done.stderr
    assert not out.exists()


def test_the_ingest_component_takes_the_url_from_the_secret(monkeypatch):
    from captcha_ocr.kubeflow.workspace import SECRET_SOURCE_ENV, with_secret_source

    ingest = {"source": "https://example.org/public.zip", "sha256": "ab" * 32}
    monkeypatch.delenv(SECRET_SOURCE_ENV, raising=False)
    assert with_secret_source(ingest) == ingest
    monkeypatch.setenv(SECRET_SOURCE_ENV, "https://example.org/c.zip?sig=x")
    assert with_secret_source(ingest) == {**ingest, "source": "https://example.org/c.zip?sig=x"}
    assert ingest["source"] == "https://example.org/public.zip"  # the parameter is untouched
