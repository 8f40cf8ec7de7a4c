"""Which MLflow store a version number belongs to, and which reader a store holds.

A version number means something only in the store that gave it. DVC caches
a stage's outputs by its inputs, and the MLflow store is none of them (a URL
must never be a DVC dep: DVC deletes the outputs of a dep it cannot reach).
So after a change of MLFLOW_TRACKING_URI, or from DVC's run cache, a file may
name a version that this store does not hold, or holds as another model.

Two facts make that checkable:

- each store has an identity, a random id kept in the store itself (the tag
  ``store_id`` of the registered model ``captcha-ocr.store-identity``), so a
  new, empty store at the same URL is another store;
- each registered reader carries the sha256 of its ``.keras`` file (the tag
  ``reader_sha256``), so "does this store hold this reader?" is one search.

Files that name a version (``registered.json``, ``models/registry.json``)
record the store's id beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from captcha_ocr.errors import CaptchaOcrError

IDENTITY_MODEL = "captcha-ocr.store-identity"
ID_TAG = "store_id"
READER_TAG = "reader_sha256"


class StoreError(CaptchaOcrError):
    pass


def store_id(client: MlflowClient | None = None) -> str:
    """This store's id, created the first time any step asks.

    Creating a registered model is atomic (names are unique), so two processes
    meeting a new store at once agree on one id.
    """
    client = client or MlflowClient()
    found = _read_id(client)
    if found:
        return found
    # A clash means another process created it first (sqlite may say so with another code).
    with contextlib.suppress(MlflowException):
        client.create_registered_model(
            IDENTITY_MODEL,
            tags={ID_TAG: uuid.uuid4().hex},
            description="The identity of this MLflow store for captcha-ocr; do not delete.",
        )
    found = _read_id(client)
    if not found:
        raise StoreError(
            f"the registered model {IDENTITY_MODEL!r} has no {ID_TAG!r} tag: tag it with "
            "a new random id, or delete it to have one made"
        )
    return found


def _read_id(client: MlflowClient) -> str | None:
    try:
        return client.get_registered_model(IDENTITY_MODEL).tags.get(ID_TAG)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reader_tags(reader: Path | str) -> dict[str, str]:
    """The tag that lets any store be asked whether it holds this reader."""
    return {READER_TAG: file_sha256(reader)}


def find_version(client: MlflowClient, name: str, reader_sha256: str) -> ModelVersion | None:
    """The oldest version of ``name`` in this store that is this reader, if any."""
    found = client.search_model_versions(
        f"name = '{name}' and tags.{READER_TAG} = '{reader_sha256}'"
    )
    return min(found, key=lambda mv: int(mv.version)) if found else None


def check_same_store(record: dict, path: Path | str, client: MlflowClient | None = None) -> None:
    """Refuse a version that ``record`` (read from ``path``) names in another store."""
    recorded = record.get("store")
    if recorded is None:
        return  # written before stores had ids: trusted as before
    here = store_id(client)
    if recorded != here:
        raise StoreError(
            f"{path} names version {record.get('version')} of store {recorded}, but the "
            f"tracking store here is {here} (MLFLOW_TRACKING_URI changed, or DVC restored "
            "the file from its cache): run `captcha-ocr register` (dvc repro does) to "
            "register the reader in this store"
        )
