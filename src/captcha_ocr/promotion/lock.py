"""The promotion lock: one promotion of a model at a time, across processes and machines."""

from __future__ import annotations

import os
import random
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from captcha_ocr.errors import CaptchaOcrError


class PromotionError(CaptchaOcrError):
    pass


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
