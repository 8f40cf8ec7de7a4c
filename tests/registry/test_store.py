"""Store identity (captcha_ocr.store) on real sqlite stores: each store its own id,
a reader found by its digest only in a store that holds it, and a version of
another store refused by promote."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from captcha_ocr import paths
from captcha_ocr import store as stores
from captcha_ocr.files import write_json
from captcha_ocr.promotion.gate import CHAMPION
from captcha_ocr.steps import promote as promote_step

from .test_concurrent_promotion import add_version, race


def client_for(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_each_store_has_its_own_id_and_keeps_it(store):
    client = MlflowClient()
    ids: list[str] = []
    errors = race(*(lambda: ids.append(stores.store_id(client)) for _ in range(4)))
    assert errors == [] and len(ids) == 4 and len(set(ids)) == 1  # a new store, met at once
    assert stores.store_id(client) == ids[0]
    other = client_for(f"sqlite:///{store / 'other.db'}")
    assert stores.store_id(other) != ids[0]


def test_a_reader_is_found_by_its_digest_only_where_it_is(store):
    client = MlflowClient()
    client.create_registered_model("found")
    tags = {"reader_sha256": "a" * 64}
    first = client.create_model_version("found", str(store / "m"), tags=tags).version
    client.create_model_version("found", str(store / "m"), tags=tags)  # a second copy
    client.create_model_version("found", str(store / "m"), tags={"reader_sha256": "b" * 64})
    assert stores.find_version(client, "found", "a" * 64).version == first  # the oldest
    assert stores.find_version(client, "found", "c" * 64) is None
    other = client_for(f"sqlite:///{store / 'other.db'}")
    assert stores.find_version(other, "found", "a" * 64) is None


def test_promote_refuses_a_version_of_another_store(store, capsys):
    client = MlflowClient()
    client.create_registered_model("mine")
    ours = add_version(client, "mine", str(store / "model"), 0.9)
    (store / "params.yaml").write_text(
        "export:\n  model_name: mine\npromote:\n  min_exact_match: 0.5\n"
    )
    write_json(paths.REGISTERED, {"name": "mine", "version": ours, "store": "elsewhere"})
    with pytest.raises(stores.StoreError) as refused:
        promote_step.main([])
    message = str(refused.value)
    assert f"{paths.REGISTERED} names version {ours} of store elsewhere" in message
    assert stores.store_id(client) in message and "captcha-ocr register" in message
    assert mlflow.MlflowClient().get_registered_model("mine").aliases == {}

    # registry.json (the register stage's, for this reader, this store) wins.
    paths.READER.write_bytes(b"the exported reader")
    digest = stores.file_sha256(paths.READER)
    here = stores.store_id(client)
    write_json(
        paths.REGISTRY, {"name": "mine", "version": ours, "store": here, "reader_sha256": digest}
    )
    promote_step.main([])
    assert str(client.get_model_version_by_alias("mine", CHAMPION).version) == ours


def test_a_registry_json_of_an_older_export_is_not_taken(store):
    client = MlflowClient()
    client.create_registered_model("mine")
    old = add_version(client, "mine", str(store / "model"), 0.8)
    new = add_version(client, "mine", str(store / "model"), 0.9)
    here = stores.store_id(client)
    (store / "params.yaml").write_text(
        "export:\n  model_name: mine\npromote:\n  min_exact_match: 0.5\n"
    )
    paths.READER.parent.mkdir(parents=True, exist_ok=True)
    paths.READER.write_bytes(b"exported since by mlflow run -e export")
    stale = {"name": "mine", "version": old, "store": here, "reader_sha256": "0" * 64}
    write_json(paths.REGISTRY, stale)
    write_json(paths.REGISTERED, {"name": "mine", "version": new, "store": here})
    assert promote_step.exported_version("mine") == new
