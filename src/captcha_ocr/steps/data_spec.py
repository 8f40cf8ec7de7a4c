"""Preprocess's ``auto`` params: image size, channels, characters and label lengths.

Each one set to ``auto`` is read from the images the training split will hold
(an image's split follows from its bytes, ``core.splits``), so nothing about
the validation or test images shapes the choice. Only images whose header
reads, and whose label passes the params that are not ``auto``, count:

- size: the median height and the median width, scaled down (aspect kept)
  to the bounds of ``config`` when over them;
- channels: 3 when any of those images carries colour (``images.is_colour``:
  more than 1% of its pixels with channels more than 24 levels apart), else 1;
- characters: every character of their labels; lengths: the shortest and
  longest label.

A validation or test label with a character or a length the training labels
do not have is kept, not rejected: leaving it out would hide a captcha the
model cannot read from its score. The report lists such labels
(``outside_training``), and the vocabulary has room for their characters.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from captcha_ocr.config import (
    AUTO,
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    MAX_LABEL_LENGTH,
    PreprocessParams,
)
from captcha_ocr.core.images import ImageError, decode_image, decode_pixels, header, is_colour
from captcha_ocr.core.splits import assign
from captcha_ocr.core.vocabulary import ReadingSpec
from captcha_ocr.errors import CaptchaOcrError

# Rejections named in an error; a file holds all of them.
SHOWN_REASONS = 3
AUTO_KEYS = (
    "image_height",
    "image_width",
    "channels",
    "allowed_chars",
    "min_label_length",
    "max_label_length",
)


class DataError(CaptchaOcrError):
    pass


@dataclass(frozen=True)
class DataFile:
    """One labelled file of the ingested set."""

    file: str  # relative to the images folder
    path: Path
    label: str
    sha256: str  # of the file's bytes


@dataclass(frozen=True)
class Resolved:
    """The preprocess params with every ``auto`` replaced by what the training images gave."""

    spec: ReadingSpec
    allowed_chars: str
    resize: bool
    auto: tuple[str, ...]  # the keys that were auto
    training_images: int  # images the auto values were read from

    def label_problem(self, label: str) -> str | None:
        """Why a label is rejected, by the params that are not auto (None: it is not)."""
        low = 1 if "min_label_length" in self.auto else self.spec.min_label_length
        high = MAX_LABEL_LENGTH if "max_label_length" in self.auto else self.spec.max_label_length
        if not low <= len(label) <= high:
            return f"label length {len(label)} outside {low}-{high}"
        chars = "allowed_chars" in self.auto
        if not chars and (bad := sorted(set(label) - set(self.allowed_chars))):
            return f"label has characters outside preprocess.allowed_chars: {bad}"
        return None

    def outside_training(self, label: str) -> str | None:
        """What of a label the training labels never show (auto params only), or None."""
        low, high = self.spec.min_label_length, self.spec.max_label_length
        if not low <= len(label) <= high:
            return f"length {len(label)}, training labels have {low}-{high}"
        if unseen := sorted(set(label) - set(self.allowed_chars)):
            return f"characters {unseen} are in no training label"
        return None

    def decode(self, data: bytes):
        s = self.spec
        return decode_image(
            data, s.image_height, s.image_width, resize=self.resize, channels=s.channels
        )

    def report(self) -> dict[str, object]:
        return {
            **asdict(self.spec),
            "allowed_chars": self.allowed_chars,
            "wrong_size": "resize" if self.resize else "reject",
            "auto": list(self.auto),
            "read_from_training_images": self.training_images,
        }


def resolve(params: PreprocessParams, files: list[DataFile]) -> Resolved:
    """``params`` with each ``auto`` read from the training split's images and labels."""
    auto = tuple(key for key in AUTO_KEYS if getattr(params, key) == AUTO)
    fixed = _fixed_rules(params)
    training: list[tuple[DataFile, tuple[int, int]]] = []
    rejected: list[dict] = []  # named if no training image is left
    seen: set[str] = set()
    for entry in files if auto else []:
        if problem := fixed(entry.label):
            rejected.append({"file": entry.file, "reason": problem})
            continue
        if entry.sha256 in seen:
            continue
        seen.add(entry.sha256)
        if assign(entry.sha256, params.val_fraction, params.test_fraction) != "train":
            continue
        try:
            with header(entry.path.read_bytes()) as image:
                training.append((entry, image.size))
        except ImageError as err:
            rejected.append({"file": entry.file, "reason": str(err)})
    if auto and not training:
        raise DataError(
            f"{len(rejected)} of {len(files)} files rejected, and none left in the training "
            f"split to read preprocess.{', '.join(auto)} (auto) from; {reasons(rejected)}"
        )
    labels = [entry.label for entry, _ in training]
    height, width = _size(params, [size for _, size in training])
    low = params.min_label_length
    high = params.max_label_length
    spec = ReadingSpec(
        image_height=height,
        image_width=width,
        channels=_channels(params, [entry for entry, _ in training]),
        min_label_length=min(map(len, labels)) if low == AUTO else int(low),
        max_label_length=min(max(map(len, labels)), MAX_LABEL_LENGTH)
        if high == AUTO
        else int(high),
    )
    if spec.min_label_length > spec.max_label_length:
        raise DataError(
            f"preprocess.min_label_length {spec.min_label_length} is larger than "
            f"max_label_length {spec.max_label_length} (auto: read from the training labels)"
        )
    chars = params.allowed_chars
    if chars == AUTO:
        chars = "".join(sorted(set("".join(labels))))
    return Resolved(spec, chars, params.wrong_size == "resize", auto, len(training))


def _fixed_rules(params: PreprocessParams):
    """A check of a label against the params that are not auto: a reason, or None."""
    low = 1 if params.min_label_length == AUTO else params.min_label_length
    high = MAX_LABEL_LENGTH if params.max_label_length == AUTO else params.max_label_length
    chars = None if params.allowed_chars == AUTO else set(params.allowed_chars)

    def problem(label: str) -> str | None:
        if not low <= len(label) <= high:
            return f"label length {len(label)} outside {low}-{high}"
        if chars is not None and (bad := sorted(set(label) - chars)):
            return f"label has characters outside preprocess.allowed_chars: {bad}"
        return None

    return problem


def reasons(rejected: list[dict]) -> str:
    """The first few rejections, and a file (not a step output) with all of them."""
    first = "; ".join(f"{r['file']}: {r['reason']}" for r in rejected[:SHOWN_REASONS])
    fd, path = tempfile.mkstemp(prefix="captcha-ocr-rejected-", suffix=".json")
    with os.fdopen(fd, "w") as out:
        json.dump(rejected, out, indent=2)
    return f"first: {first}; all {len(rejected)} reasons in {path}"


def _size(params: PreprocessParams, sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """(height, width): the params', or the median of the training images' within the bounds."""
    fixed_h, fixed_w = params.image_height, params.image_width
    height = fixed_h if isinstance(fixed_h, int) else round(statistics.median(h for _, h in sizes))
    width = fixed_w if isinstance(fixed_w, int) else round(statistics.median(w for w, _ in sizes))
    scale = min(1.0, MAX_IMAGE_SIDE / height, MAX_IMAGE_SIDE / width)
    scale = min(scale, math.sqrt(MAX_IMAGE_PIXELS / (height * width)))
    if scale < 1:
        height, width = max(1, math.floor(height * scale)), max(1, math.floor(width * scale))
    return height, width


def _channels(params: PreprocessParams, training: list[DataFile]) -> int:
    if params.channels != AUTO:
        return int(params.channels)
    for entry in training:
        try:
            if is_colour(decode_pixels(entry.path.read_bytes(), channels=3)):
                return 3
        except ImageError:
            continue
    return 1
