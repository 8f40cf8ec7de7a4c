"""Score the champion on the candidate's test images, for a gate on equal terms.

A candidate trained on a newer data version is scored on a newer test split
than the champion was. Comparing the two numbers would compare two exams. So
promote loads the champion's reader from the registry and reads the test split
in this folder, if it is the candidate's (same images and labels, by
``split_identity``); the gate then compares both models on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from mlflow import MlflowClient

from captcha_ocr import paths
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.files import read_text_table
from captcha_ocr.promotion.gate import Scores


class RescoreError(CaptchaOcrError):
    pass


@dataclass(frozen=True)
class Rescore:
    exact_match: float
    cer: float
    images: int


def on_equal_terms(client: MlflowClient, name: str, candidate: Scores, champion: Scores) -> Scores:
    """The champion's scores on the candidate's test split, when they were scored apart.

    Both scores are kept as tags: the champion's own stay as they are; its score
    on the candidate's split goes to the candidate (``promotion.champion_*``)
    and to the champion (``test_exact_match.<split>``, ``test_cer.<split>``).
    When the champion cannot be scored here, the reason says why and the gate
    refuses as before.
    """
    if candidate.version == champion.version or candidate.test_split == champion.test_split:
        return champion
    if candidate.metrics_version != champion.metrics_version:
        return champion  # another metric definition: the gate refuses it as such
    try:
        score = rescore_registered(name, champion.version, candidate.test_split)
    except CaptchaOcrError as err:
        why = f"v{champion.version} could not be scored on the candidate's test split: {err}"
        return replace(champion, basis=why)
    split = candidate.test_split[:12]
    for key, value in (("test_exact_match", score.exact_match), ("test_cer", score.cer)):
        client.set_model_version_tag(name, champion.version, f"{key}.{split}", str(value))
    kept: dict[str, object] = {
        "promotion.champion_version": champion.version,
        "promotion.champion_test_exact_match": score.exact_match,
        "promotion.champion_test_cer": score.cer,
        "promotion.champion_test_split_sha256": candidate.test_split,
    }
    for key, kept_value in kept.items():
        client.set_model_version_tag(name, candidate.version, key, str(kept_value))
    basis = (
        f"both read the candidate's {score.images} test images, split {split}; on its own "
        f"split {champion.test_split[:12]} v{champion.version} had exact match "
        f"{champion.exact_match:.4f}, CER {champion.cer:.4f}"
    )
    return replace(
        champion,
        exact_match=score.exact_match,
        cer=score.cer,
        test_split=candidate.test_split,
        basis=basis,
    )


def local_test_split(split: str) -> str | None:
    """Why the test split here cannot stand for ``split``; None when it can."""
    from captcha_ocr.steps.preprocess import DataError, split_identity

    if not (paths.split_csv("test").is_file() and paths.split_arrays("test").is_file()):
        return f"no test split here ({paths.split_csv('test')}, {paths.split_arrays('test')})"
    try:
        here = split_identity("test")
    except DataError as err:
        return str(err)
    if here != split:
        return (
            f"the test split here ({paths.split_csv('test')}, {here[:12]}) is not the "
            f"candidate's ({split[:12]})"
        )
    return None


def rescore_registered(model_name: str, version: str, split: str) -> Rescore:
    """Version ``version``'s exact match and CER on the test split here, which is ``split``."""
    from captcha_ocr.core.images import channels_of
    from captcha_ocr.core.metrics import character_error_rate, exact_match
    from captcha_ocr.steps.preprocess import load_split

    if problem := local_test_split(split):
        raise RescoreError(problem)
    reader = load_registered_reader(model_name, version)
    images = load_split("test")["images"]
    found = (images.shape[1], images.shape[2], channels_of(images))
    if found != (reader.height, reader.width, reader.channels):
        raise RescoreError(
            f"{model_name} v{version} reads {reader.height}x{reader.width} images with "
            f"{reader.channels} channel(s), the test split has {found[0]}x{found[1]} "
            f"with {found[2]}"
        )
    labels = read_text_table(paths.split_csv("test"))["label"].tolist()
    texts, _ = reader.read(images)
    return Rescore(exact_match(labels, texts), character_error_rate(labels, texts), len(labels))


def load_registered_reader(model_name: str, version: str):
    """The ``.keras`` reader of a registered version, loaded with Keras' safe mode."""
    import tempfile

    import mlflow

    from captcha_ocr.core.model import CaptchaReader

    with tempfile.TemporaryDirectory(prefix="captcha-ocr-champion-") as folder:
        uri = f"models:/{model_name}/{version}"
        try:
            mlflow.artifacts.download_artifacts(uri, dst_path=folder)
        except mlflow.exceptions.MlflowException as err:
            raise RescoreError(f"{uri}: cannot be downloaded: {err.message}") from None
        found = sorted(Path(folder).rglob("*.keras"))
        if not found:
            raise RescoreError(f"{uri}: the registered model holds no .keras reader")
        return CaptchaReader.load(found[0])
