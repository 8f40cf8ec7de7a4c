"""Step 2, preprocess: check every image, split the good ones, write arrays.

Each file is accepted only if its name is a valid label (allowed characters,
allowed length, not seen before) and its bytes decode to an image of the
expected size (or one we may resize, as params say). Rejected files go to the
data report with the reason; the step fails when too many are rejected, naming
the first reasons. Its four outputs are replaced together or not at all.
The split is a seeded shuffle of the sorted file list, so it is the same on
every machine and every run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from captcha_ocr import paths
from captcha_ocr.config import PreprocessParams, load_params
from captcha_ocr.core.images import ImageError, decode_image
from captcha_ocr.core.vocabulary import Vocabulary
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.files import all_or_nothing, write_json, write_with

SPLITS = ("train", "val", "test")
# Decoded pixels (bytes) preprocess may hold: every image at the params' size.
MAX_DECODED_BYTES = 4 * 2**30
# Rejections named in the error when there are too many.
SHOWN_REASONS = 3


class DataError(CaptchaOcrError):
    pass


@dataclass(frozen=True)
class Sample:
    file: str  # relative to the images folder
    label: str
    image: np.ndarray


def data_files(images_dir: Path) -> list[Path]:
    """Every file under ``images_dir`` in sorted order, OS metadata left out."""
    return sorted(
        p
        for p in images_dir.rglob("*")
        if p.is_file() and not p.name.startswith(".") and "__MACOSX" not in p.parts
    )


def check_memory(files: int, params: PreprocessParams) -> None:
    """Refuse before decoding when every image at the params' size would not fit in memory."""
    needed = files * params.image_height * params.image_width
    if needed > MAX_DECODED_BYTES:
        raise DataError(
            f"{files} images of preprocess.image_height x image_width = "
            f"{params.image_height}x{params.image_width} need {needed / 2**30:.1f} GiB, "
            f"limit {MAX_DECODED_BYTES / 2**30:.0f} GiB; use smaller images"
        )


def validate(images_dir: Path, params: PreprocessParams) -> tuple[list[Sample], list[dict]]:
    """Every file under ``images_dir``: accepted samples and rejections with reasons."""
    accepted: list[Sample] = []
    rejected: list[dict] = []
    seen: dict[str, str] = {}
    allowed = set(params.allowed_chars)
    for path in data_files(images_dir):
        rel = path.relative_to(images_dir).as_posix()
        label = path.stem
        reason = None
        if not params.min_label_length <= len(label) <= params.max_label_length:
            reason = (
                f"label length {len(label)} outside "
                f"{params.min_label_length}-{params.max_label_length}"
            )
        elif bad := sorted(set(label) - allowed):
            reason = f"label has characters outside preprocess.allowed_chars: {bad}"
        elif label in seen:
            reason = f"duplicate label, already taken from {seen[label]}"
        else:
            try:
                image = decode_image(
                    path.read_bytes(),
                    params.image_height,
                    params.image_width,
                    resize=params.wrong_size == "resize",
                )
            except ImageError as err:
                reason = str(err)
        if reason:
            rejected.append({"file": rel, "reason": reason})
        else:
            seen[label] = rel
            accepted.append(Sample(rel, label, image))
    return accepted, rejected


def split(samples: list[Sample], params: PreprocessParams) -> dict[str, list[Sample]]:
    """Seeded, disjoint train/val/test split of samples (given in sorted order)."""
    order = np.random.default_rng(params.seed).permutation(len(samples))
    shuffled = [samples[i] for i in order]
    if params.limit is not None:
        shuffled = shuffled[: params.limit]
    n = len(shuffled)
    n_test = max(1, round(n * params.test_fraction))
    n_val = max(1, round(n * params.val_fraction))
    if n - n_test - n_val < 1:
        raise DataError(f"{n} samples are too few to split into train, val and test")
    return {
        "test": shuffled[:n_test],
        "val": shuffled[n_test : n_test + n_val],
        "train": shuffled[n_test + n_val :],
    }


def to_arrays(
    samples: list[Sample], vocabulary: Vocabulary, max_label_length: int
) -> dict[str, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N, max_len) int32, padded with the blank."""
    labels = np.zeros((len(samples), max_label_length), dtype=np.int32)
    for row, sample in enumerate(samples):
        codes = vocabulary.encode(sample.label)
        labels[row, : len(codes)] = codes
    return {"images": np.stack([s.image for s in samples]), "labels": labels}


def preprocess(
    params: PreprocessParams,
    images_dir: Path = paths.RAW_IMAGES,
    splits_dir: Path = paths.SPLITS,
    arrays_dir: Path = paths.PREPARED,
    vocabulary_path: Path = paths.VOCABULARY,
    report_path: Path = paths.DATA_REPORT,
) -> dict:
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: no images folder; run the ingest step first")
    check_memory(len(data_files(images_dir)), params)
    accepted, rejected = validate(images_dir, params)
    total = len(accepted) + len(rejected)
    share = len(rejected) / total if total else 1.0
    if not accepted or share > params.max_rejected_fraction:
        raise DataError(
            f"{len(rejected)} of {total} files rejected ({share:.1%}), more than "
            f"preprocess.max_rejected_fraction={params.max_rejected_fraction}; "
            f"{_reasons(rejected)}"
        )
    vocabulary = Vocabulary.from_labels(s.label for s in accepted)
    parts = split(accepted, params)
    report: dict = {
        "images_dir": str(images_dir),
        "files": total,
        "accepted": len(accepted),
        "rejected_count": len(rejected),
        "rejected": rejected,
        "vocabulary": vocabulary.characters,
        "label_lengths": dict(Counter(len(s.label) for s in accepted)),
        "character_counts": dict(sorted(Counter("".join(s.label for s in accepted)).items())),
        "splits": {name: len(parts[name]) for name in SPLITS},
    }
    # Splits, arrays, vocabulary and report move in together or not at all: a
    # failure half-way must not leave new splits beside old arrays.
    with all_or_nothing():
        try:
            for name in SPLITS:
                frame = pd.DataFrame(
                    {"file": [s.file for s in parts[name]], "label": [s.label for s in parts[name]]}
                )
                write_with(splits_dir / f"{name}.csv", lambda p, f=frame: f.to_csv(p, index=False))
                arrays = to_arrays(parts[name], vocabulary, params.max_label_length)
                write_with(
                    arrays_dir / f"{name}.npz", lambda p, a=arrays: np.savez_compressed(p, **a)
                )
            vocabulary.save(vocabulary_path)
            write_json(report_path, report)
        except OSError as err:
            raise DataError(
                f"{err.filename}: cannot write the preprocess outputs ({err.strerror}); "
                "the previous ones are kept"
            ) from None
    print(
        f"preprocess: {len(accepted)} accepted, {len(rejected)} rejected; "
        f"split {report['splits']}; vocabulary {vocabulary.characters!r}"
    )
    return report


def _reasons(rejected: list[dict]) -> str:
    """The first few rejections, and a file (not a step output) with all of them."""
    first = "; ".join(f"{r['file']}: {r['reason']}" for r in rejected[:SHOWN_REASONS])
    fd, path = tempfile.mkstemp(prefix="captcha-ocr-rejected-", suffix=".json")
    with os.fdopen(fd, "w") as out:
        json.dump(rejected, out, indent=2)
    return f"first: {first}; all {len(rejected)} reasons in {path}"


def load_split(name: str, arrays_dir: Path = paths.PREPARED) -> dict[str, np.ndarray]:
    with np.load(arrays_dir / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr preprocess", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    preprocess(load_params(args.params).preprocess)
