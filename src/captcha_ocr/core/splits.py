"""Which split an image belongs to, decided by the image alone.

An image's place is a function of its bytes: the sha256 of the file, read as
a number in [0, 1), against the fractions as thresholds (test below
``test_fraction``, val below ``test_fraction + val_fraction``, train above).
Adding images to the set or removing some therefore moves no other image, and
the same bytes land in the same split on every machine.

The label is left out of the hash on purpose: correcting a wrong label must not
move an image that was trained on into the test split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

SPLITS = ("train", "val", "test")
# Digits of the digest read as the position: 64 bits, far finer than any fraction.
_POSITION_HEX = 16


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def position(digest: str, salt: str = "") -> float:
    """Where a digest falls in [0, 1); ``salt`` gives an independent order."""
    if salt:
        digest = hashlib.sha256(f"{salt}:{digest}".encode()).hexdigest()
    return int(digest[:_POSITION_HEX], 16) / 16**_POSITION_HEX


def assign(digest: str, val_fraction: float, test_fraction: float) -> str:
    """``train``, ``val`` or ``test`` for the image whose sha256 is ``digest``."""
    at = position(digest)
    if at < test_fraction:
        return "test"
    if at < test_fraction + val_fraction:
        return "val"
    return "train"


def split_digest(rows: Iterable[tuple[str, str]]) -> str:
    """One digest for a split's (image sha256, label) pairs, whatever their order.

    Two splits with the same images and labels get the same digest, however
    their CSVs differ in file names, order or other columns.
    """
    lines = sorted(f"{digest} {label}\n" for digest, label in rows)
    return hashlib.sha256("".join(lines).encode()).hexdigest()
