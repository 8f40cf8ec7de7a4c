"""Step 2, preprocess: check every image, split the good ones, write arrays.

Each file is accepted only if its label (its name, or its row in the set's
``labels.csv``: ``steps/labels.py``) is valid (allowed characters, allowed
length) and its bytes decode to an image of the expected size (or one we may
resize, as params say). Params set to ``auto`` are read from the training
images first (``steps/data_spec.py``); what they became is recorded in
``data/vocabulary.json``, which every reader reads by, and in the report. Two
files with the same picture (the same bytes, or saved again: the same pixels
once decoded) are one sample, the copy listed in the report, unless their
labels differ, which rejects them all; two different images with the same
text are two samples. Rejected files go to the data report with the
reason; the step fails when too many are rejected, naming the first reasons.
Its four outputs are replaced together or not at all.

Each image's split follows from its bytes alone (``core.splits``), so adding
or removing images moves no other one. Each split CSV row records the image's
sha256 and ``first_seen``: the data version (the sha256 of the ingested zip)
that first held it, carried over from the previous splits.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from captcha_ocr import paths
from captcha_ocr.config import PreprocessParams, load_params
from captcha_ocr.core.images import ImageError
from captcha_ocr.core.splits import SPLITS, assign, content_digest, position, split_digest
from captcha_ocr.core.vocabulary import ReadingSpec, Vocabulary
from captcha_ocr.files import all_or_nothing, atomic_path, read_text_table, write_json
from captcha_ocr.steps.data_spec import DataError, DataFile, Resolved, reasons, resolve
from captcha_ocr.steps.labels import LabelsError, labelled_files

# The columns of data/splits/*.csv.
COLUMNS = ("file", "label", "sha256", "first_seen")
# Decoded pixels (bytes) preprocess may hold: every image at the params' size.
MAX_DECODED_BYTES = 4 * 2**30


@dataclass(frozen=True)
class Sample:
    file: str  # relative to the images folder
    label: str
    image: np.ndarray
    sha256: str  # of the file's bytes: the sample's identity


def check_memory(files: int, spec: ReadingSpec) -> None:
    """Refuse before decoding when every image at the chosen size would not fit in memory."""
    needed = files * spec.image_height * spec.image_width * spec.channels
    if needed > MAX_DECODED_BYTES:
        raise DataError(
            f"{files} images of preprocess.image_height x image_width = "
            f"{spec.image_height}x{spec.image_width} ({spec.channels} channel(s)) need "
            f"{needed / 2**30:.1f} GiB, limit {MAX_DECODED_BYTES / 2**30:.0f} GiB; "
            "use smaller images"
        )


def validate(images_dir: Path, params: PreprocessParams) -> tuple[list[Sample], list[dict]]:
    """Every file under ``images_dir``: accepted samples and rejections with reasons.

    A file with the same bytes and label as an accepted one is neither: it is
    listed by ``duplicates``.
    """
    samples, rejected, _ = _validate(images_dir, params)
    return samples, rejected


def _validate(
    images_dir: Path, params: PreprocessParams
) -> tuple[list[Sample], list[dict], list[dict]]:
    files = read_files(images_dir)
    return check_files(files, resolve(params, files))


def read_files(images_dir: Path) -> list[DataFile]:
    """Every labelled file with its digest (labels from file names or ``labels.csv``)."""
    try:
        labelled, _ = labelled_files(images_dir)
    except LabelsError as err:
        raise DataError(str(err)) from None
    return [
        DataFile(f.file, f.path, f.label, content_digest(f.path.read_bytes())) for f in labelled
    ]


def check_files(
    files: list[DataFile], resolved: Resolved, known: Collection[str] = ()
) -> tuple[list[Sample], list[dict], list[dict]]:
    """Accepted samples, rejections with reasons, and copies of accepted samples.

    Of the copies of one picture, the sample is one the previous splits hold
    (``known`` sha256s), so a copy added later moves nothing; else the lowest
    sha256, whatever the file order.
    """
    accepted: dict[str, Sample] = {}  # by sha256
    # The digest of what the model would see -> the sha256 of the sample kept:
    # a copy, byte for byte or saved again (other bytes, same pixels), must not
    # land in another split.
    by_pixels: dict[str, str] = {}
    rejected: list[dict] = []
    duplicates: list[dict] = []
    mislabelled: dict[str, list[str]] = {}  # sha256 -> the other files with that picture

    def rank(sample: Sample) -> tuple[bool, str]:
        return sample.sha256 not in known, sample.sha256

    for entry in files:
        rel, digest, label = entry.file, entry.sha256, entry.label
        reason = resolved.label_problem(label)
        if reason is None:
            try:
                image = resolved.decode(entry.path.read_bytes())
            except ImageError as err:
                reason = str(err)
        if reason is None:
            pixels = content_digest(image.tobytes())
            if (kept := by_pixels.get(pixels)) is None:
                by_pixels[pixels] = digest
                accepted[digest] = Sample(rel, label, image, digest)
                continue
            first = accepted[kept]
            if first.label != label:
                mislabelled.setdefault(kept, []).append(rel)
                reason = f"same picture as {first.file}, which is labelled {first.label!r}"
            else:
                sample = Sample(rel, label, image, digest)
                if rank(sample) < rank(first) and kept not in mislabelled:
                    del accepted[kept]
                    accepted[digest], by_pixels[pixels] = sample, digest
                    sample, first = first, sample
                same = "same_bytes_as" if sample.sha256 == first.sha256 else "same_picture_as"
                duplicates.append({"file": sample.file, same: first.file})
                continue
        rejected.append({"file": rel, "reason": reason})
    refused: dict[str, str] = {}  # file -> reason
    for digest, others in mislabelled.items():
        # Which label is right cannot be told: no copy is used.
        first = accepted.pop(digest)
        refused[first.file] = reason = f"same picture as {', '.join(others)} under another label"
        rejected.append({"file": first.file, "reason": reason})
    # A copy of a refused picture (or of a copy of one) is refused with it.
    while moved := [d for d in duplicates if copied_from(d) in refused]:
        for copy in moved:
            duplicates.remove(copy)
            refused[copy["file"]] = refused[copied_from(copy)]
            rejected.append({"file": copy["file"], "reason": refused[copy["file"]]})
    return list(accepted.values()), rejected, duplicates


def copied_from(copy: dict) -> str:
    return copy.get("same_bytes_as") or copy["same_picture_as"]


def split(samples: list[Sample], params: PreprocessParams) -> dict[str, list[Sample]]:
    """Disjoint train/val/test split; each sample's place follows from its bytes alone.

    With ``limit``, the samples kept are the first in an order of their own (an
    independent hash), so the subset is spread over all three splits.
    """
    if params.limit is not None:
        samples = sorted(samples, key=lambda s: position(s.sha256, "limit"))[: params.limit]
        samples.sort(key=lambda s: s.file)
    parts: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    for sample in samples:
        parts[assign(sample.sha256, params.val_fraction, params.test_fraction)].append(sample)
    if empty := [name for name in SPLITS if not parts[name]]:
        raise DataError(
            f"{len(samples)} samples leave the {empty[0]} split empty "
            f"(preprocess.val_fraction={params.val_fraction}, "
            f"test_fraction={params.test_fraction}); add images or raise the fraction"
        )
    return parts


def first_seen_before(splits_dir: Path) -> dict[str, str]:
    """sha256 -> first_seen from the splits written last time (none before this format)."""
    seen: dict[str, str] = {}
    for name in SPLITS:
        path = splits_dir / f"{name}.csv"
        if not path.is_file():
            continue
        try:
            frame = read_text_table(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DataError(
                f"{path}: cannot be read to carry over first_seen ({err}); "
                "move it away to start the record afresh"
            ) from None
        if {"sha256", "first_seen"} <= set(frame.columns):
            seen |= dict(zip(frame["sha256"], frame["first_seen"], strict=True))
    return seen


def data_version(info_path: Path) -> str:
    """The data version: the sha256 of the zip ingest recorded."""
    try:
        return json.loads(info_path.read_text())["sha256"]
    except FileNotFoundError:
        raise DataError(f"{info_path}: not found; run the ingest step first") from None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(f"{info_path}: no sha256 in it ({err}); rerun the ingest step") from None


def split_frame(samples: list[Sample], first_seen: dict[str, str], version: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "file": [s.file for s in samples],
            "label": [s.label for s in samples],
            "sha256": [s.sha256 for s in samples],
            "first_seen": [first_seen.get(s.sha256, version) for s in samples],
        },
        columns=list(COLUMNS),
    )


def split_identity(name: str = "test", splits_dir: Path = paths.SPLITS) -> str:
    """The identity of a split: its images and labels (``core.splits.split_digest``)."""
    frame = read_text_table(splits_dir / f"{name}.csv")
    if "sha256" not in frame.columns:
        raise DataError(f"{splits_dir / f'{name}.csv'}: no sha256 column; rerun preprocess")
    return split_digest(zip(frame["sha256"], frame["label"], strict=True))


def to_arrays(
    samples: list[Sample], vocabulary: Vocabulary, max_label_length: int
) -> dict[str, np.ndarray]:
    """Images (N, H, W) or (N, H, W, 3) uint8, labels (N, max_len) int32 padded with the blank."""
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
    info_path: Path = paths.INGEST_INFO,
) -> dict:
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: no images folder; run the ingest step first")
    version = data_version(info_path)
    first_seen = first_seen_before(splits_dir)
    files = read_files(images_dir)
    resolved = resolve(params, files)
    check_memory(len(files), resolved.spec)
    accepted, rejected, duplicates = check_files(files, resolved, first_seen.keys())
    total = len(accepted) + len(rejected) + len(duplicates)
    share = len(rejected) / total if total else 1.0
    if not accepted or share > params.max_rejected_fraction:
        raise DataError(
            f"{len(rejected)} of {total} files rejected ({share:.1%}), more than "
            f"preprocess.max_rejected_fraction={params.max_rejected_fraction}; "
            f"{reasons(rejected)}"
        )
    vocabulary = Vocabulary.from_labels(s.label for s in accepted)
    parts = split(accepted, params)
    frames = {name: split_frame(parts[name], first_seen, version) for name in SPLITS}
    report = _report(images_dir, version, total, accepted, rejected, duplicates, frames)
    report["vocabulary"] = vocabulary.characters
    # What the auto params became: the reader is built for, and reads by, these.
    report["resolved"] = resolved.report()
    spec = resolved.spec
    report["outside_training"] = outside = [
        {"file": s.file, "split": name, "label": s.label, "why": why}
        for name in ("val", "test")
        for s in parts[name]
        if (why := resolved.outside_training(s.label))
    ]
    # Room for every label kept, also one longer than any training label.
    width = max([spec.max_label_length, *(len(s.label) for s in accepted)])
    # Splits, arrays, vocabulary and report move in together or not at all: a
    # failure half-way must not leave new splits beside old arrays.
    with all_or_nothing():
        try:
            for name in SPLITS:
                with atomic_path(splits_dir / f"{name}.csv") as tmp:
                    frames[name].to_csv(tmp, index=False)
                arrays = to_arrays(parts[name], vocabulary, width)
                with atomic_path(arrays_dir / f"{name}.npz") as tmp:
                    np.savez_compressed(tmp, images=arrays["images"], labels=arrays["labels"])
            vocabulary.save(vocabulary_path, spec)
            write_json(report_path, report)
        except OSError as err:
            raise DataError(
                f"{err.filename}: cannot write the preprocess outputs ({err.strerror}); "
                "the previous ones are kept"
            ) from None
    print(
        f"preprocess: {len(accepted)} accepted, {len(rejected)} rejected, "
        f"{len(duplicates)} copies of others; split {report['splits']} "
        f"({report['new_images']} new in data version {version[:12]}); "
        f"vocabulary {vocabulary.characters!r}"
    )
    auto = f" (auto: {', '.join(resolved.auto)})" if resolved.auto else ""
    if outside:
        print(
            f"warning: {len(outside)} validation/test labels have what no training label has "
            f"(first: {outside[0]['file']}: {outside[0]['why']}); the model cannot read them "
            f"right, and they count in its scores (all in {report_path}, outside_training)"
        )
    print(
        f"preprocess: images {spec.image_width}x{spec.image_height}, {spec.channels} channel(s), "
        f"labels of {spec.min_label_length}-{spec.max_label_length} characters{auto}"
    )
    return report


def _report(
    images_dir: Path,
    version: str,
    total: int,
    accepted: list[Sample],
    rejected: list[dict],
    duplicates: list[dict],
    frames: dict[str, pd.DataFrame],
) -> dict:
    return {
        "images_dir": str(images_dir),
        "data_version": version,
        "files": total,
        "accepted": len(accepted),
        "rejected_count": len(rejected),
        "rejected": rejected,
        "duplicates": duplicates,
        "label_lengths": dict(Counter(len(s.label) for s in accepted)),
        "character_counts": dict(sorted(Counter("".join(s.label for s in accepted)).items())),
        "splits": {name: len(frames[name]) for name in SPLITS},
        "split_digests": {
            name: split_digest(zip(f["sha256"], f["label"], strict=True))
            for name, f in frames.items()
        },
        "new_images": sum(int((f["first_seen"] == version).sum()) for f in frames.values()),
    }


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
