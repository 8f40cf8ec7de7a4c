"""`captcha-ocr pipeline submit` against a stand-in for a Kubeflow cluster.

No cluster runs here: ``kfp_api_stand_in`` is a small HTTP server on 127.0.0.1
that answers the KFP v2beta1 REST calls ``kfp.Client`` makes and records them.
The command under test runs for real, as a user would run it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from ..conftest import PROJECT_ROOT
from .kfp_api_stand_in import API, StandIn, serve


@pytest.fixture
def cluster():
    stand_in = StandIn()
    server = serve(stand_in)
    yield stand_in, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def submit(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KF_", "MLFLOW_"))}
    command = [sys.executable, "-m", "captcha_ocr", "pipeline", "submit", *args]
    return subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=environment | env,
        capture_output=True,
        text=True,
        timeout=300,  # a hang fails the test instead of stalling CI
    )


def test_submit_sends_the_pipeline_params_and_experiment(cluster):
    stand_in, host = cluster
    done = submit(
        "--experiment", "captchas", "--param", "train.epochs=3",
        "--mlflow-uri", "http://mlflow.mlflow:5000",
        KF_PIPELINES_ENDPOINT=host, KF_PIPELINES_TOKEN="t0ken",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_id,) = stand_in.runs
    assert f"submitted run {run_id} to experiment 'captchas': {host}/#/runs/details/{run_id}" in (
        done.stdout
    )
    assert all(r.headers.get("authorization") == "Bearer t0ken" for r in stand_in.requests)

    (experiment,) = stand_in.experiments.values()
    assert experiment["display_name"] == "captchas"
    run = stand_in.runs[run_id]
    assert run["experiment_id"] == experiment["experiment_id"]
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == "captcha-ocr"
    arguments = run["runtime_config"]["parameters"]
    assert arguments["train"]["epochs"] == 3
    assert arguments["train"]["batch_size"] > 0  # the rest of the section from params.yaml
    assert arguments["mlflow_tracking_uri"] == "http://mlflow.mlflow:5000"
    assert set(arguments) >= {"ingest", "preprocess", "evaluate", "export", "promote"}


def test_second_submission_reuses_the_experiment_and_waits(cluster):
    stand_in, host = cluster
    for _ in range(2):
        done = submit("--host", host, "--mlflow-uri", "http://m:5000", "--wait", "--timeout", "30")
        assert done.returncode == 0, done.stderr
        assert "finished: SUCCEEDED" in done.stdout
    assert len(stand_in.experiments) == 1 and len(stand_in.runs) == 2

    stand_in.final_state = "FAILED"
    done = submit("--host", host, "--mlflow-uri", "http://m:5000", "--wait", "--timeout", "30")
    assert done.returncode == 1
    assert "ended FAILED" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "train.epoch=3"], "train.epoch"),
        (["--param", "train.conv_filters=[1, 2"], "train.conv_filters=[1, 2"),
        (["--param", "train.learning_rate=.inf"], "train.learning_rate"),
        ([], "--mlflow-uri is missing"),
    ],
)
def test_bad_submission_fails_before_contacting_the_cluster(cluster, args, message):
    stand_in, host = cluster
    if "--param" in args:
        args = [*args, "--mlflow-uri", "http://m:5000"]
    done = submit("--host", host, *args)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
    assert stand_in.requests == []


def test_credentials_in_the_mlflow_uri_are_refused_before_anything_is_sent(cluster):
    stand_in, host = cluster
    done = submit("--host", host, "--mlflow-uri", "https://alice:s3cret@mlflow.example.org")
    assert done.returncode == 1
    assert "--mlflow-secret" in done.stderr and "s3cret" not in done.stderr + done.stdout
    assert stand_in.requests == []


def test_an_unreachable_cluster_is_a_clear_error():
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{probe.getsockname()[1]}"
    done = submit("--host", host, "--mlflow-uri", "http://m:5000")
    assert done.returncode == 1
    assert host in done.stderr and "Traceback" not in done.stderr


def test_the_client_checks_the_server_first(cluster):
    stand_in, host = cluster
    submit("--host", host, "--mlflow-uri", "http://m:5000")
    assert (stand_in.requests[0].method, stand_in.requests[0].path) == ("GET", f"{API}/healthz")


def test_a_source_with_a_token_is_never_sent(cluster):
    stand_in, host = cluster
    source = "https://h.example.org/c.zip?sv=2024&sig=SeCrEt42"
    done = submit(
        "--host", host, "--mlflow-uri", "http://m:5000", "--param", f"ingest.source={source}"
    )
    assert done.returncode == 1, done.stderr
    assert "--param: ingest.source 'https://h.example.org/c.zip?sv=2024&sig=***'" in done.stderr
    assert "--source-secret" in done.stderr
    assert "SeCrEt42" not in done.stdout + done.stderr
    assert not any("SeCrEt42" in str(r.body) for r in stand_in.requests)
    assert stand_in.runs == {}
