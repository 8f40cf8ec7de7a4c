"""Sources a team has: a zip in an S3 bucket, and a zip tracked in a DVC data
repository at a revision, its remote in S3. Both against a stand-in for S3 on
loopback (moto's server), with credentials from the environment only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from captcha_ocr.config import IngestParams
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.sources import is_remote_storage
from captcha_ocr.steps.ingest import ingest, sha256_of

from ..dvc_project import small_zip


def run_ingest(tmp_path: Path, params: IngestParams) -> dict:
    out = tmp_path / "out"
    return ingest(
        params,
        zip_path=out / "raw.zip",
        images_dir=out / "images",
        info_path=out / "ingest.json",
    )


def test_remote_storage_urls_are_told_from_local_paths_and_http():
    assert is_remote_storage("s3://team/captchas.zip")
    assert is_remote_storage("gs://team/captchas.zip") and is_remote_storage("azure://c/x.zip")
    for local in ("data/captchas.zip", "/abs/captchas.zip", "file:///abs/x.zip", "C:/x.zip"):
        assert not is_remote_storage(local), local
    assert not is_remote_storage("https://example.org/captchas.zip")


def test_a_zip_in_a_bucket_is_read_with_credentials_from_the_environment(tmp_path, captcha_zip, s3):
    client = s3.client()
    client.create_bucket(Bucket="team-captchas")
    data = small_zip(tmp_path / "v1.zip", captcha_zip, 20)
    client.upload_file(str(data), "team-captchas", "sets/v1.zip")

    info = run_ingest(tmp_path, IngestParams(source="s3://team-captchas/sets/v1.zip"))
    assert info["sha256"] == sha256_of(data) and info["files"] == 20
    assert info["source"] == "s3://team-captchas/sets/v1.zip"
    record = (tmp_path / "out/ingest.json").read_text()
    assert "stand-in-secret" not in record and "stand-in-key" not in record


def test_a_missing_object_is_named_and_nothing_is_written(tmp_path, s3):
    s3.client().create_bucket(Bucket="team-empty")
    with pytest.raises(CaptchaOcrError, match=r"'s3://team-empty/none\.zip': no such object"):
        run_ingest(tmp_path, IngestParams(source="s3://team-empty/none.zip"))
    assert not (tmp_path / "out" / "images").exists()
    assert not (tmp_path / "out" / "ingest.json").exists()


def test_a_storage_without_its_plugin_is_named(tmp_path):
    with pytest.raises(CaptchaOcrError, match=r"'gs://team/captchas\.zip': cannot be read here"):
        run_ingest(tmp_path, IngestParams(source="gs://team/captchas.zip"))


@pytest.fixture
def data_repo(tmp_path, captcha_zip, s3):
    """A git + DVC data repository whose captchas.zip is v1 at tag v1 and v2 at tag v2.

    Its remote is a bucket of the stand-in; the local cache is emptied after the
    push, so reading a revision has to fetch it from the remote.
    """
    repo = tmp_path / "data-registry"
    repo.mkdir()
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for role in ("AUTHOR", "COMMITTER"):
        env |= {f"GIT_{role}_NAME": "test", f"GIT_{role}_EMAIL": "test@example.org"}

    def run(*command: str) -> None:
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"

    s3.client().create_bucket(Bucket="team-dvc")
    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("dvc", "remote", "add", "-d", "team", "s3://team-dvc/store")
    zips = {}
    for version, count in (("v1", 20), ("v2", 22)):
        zips[version] = small_zip(tmp_path / f"{version}.zip", captcha_zip, count)
        (repo / "captchas.zip").write_bytes(zips[version].read_bytes())
        run("dvc", "add", "-q", "captchas.zip")
        run("git", "add", "-A")
        run("git", "commit", "-qm", f"captchas {version}")
        run("git", "tag", version)
        run("dvc", "push", "-q")
    for entry in (repo / ".dvc" / "cache").rglob("*"):
        if entry.is_file():
            entry.unlink()
    return repo, zips


def test_a_path_in_a_dvc_repo_is_read_at_a_revision(tmp_path, data_repo):
    repo, zips = data_repo
    for version in ("v1", "v2"):
        params = IngestParams(source="captchas.zip", repo=str(repo), rev=version)
        info = run_ingest(tmp_path / version, params)
        assert info["sha256"] == sha256_of(zips[version])
        assert (info["repo"], info["rev"]) == (str(repo), version)
    saved = json.loads((tmp_path / "v2/out/ingest.json").read_text())
    assert saved["files"] == 22 and saved["source"] == "captchas.zip"


def test_a_missing_revision_is_named(tmp_path, data_repo):
    repo, _ = data_repo
    params = IngestParams(source="captchas.zip", repo=str(repo), rev="v9")
    with pytest.raises(CaptchaOcrError, match=r"'captchas\.zip' in .*data-registry at v9"):
        run_ingest(tmp_path, params)
