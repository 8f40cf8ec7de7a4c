"""Promotions racing each other on one registry: the champion ends on the
better model, whatever the interleaving; the lock that makes it so."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from captcha_ocr import paths
from captcha_ocr.config import PromoteParams
from captcha_ocr.files import write_json
from captcha_ocr.promotion import lock as lock_module
from captcha_ocr.promotion.gate import CHAMPION, PromotionError, promote
from captcha_ocr.promotion.lock import LOCK_SUFFIX

GATE = PromoteParams(min_exact_match=0.5, min_gain=0.0)
ROUNDS = 8


def add_version(client: MlflowClient, name: str, source: str, exact_match: float) -> str:
    tags = {
        "test_exact_match": str(exact_match),
        "test_cer": "0.01",
        "test_split_sha256": "s" * 64,
        "metrics_version": "1",
    }
    return str(client.create_model_version(name, source, tags=tags).version)


def race(*calls) -> list[BaseException]:
    """Run the calls in threads released together; return what they raised."""
    start = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call):
        start.wait()
        try:
            call()
        except BaseException as err:  # reported by the test, not lost in the thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


@pytest.mark.parametrize("better_first", [True, False])
def test_two_promotions_at_once_leave_the_better_champion(store, better_first):
    client = MlflowClient()
    source = str(store / "model")
    for round_ in range(ROUNDS):
        name = f"race-{better_first}-{round_}"
        client.create_registered_model(name)
        first = add_version(client, name, source, 0.8)
        promote(name, GATE, version=first)
        good = add_version(client, name, source, 0.9)
        best = add_version(client, name, source, 0.95)
        order = [best, good] if better_first else [good, best]
        errors = race(*(lambda n=name, v=v: promote(n, GATE, version=v) for v in order))
        assert errors == []
        champion = client.get_model_version_by_alias(name, CHAMPION)
        assert str(champion.version) == best, f"round {round_}: champion v{champion.version}"


def held_lock(client: MlflowClient, name: str) -> None:
    """The lock as a promotion in another process holds it."""
    client.create_registered_model(f"{name}{LOCK_SUFFIX}", tags={"holder": "host-b pid 4242"})


def test_a_held_lock_makes_promotion_wait_then_fail_clearly(store, monkeypatch):
    client = MlflowClient()
    client.create_registered_model("held")
    v1 = add_version(client, "held", str(store / "model"), 0.8)
    held_lock(client, "held")
    monkeypatch.setattr(lock_module, "LOCK_WAIT_SECONDS", 0.5)
    with pytest.raises(PromotionError, match=r"host-b pid 4242.*held\.promotion-lock"):
        promote("held", GATE, version=v1)
    assert client.get_registered_model("held").aliases == {}
    assert client.get_registered_model(f"held{LOCK_SUFFIX}")  # not ours to release


def test_a_stale_lock_from_a_crashed_promotion_is_broken(store, monkeypatch, capsys):
    client = MlflowClient()
    client.create_registered_model("stale")
    v1 = add_version(client, "stale", str(store / "model"), 0.8)
    held_lock(client, "stale")
    monkeypatch.setattr(lock_module, "LOCK_STALE_SECONDS", 0.0)
    assert promote("stale", GATE, version=v1).promoted
    assert "broke the stale promotion lock of host-b pid 4242" in capsys.readouterr().out
    names = {m.name for m in client.search_registered_models()}
    assert names == {"stale"}  # the lock is released after the promotion


def backdate(store: Path, lock: str, seconds: float) -> None:
    """Age a lock in the store's own table, as a promotion that crashed long ago left it."""
    with sqlite3.connect(store / "mlflow.db") as db:
        db.execute(
            "UPDATE registered_models SET creation_time = creation_time - ? WHERE name = ?",
            (int(seconds * 1000), lock),
        )


def test_a_waiter_that_read_a_stale_lock_never_deletes_the_lock_taken_in_its_place(
    store, monkeypatch
):
    """Two waiters see the same stale lock; one breaks it and takes a new one while the
    other is held up between reading the stale lock and acting on it."""
    client = MlflowClient()
    client.create_registered_model("race")
    v1 = add_version(client, "race", str(store / "model"), 0.8)
    lock = f"race{LOCK_SUFFIX}"
    held_lock(client, "race")
    backdate(store, lock, 2 * lock_module.LOCK_STALE_SECONDS)

    # The slow waiter pauses right after its first read of the lock (the stale one).
    read_lock = lock_module._lock_holder
    slow_reads: list = []
    read_the_stale_lock, go_on = threading.Event(), threading.Event()

    def reading(client, name):
        held = read_lock(client, name)
        if threading.current_thread() is slow:
            slow_reads.append(held)
            if len(slow_reads) == 1:
                read_the_stale_lock.set()
                go_on.wait(30)
        return held

    monkeypatch.setattr(lock_module, "_lock_holder", reading)
    results, errors = [], []

    def promote_slowly():
        try:
            results.append(promote("race", GATE, version=v1))
        except BaseException as err:  # reported below, not lost in the thread
            errors.append(err)

    slow = threading.Thread(target=promote_slowly)
    slow.start()
    assert read_the_stale_lock.wait(30)
    with lock_module.promotion_lock(client, "race"):  # the quick waiter breaks it and holds it
        ours = read_lock(client, lock)[0]
        go_on.set()
        # Until the slow waiter has acted on what it read and looked again.
        deadline = time.monotonic() + 30
        while len(slow_reads) < 3 and slow.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        held = read_lock(client, lock)
        assert held is not None and held[0] == ours, f"our lock was deleted; now {held}"
    slow.join(60)
    assert errors == [] and results[0].promoted  # it waited for us, then promoted
    assert {m.name for m in client.search_registered_models()} == {"race"}


def test_a_promotion_whose_lock_was_broken_leaves_the_new_holders_lock(store, capsys):
    client = MlflowClient()
    lock = f"kept{LOCK_SUFFIX}"
    with lock_module.promotion_lock(client, "kept"):
        # Meanwhile another waiter took this promotion for crashed, broke its lock, took it.
        client.delete_registered_model(lock)
        held_lock(client, "kept")
    assert client.get_registered_model(lock).tags["holder"] == "host-b pid 4242"
    assert "is not ours and is left alone" in capsys.readouterr().err


def test_promote_step_takes_the_version_its_export_registered(store):
    from captcha_ocr.steps import promote as promote_step

    assert paths.REGISTERED == paths.REGISTERED
    client = MlflowClient()
    client.create_registered_model("mine")
    ours = add_version(client, "mine", str(store / "model"), 0.9)
    add_version(client, "mine", str(store / "model"), 0.95)  # another pipeline's, newer
    (store / "params.yaml").write_text(
        "export:\n  model_name: mine\npromote:\n  min_exact_match: 0.5\n"
    )
    write_json(store / paths.REGISTERED, {"name": "mine", "version": ours})
    promote_step.main([])
    assert str(client.get_model_version_by_alias("mine", CHAMPION).version) == ours
