"""The team workflow of docs/team.md, end to end, in temporary git repositories.

One member trains against the team's MLflow server (PostgreSQL, artifacts in
the S3 stand-in), commits ``dvc.lock`` and runs ``dvc push`` to a DVC remote in
the same stand-in; a teammate clones, runs ``dvc pull`` and ``dvc repro``, and
nothing retrains. Then the registry meets other stores, and an experiment
travels with ``dvc exp push`` / ``dvc exp pull`` / ``dvc exp apply``.

The tests share one trained project and run in file order.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.dvc_project import commit, dvc, make_project, small_zip
from tests.helpers import tiny_params

from .conftest import BUCKET

pytestmark = pytest.mark.slow
TRAINING = ("ingest", "preprocess", "train", "evaluate", "export")
REMOTE = f"s3://{BUCKET}/dvc-store"


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def ran(output: str) -> list[str]:
    stages = (*TRAINING, "register", "promote")
    return [s for s in stages if f"Running stage '{s}'" in output]


def client_for(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def connect_remote(root: Path, env: dict[str, str], endpoint: str) -> None:
    """What each member does once per clone: the endpoint in .dvc/config.local (never committed)."""
    run(["dvc", "remote", "modify", "--local", "storage", "endpointurl", endpoint], root, env)


@pytest.fixture(scope="module")
def team(tmp_path_factory, team_server, captcha_zip):
    base = tmp_path_factory.mktemp("team")
    zip_path = small_zip(base / "captchas.zip", captcha_zip, 80)
    alice = base / "alice"
    env = make_project(alice, zip_path)
    tiny_params(alice / "params.yaml", epochs=1)
    # Credentials by environment only, as the S3 tools read them; no endpoint here:
    # each clone's .dvc/config.local has it.
    env |= {k: v for k, v in team_server.s3.env().items() if k != "AWS_ENDPOINT_URL"}
    env["MLFLOW_TRACKING_URI"] = team_server.url
    run(["dvc", "remote", "add", "-d", "storage", REMOTE], alice, env)
    connect_remote(alice, env, team_server.s3.endpoint)
    origin = base / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], base, env)
    run(["git", "remote", "add", "origin", str(origin)], alice, env)
    output = dvc(alice, env, "repro")
    assert ran(output) == [*TRAINING, "register", "promote"]
    lock_commit = commit(alice, env, "model on 64 captchas: dvc.lock")
    dvc(alice, env, "push")
    run(["git", "push", "-q", "origin", "HEAD:main"], alice, env)
    return base, alice, origin, env, lock_commit, team_server


def test_a_teammate_pulls_and_nothing_retrains(team):
    base, alice, origin, env, lock_commit, server = team
    # The endpoint and the credentials stayed out of git.
    committed = run(["git", "show", "HEAD:.dvc/config"], alice, env)
    assert REMOTE in committed and server.s3.endpoint not in committed
    assert "config.local" not in run(["git", "ls-files", ".dvc"], alice, env)

    bob = base / "bob"
    run(["git", "clone", "-q", "-b", "main", str(origin), str(bob)], base, env)
    connect_remote(bob, env, server.s3.endpoint)
    start = time.monotonic()
    dvc(bob, env, "pull")
    output = dvc(bob, env, "repro")
    seconds = time.monotonic() - start
    print(f"\nfresh clone: dvc pull && dvc repro took {seconds:.1f} s")
    assert ran(output) == ["register"], output
    assert "holds this reader as captcha-ocr v1" in output
    assert run(["git", "status", "--porcelain"], bob, env) == ""  # dvc.lock as committed

    # The pulled reader reads the test split exactly as the pushed one does.
    test = [f"data/raw/images/{row.split(',')[0]}" for row in split_rows(alice)]
    command = ["captcha-ocr", "predict", "--json", "--model", "models/export", *test]
    assert json.loads(run(command, bob, env)) == json.loads(run(command, alice, env))

    # The champion's data: the commit whose dvc.lock records it, and how to restore it.
    lineage = run(["captcha-ocr", "lineage"], bob, env)
    assert f"git checkout {lock_commit}" in lineage and "dvc pull" in lineage


def test_a_plain_directory_remote_works_alike(team):
    base, alice, origin, env, _, _ = team
    folder = base / "shared-dvc-store"
    # A second remote, in each clone's own config (a folder on a shared mount).
    run(["dvc", "remote", "add", "--local", "shared", str(folder)], alice, env)
    dvc(alice, env, "push", "-r", "shared")
    carol = base / "carol"
    run(["git", "clone", "-q", "-b", "main", str(origin), str(carol)], base, env)
    run(["dvc", "remote", "add", "--local", "shared", str(folder)], carol, env)
    dvc(carol, env, "pull", "-r", "shared")
    # Everything pulled: only the always-run store check is pending.
    assert dvc(carol, env, "status").split() == ["register:", "always", "changed"]


def test_a_new_empty_store_gets_the_version_and_a_champion(team, tmp_path):
    _, alice, _, env, _, server = team
    empty = f"sqlite:///{tmp_path / 'new-store.db'}"
    output = dvc(alice, env | {"MLFLOW_TRACKING_URI": empty}, "repro")
    assert ran(output) == ["register", "promote"], output  # registered again, no training
    registry = json.loads((alice / "models/registry.json").read_text())
    client = client_for(empty)
    champion = client.get_model_version_by_alias("captcha-ocr", "champion")
    assert str(champion.version) == registry["version"]
    assert champion.tags["reader_sha256"] == registry["reader_sha256"]
    assert champion.tags["data.zip_md5"]  # lineage tags, as export gives

    # Back on the team server: it holds the reader, and dvc.lock is the committed one.
    output = dvc(alice, env, "repro")
    assert ran(output) == ["register"], output
    assert run(["git", "status", "--porcelain"], alice, env) == ""


def test_outputs_from_the_run_cache_are_registered_in_the_store_in_use(team, tmp_path):
    _, alice, _, env, _, server = team
    other = f"sqlite:///{tmp_path / 'other-store.db'}"
    for path in ("models/export", "models/registry.json", "reports/promotion.json"):
        run(["rm", "-rf", path], alice, env)
    output = dvc(alice, env | {"MLFLOW_TRACKING_URI": other}, "repro")
    assert "Stage 'export' is cached - skipping run, checking out outputs" in output, output
    assert ran(output) == ["register", "promote"], output
    # registered.json came from the cache and names the team server's version; promote
    # went by registry.json, the version this store holds.
    registered = json.loads((alice / "models/export/registered.json").read_text())
    registry = json.loads((alice / "models/registry.json").read_text())
    assert registered["store"] != registry["store"]
    promotion = json.loads((alice / "reports/promotion.json").read_text())
    assert promotion["candidate"] == registry["version"] and promotion["promoted"]

    # Without registry.json, promote refuses the other store's version by name.
    (alice / "models/registry.json").unlink()
    done = subprocess.run(
        ["captcha-ocr", "promote"],
        cwd=alice,
        env=env | {"MLFLOW_TRACKING_URI": other},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert f"models/export/registered.json names version {registered['version']}" in done.stderr
    assert "run `captcha-ocr register`" in done.stderr
    dvc(alice, env, "checkout")
    dvc(alice, env, "repro")
    assert run(["git", "status", "--porcelain"], alice, env) == ""


def test_an_experiment_travels_with_exp_push_pull_apply(team):
    base, alice, origin, env, _, server = team
    output = dvc(alice, env, "exp", "run", "-n", "two-epochs", "-S", "train.epochs=2")
    assert "train" in ran(output)
    trained = (alice / "models/train/model.keras").read_bytes()
    dvc(alice, env, "exp", "push", "origin", "two-epochs")

    bob = base / "bob"
    dvc(bob, env, "exp", "pull", "origin", "two-epochs")
    dvc(bob, env, "exp", "apply", "two-epochs")
    assert yaml.safe_load((bob / "params.yaml").read_text())["train"]["epochs"] == 2
    assert (bob / "models/train/model.keras").read_bytes() == trained
    output = dvc(bob, env, "repro")
    assert ran(output) == ["register"], output
    registry = json.loads((bob / "models/registry.json").read_text())
    version = client_for(server.url).get_model_version("captcha-ocr", registry["version"])
    assert version.tags["reader_sha256"] == registry["reader_sha256"]

    # And back to the model of a past commit: its data and model, exactly.
    _, _, _, _, lock_commit, _ = team
    run(["git", "checkout", "-q", "-f", lock_commit], bob, env)
    dvc(bob, env, "pull")
    assert (bob / "models/train/model.keras").read_bytes() != trained
    assert dvc(bob, env, "status").split() == ["register:", "always", "changed"]


def split_rows(root: Path) -> list[str]:
    return (root / "data/splits/test.csv").read_text().splitlines()[1:]
