"""Which data a registered model was made from, and how to bring that data back.

    captcha-ocr lineage [models:/captcha-ocr@champion | models:/NAME/VERSION]

Export tags each version with the data it saw: ``dataset_sha256`` (the zip),
``data.zip_md5`` and ``data.splits_md5`` (what ``dvc.lock`` recorded for the
zip and ``data/splits``), and ``data_commit``, a git commit whose committed
``dvc.lock`` records the same data. That commit rarely exists yet when export
runs (``dvc.lock`` is committed after ``dvc repro``), so this command looks
again in the git history of the folder it runs in, and prints the commands that
restore the data, or says plainly that they cannot.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
from pathlib import Path

import yaml

from captcha_ocr import paths
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.redaction import redact_source

LOCK = Path("dvc.lock")
NOT_COMMITTED = "none yet"


class LineageError(CaptchaOcrError):
    pass


def lock_digests(lock_text: str) -> dict[str, str]:
    """The md5s a dvc.lock records for the zip and the splits (empty when it has none)."""
    try:
        stages = (yaml.safe_load(lock_text) or {}).get("stages", {})
    except yaml.YAMLError:
        return {}
    wanted = {str(paths.RAW_ZIP): "data.zip_md5", str(paths.SPLITS): "data.splits_md5"}
    found = {}
    for stage in stages.values():
        for out in stage.get("outs", []) or []:
            if out.get("path") in wanted and out.get("md5"):
                found[wanted[out["path"]]] = out["md5"]
    return found


def data_tags(folder: Path = Path()) -> dict[str, str]:
    """Tags for a version exported here: the dvc.lock digests and a commit that has them."""
    lock = folder / LOCK
    if not lock.is_file():
        return {"data_commit": f"{NOT_COMMITTED}: no dvc.lock (not run by dvc repro)"}
    digests = lock_digests(lock.read_text())
    commit = matching_commit(digests, folder) if digests else None
    return digests | {
        "data_commit": commit or f"{NOT_COMMITTED}: commit dvc.lock after this run (and dvc push)"
    }


def matching_commit(digests: dict[str, str], folder: Path = Path()) -> str | None:
    """The oldest commit whose dvc.lock records these digests, if any."""
    commits = _git(folder, "log", "--reverse", "--format=%H", "--", str(LOCK))
    for commit in (commits or "").split():
        text = _git(folder, "show", f"{commit}:{LOCK}")
        if text is not None and _same(lock_digests(text), digests):
            return commit
    return None


def _same(recorded: dict[str, str], wanted: dict[str, str]) -> bool:
    return bool(wanted) and all(recorded.get(k) == v for k, v in wanted.items())


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def resolve(uri: str):
    """The model version a ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` URI names."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name, at, alias = uri.removeprefix("models:/").partition("@")
    client = MlflowClient()
    try:
        if at:
            return client.get_model_version_by_alias(name, alias)
        name, _, version = name.partition("/")
        return client.get_model_version(name, version)
    except MlflowException as err:
        raise LineageError(f"{uri}: not found in the registry ({err.message})") from None


def lineage(uri: str, folder: Path = Path()) -> list[str]:
    """Lines that say which data ``uri`` was made from and how to restore it."""
    if not uri.startswith("models:/"):
        raise LineageError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    mv = resolve(uri)
    tags = mv.tags
    ingest = json.loads(tags.get("params", "{}")).get("ingest", {})
    lines = [
        f"{uri} is {mv.name} version {mv.version}",
        f"data version: zip sha256 {tags.get('dataset_sha256', 'unknown')}",
        f"  from {_source(ingest)}",
        f"  test split {tags.get('test_split_sha256', 'unknown')}",
        f"  dvc.lock md5: zip {tags.get('data.zip_md5', 'unknown')}, "
        f"splits {tags.get('data.splits_md5', 'unknown')}",
        f"code: git commit {tags.get('git_commit', 'unknown')} (when exported)",
    ]
    digests = {k: tags[k] for k in ("data.zip_md5", "data.splits_md5") if k in tags}
    commit = matching_commit(digests, folder) if digests else None
    return lines + (_restore(commit) if commit else _cannot(tags, ingest, digests))


def _source(ingest: dict) -> str:
    source = ingest.get("source", "unknown")
    if ingest.get("repo"):
        at = f" at {ingest['rev']}" if ingest.get("rev") else ""
        return f"{source} in {redact_source(ingest['repo'])}{at}"
    return source


def _restore(commit: str) -> list[str]:
    return [
        f"commit whose dvc.lock records this data: {commit}",
        "to bring it back:",
        f"  git checkout {commit}",
        "  dvc pull --with-deps preprocess   # the zip, images and splits; `dvc pull`: all",
        "(dvc checkout in place of dvc pull when the DVC cache here still has them)",
    ]


def _cannot(tags: dict, ingest: dict, digests: dict) -> list[str]:
    why = (
        "no commit of dvc.lock here records these digests (dvc.lock was not committed "
        "after the run, or this is another repository)"
        if digests
        else "the version has no dvc.lock digests (not exported by dvc repro, e.g. Kubeflow)"
    )
    digest = tags.get("dataset_sha256")
    lines = [f"cannot restore from git: {why}."]
    if digest and ingest.get("source"):
        # Splits follow from the images' bytes, so the same zip gives the same splits.
        values = {"source": ingest["source"], "sha256": digest}
        values |= {k: ingest[k] for k in ("repo", "rev") if ingest.get(k)}
        # Quoted for the shell: these values come from registry tags.
        sets = [f"-S {shlex.quote(f'ingest.{key}={value}')}" for key, value in values.items()]
        lines += [
            "The same zip gives the same splits; if its source still serves it:",
            f"  dvc exp run {' '.join(sets)}",
            "(ingest refuses any other zip; first_seen starts afresh)",
        ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr lineage", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("uri", nargs="?", default="models:/captcha-ocr@champion")
    args = parser.parse_args(argv)
    from captcha_ocr import tracking

    tracking.use_existing_store()
    print("\n".join(lineage(args.uri)))
