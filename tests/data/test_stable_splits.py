"""Splits that hold when the data grows: every real captcha, three data versions."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from captcha_ocr.config import PreprocessParams
from captcha_ocr.core.splits import SPLITS, assign, position
from captcha_ocr.steps.preprocess import DataError, preprocess

# Binomial spread of 900 images at 10% is 9 images, i.e. 1 percentage point;
# 3 points is far outside chance and far inside a broken assignment.
TOLERANCE = 0.03


@pytest.fixture(scope="module")
def all_pngs(captcha_zip) -> dict[str, bytes]:
    with zipfile.ZipFile(captcha_zip) as archive:
        return {
            Path(n).name: archive.read(n) for n in sorted(archive.namelist()) if n.endswith(".png")
        }


class Versions:
    """One project folder whose images change between runs of preprocess."""

    def __init__(self, root: Path):
        self.root = root
        self.images = root / "images"
        self.images.mkdir(parents=True)

    def run(self, version: str, names: list[str], pngs: dict[str, bytes]) -> dict:
        for old in self.images.iterdir():
            old.unlink()
        for name in names:
            (self.images / name).write_bytes(pngs[name])
        (self.root / "ingest.json").write_text(json.dumps({"sha256": version}))
        out = self.root / "out"
        preprocess(
            PreprocessParams(),
            images_dir=self.images,
            splits_dir=out / "splits",
            arrays_dir=out / "prepared",
            vocabulary_path=out / "vocabulary.json",
            report_path=out / "data_report.json",
            info_path=self.root / "ingest.json",
        )
        return {n: pd.read_csv(out / "splits" / f"{n}.csv", dtype=str) for n in SPLITS}


def place(frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    return {file: name for name, frame in frames.items() for file in frame["file"]}


def test_adding_ten_percent_moves_no_old_image(tmp_path, all_pngs):
    names = sorted(all_pngs)
    old, new = names[: len(names) * 10 // 11], names[len(names) * 10 // 11 :]
    assert len(new) >= len(old) // 10
    project = Versions(tmp_path)
    before = project.run("v1", old, all_pngs)
    after = project.run("v2", old + new, all_pngs)

    was, now = place(before), place(after)
    # No image in two splits, every image in one.
    assert sum(len(f) for f in after.values()) == len(now) == len(names)
    # Every old image where it was: no old test captcha enters training.
    assert {f: now[f] for f in was} == was
    assert set(before["test"]["file"]) <= set(after["test"]["file"])
    for name, share in (("test", 0.1), ("val", 0.1), ("train", 0.8)):
        assert abs(len(after[name]) / len(names) - share) < TOLERANCE, name
    # Each image records the data version that first held it.
    first_seen = {
        file: seen
        for frame in after.values()
        for file, seen in zip(frame["file"], frame["first_seen"], strict=True)
    }
    assert {first_seen[f] for f in old} == {"v1"} and {first_seen[f] for f in new} == {"v2"}


def test_removing_images_moves_none_and_keeps_first_seen(tmp_path, all_pngs):
    names = sorted(all_pngs)
    project = Versions(tmp_path)
    was = place(project.run("v1", names, all_pngs))
    kept = names[::2]
    after = project.run("v2", kept, all_pngs)
    now = place(after)
    assert now == {f: was[f] for f in kept}
    assert set(pd.concat(after.values())["first_seen"]) == {"v1"}


def test_the_place_follows_the_bytes_not_the_name(tmp_path, all_pngs):
    first = sorted(all_pngs)[0]
    project = Versions(tmp_path)
    was = place(project.run("v1", [first, *sorted(all_pngs)[1:50]], all_pngs))
    renamed = {"zzzzz.png": all_pngs[first], **{n: all_pngs[n] for n in sorted(all_pngs)[1:50]}}
    now = place(project.run("v2", sorted(renamed), renamed))
    assert now["zzzzz.png"] == was[first]


def test_assignment_is_a_threshold_on_the_position():
    digests = [f"{i:016x}" + "0" * 48 for i in range(0, 2**64, 2**58)]
    for digest in digests:
        at = position(digest)
        expected = "test" if at < 0.1 else "val" if at < 0.3 else "train"
        assert assign(digest, val_fraction=0.2, test_fraction=0.1) == expected
    # Raising test_fraction moves images into test, never out of it.
    old_test = {d for d in digests if assign(d, 0.2, 0.1) == "test"}
    new_test = {d for d in digests if assign(d, 0.2, 0.2) == "test"}
    assert old_test < new_test


def test_a_set_too_small_for_a_split_is_refused_by_key(tmp_path, all_pngs):
    project = Versions(tmp_path)
    with pytest.raises(DataError, match=r"split empty \(preprocess\.val_fraction"):
        project.run("v1", sorted(all_pngs)[:2], all_pngs)
