"""The MLflow Model Registry: register the reader, promote it behind a gate.

Promotion moves aliases only (registry stages are deprecated): ``champion`` is
what serving loads, ``challenger`` marks a candidate that did not pass the gate.
The decision is made before anything is written, and moving an alias is one
registry call, so a failure at any point leaves the champion as it was.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from captcha_ocr.config import MODEL_NAME, PromoteParams
from captcha_ocr.errors import CaptchaOcrError

CHAMPION, CHALLENGER = "champion", "challenger"
GIT_COMMIT_ENV = "CAPTCHA_OCR_GIT_COMMIT"


class PromotionError(CaptchaOcrError):
    pass


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


@dataclass(frozen=True)
class Scores:
    version: str
    exact_match: float
    cer: float
    test_split: str
    metrics_version: str
    # Where the scores come from when not the version's own tags (a rescore).
    basis: str = ""

    @classmethod
    def of(cls, mv: ModelVersion) -> Scores:
        try:
            return cls(
                version=str(mv.version),
                exact_match=float(mv.tags["test_exact_match"]),
                cer=float(mv.tags["test_cer"]),
                test_split=mv.tags.get("test_split_sha256", ""),
                metrics_version=mv.tags.get("metrics_version", ""),
            )
        except (KeyError, ValueError) as err:
            raise PromotionError(
                f"model version {mv.version} has no usable test metrics tags ({err})"
            ) from None


def evaluation_gate(exact_match: float, gate: PromoteParams) -> tuple[bool, str]:
    """Whether test scores allow promotion at all, whatever the champion (pure)."""
    if exact_match >= gate.min_exact_match:
        return True, (
            f"exact match {exact_match:.4f} >= promote.min_exact_match {gate.min_exact_match}"
        )
    return False, (
        f"exact match {exact_match:.4f} is below promote.min_exact_match {gate.min_exact_match}"
    )


def decide(candidate: Scores, champion: Scores | None, gate: PromoteParams) -> tuple[bool, str]:
    """Whether ``candidate`` should become champion, and why (pure)."""
    promoted, why = _decide(candidate, champion, gate)
    if champion is not None and champion.basis:
        why = f"{why} ({champion.basis})"
    return promoted, why


def _decide(candidate: Scores, champion: Scores | None, gate: PromoteParams) -> tuple[bool, str]:
    passes, why = evaluation_gate(candidate.exact_match, gate)
    if champion is None:
        return passes, f"first champion: {why}" if passes else why
    if candidate.version == champion.version:
        return False, f"version {candidate.version} is already champion"
    if (candidate.test_split, candidate.metrics_version) != (
        champion.test_split,
        champion.metrics_version,
    ):
        return False, "scored on another test split or metric definition than the champion"
    if not passes:
        return False, why
    if candidate.exact_match > champion.exact_match + gate.min_gain:
        return True, (
            f"exact match {candidate.exact_match:.4f} beats champion's "
            f"{champion.exact_match:.4f} by more than {gate.min_gain}"
        )
    if candidate.exact_match == champion.exact_match and candidate.cer < champion.cer:
        return True, (f"same exact match, lower CER ({candidate.cer:.4f} < {champion.cer:.4f})")
    return False, (
        f"not better than champion v{champion.version}: exact match "
        f"{candidate.exact_match:.4f} vs {champion.exact_match:.4f}, CER "
        f"{candidate.cer:.4f} vs {champion.cer:.4f}"
    )


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


# (client, model name, candidate, champion) -> the champion's scores to decide
# with: its own, or its scores on the candidate's test split (rescoring.py).
Rescorer = Callable[[MlflowClient, str, Scores, Scores], Scores]


def promote(
    name: str,
    gate: PromoteParams,
    version: str | None = None,
    force: bool = False,
    reason: str | None = None,
    rescore: Rescorer | None = None,
) -> dict:
    """Move ``champion`` to the candidate if it passes the gate, else ``challenger``.

    Holds the model's promotion lock throughout, so a concurrent promotion
    decides against the champion this one leaves, never against a stale one.
    ``rescore`` scores the champion on the candidate's test split when the two
    were scored on different ones (``rescoring.on_equal_terms``).
    """
    if force and not reason:
        raise PromotionError("--force needs --reason: say why the gate is overridden")
    if not MODEL_NAME.fullmatch(name):
        # It goes into a search filter below; params.yaml is checked the same way.
        raise PromotionError(
            f"{name!r} is not a usable registered model name: letters, digits, '.', '_', '-'"
        )
    client = MlflowClient()
    with promotion_lock(client, name):
        return _promote(client, name, gate, version, force, reason, rescore)


def _promote(
    client: MlflowClient,
    name: str,
    gate: PromoteParams,
    version: str | None,
    force: bool,
    reason: str | None,
    rescore: Rescorer | None = None,
) -> dict:
    if version is None:
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise PromotionError(f"no versions of registered model {name!r}")
        version = str(max(int(v.version) for v in versions))
    try:
        candidate_mv = client.get_model_version(name, str(version))
    except MlflowException as err:
        raise PromotionError(f"{name!r} version {version}: {err.message}") from None
    champion_mv = alias_version(client, name, CHAMPION)
    before = {a: _version_of(client, name, a) for a in (CHAMPION, CHALLENGER)}

    candidate = Scores.of(candidate_mv)
    champion = Scores.of(champion_mv) if champion_mv else None
    if champion is not None and rescore is not None:
        champion = rescore(client, name, candidate, champion)
    promoted, why = decide(candidate, champion, gate)
    if force:
        promoted, why = True, f"forced: {reason}"
        client.set_model_version_tag(name, candidate.version, "promotion.forced_reason", reason)

    if promoted:
        client.set_registered_model_alias(name, CHAMPION, candidate.version)
        if before[CHALLENGER] == candidate.version:
            client.delete_registered_model_alias(name, CHALLENGER)
    elif candidate.version != before[CHAMPION]:
        client.set_registered_model_alias(name, CHALLENGER, candidate.version)
    client.set_model_version_tag(name, candidate.version, "promotion.decision", why)
    after = {a: _version_of(client, name, a) for a in (CHAMPION, CHALLENGER)}
    return {
        "model": name,
        "candidate": candidate.version,
        "promoted": promoted,
        "reason": why,
        "before": before,
        "after": after,
    }


LOCK_SUFFIX = ".promotion-lock"
LOCK_WAIT_SECONDS = 120.0
# A lock this old is taken to be left by a promotion that crashed.
LOCK_STALE_SECONDS = 600.0


@contextmanager
def promotion_lock(client: MlflowClient, name: str) -> Iterator[None]:
    """One promotion of ``name`` at a time, across processes and machines.

    The lock is a registered model named ``<name>.promotion-lock``: creating a
    registered model is atomic in every MLflow store (names are unique), so the
    lock works with a local sqlite file and a shared tracking server alike.

    A lock is deleted only by the promotion that holds it, or as stale (older
    than LOCK_STALE_SECONDS: its promotion crashed), and in both cases only
    while it still names the holder that was read: a waiter never deletes the
    lock another waiter took in its place. See ``_delete_if_held_by`` for the
    window MLflow leaves open.
    """
    lock = f"{name}{LOCK_SUFFIX}"
    # Unique per acquisition, so a lock taken again is never taken for the one read before.
    holder = f"{socket.gethostname()} pid {os.getpid()} #{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while not _try_lock(client, lock, holder, name):
        # Every pass waits and checks the deadline: a lock that is never released
        # must end in an error, not in a loop that hammers the server.
        held = _lock_holder(client, lock)
        holder_then, age = held or ("unknown", 0.0)
        if held is not None and age > LOCK_STALE_SECONDS:
            if _delete_if_held_by(client, lock, holder_then):
                print(f"note: broke the stale promotion lock of {holder_then} ({age:.0f} s old)")
        elif time.monotonic() > deadline:
            raise PromotionError(
                f"another promotion of {name!r} ({holder_then}) has held the lock for "
                f"{age:.0f} s; if it crashed, delete the registered model {lock!r}"
            )
        time.sleep(random.uniform(0.05, 0.25))
    try:
        yield
    finally:
        if not _delete_if_held_by(client, lock, holder):
            print(
                f"warning: the promotion lock {lock!r} was broken as stale while this "
                "promotion held it; the lock there now is not ours and is left alone",
                file=sys.stderr,
            )


def _try_lock(client: MlflowClient, lock: str, holder: str, name: str) -> bool:
    try:
        client.create_registered_model(
            lock,
            tags={"holder": holder},
            description=f"Held while a promotion of {name} runs; deleted when it ends.",
        )
        return True
    except MlflowException as err:
        # "does not exist": the sqlite store looks the holder up after a clash,
        # and the holder may have released the lock in between.
        if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
            raise
        return False


def _lock_holder(client: MlflowClient, lock: str) -> tuple[str, float] | None:
    """(holder, age in seconds) of the lock, None if there is none."""
    try:
        model = client.get_registered_model(lock)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise PromotionError(f"cannot read the promotion lock {lock!r}: {err}") from None
    age = time.time() - model.creation_timestamp / 1000
    return model.tags.get("holder", "unknown"), age


def _delete_if_held_by(client: MlflowClient, lock: str, holder: str) -> bool:
    """Delete the lock if ``holder`` holds it now; True if it was deleted.

    MLflow has no conditional delete, so this reads, compares, then deletes.
    Every holder name is unique, so a lock taken anew never matches an old
    name; what is left is the one request between the read and the delete: a
    lock deleted and taken by someone else in that moment is deleted too. That
    needs a stale lock (a crashed promotion) and two waiters breaking it within
    milliseconds of each other.
    """
    held = _lock_holder(client, lock)
    if held is None or held[0] != holder:
        return False
    try:
        client.delete_registered_model(lock)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":  # gone already is fine
            raise PromotionError(f"cannot delete the promotion lock {lock!r}: {err}") from None
    return True


def _version_of(client: MlflowClient, name: str, alias: str) -> str | None:
    mv = alias_version(client, name, alias)
    return str(mv.version) if mv else None


def format_table(result: dict) -> str:
    rows = [("alias", "before", "after")] + [
        (alias, result["before"][alias] or "-", result["after"][alias] or "-")
        for alias in (CHAMPION, CHALLENGER)
    ]
    lines = [f"{a:<12}{b:>8}{c:>8}" for a, b, c in rows]
    verdict = "promoted" if result["promoted"] else "not promoted"
    lines.append(f"{result['model']} v{result['candidate']}: {verdict}: {result['reason']}")
    return "\n".join(lines)
