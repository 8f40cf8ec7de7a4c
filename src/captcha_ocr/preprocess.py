"""Step 2, preprocess: check every image, split the good ones, write arrays.

Each file is accepted only if its name is a valid label (allowed characters,
allowed length, not seen before) and its bytes decode to an image of the
expected size (or one we may resize, as params say). Rejected files go to the
data report with the reason; the step fails when too many are rejected.
The split is a seeded shuffle of the sorted file list, so it is the same on
every machine and every run.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from captcha_ocr.config import PreprocessParams, load_params
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.files import write_json, write_with
from captcha_ocr.images import ImageError, decode_image
from captcha_ocr.ingest import IMAGES_DIR
from captcha_ocr.vocabulary import Vocabulary

SPLITS = ("train", "val", "test")
SPLITS_DIR = Path("data/splits")
ARRAYS_DIR = Path("data/prepared")
VOCABULARY_PATH = Path("data/vocabulary.json")
REPORT_PATH = Path("reports/data_report.json")


class DataError(CaptchaOcrError):
    pass


@dataclass(frozen=True)
class Sample:
    file: str  # relative to the images folder
    label: str
    image: np.ndarray


def validate(images_dir: Path, params: PreprocessParams) -> tuple[list[Sample], list[dict]]:
    """Every file under ``images_dir``: accepted samples and rejections with reasons."""
    accepted: list[Sample] = []
    rejected: list[dict] = []
    seen: dict[str, str] = {}
    allowed = set(params.allowed_chars)
    for path in sorted(p for p in images_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(images_dir).as_posix()
        if path.name.startswith(".") or "__MACOSX" in path.parts:
            continue  # OS metadata, not data
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
    images_dir: Path = IMAGES_DIR,
    splits_dir: Path = SPLITS_DIR,
    arrays_dir: Path = ARRAYS_DIR,
    vocabulary_path: Path = VOCABULARY_PATH,
    report_path: Path = REPORT_PATH,
) -> dict:
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: no images folder; run the ingest step first")
    accepted, rejected = validate(images_dir, params)
    total = len(accepted) + len(rejected)
    report: dict = {
        "images_dir": str(images_dir),
        "files": total,
        "accepted": len(accepted),
        "rejected_count": len(rejected),
        "rejected": rejected,
    }
    share = len(rejected) / total if total else 1.0
    if not accepted or share > params.max_rejected_fraction:
        write_json(report_path, report)
        raise DataError(
            f"{len(rejected)} of {total} files rejected ({share:.1%}), more than "
            f"preprocess.max_rejected_fraction={params.max_rejected_fraction}; "
            f"reasons in {report_path}"
        )
    vocabulary = Vocabulary.from_labels(s.label for s in accepted)
    parts = split(accepted, params)
    for name in SPLITS:
        frame = pd.DataFrame(
            {"file": [s.file for s in parts[name]], "label": [s.label for s in parts[name]]}
        )
        write_with(splits_dir / f"{name}.csv", lambda p, f=frame: f.to_csv(p, index=False))
        arrays = to_arrays(parts[name], vocabulary, params.max_label_length)
        write_with(arrays_dir / f"{name}.npz", lambda p, a=arrays: np.savez_compressed(p, **a))
    vocabulary.save(vocabulary_path)
    report |= {
        "vocabulary": vocabulary.characters,
        "label_lengths": dict(Counter(len(s.label) for s in accepted)),
        "character_counts": dict(sorted(Counter("".join(s.label for s in accepted)).items())),
        "splits": {name: len(parts[name]) for name in SPLITS},
    }
    write_json(report_path, report)
    print(
        f"preprocess: {len(accepted)} accepted, {len(rejected)} rejected; "
        f"split {report['splits']}; vocabulary {vocabulary.characters!r}"
    )
    return report


def load_split(name: str, arrays_dir: Path = ARRAYS_DIR) -> dict[str, np.ndarray]:
    with np.load(arrays_dir / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr preprocess", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    preprocess(load_params(args.params).preprocess)
