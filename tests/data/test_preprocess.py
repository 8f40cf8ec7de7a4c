"""Preprocess: validation with reasons, a stable disjoint split, arrays."""

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from captcha_ocr.config import PreprocessParams
from captcha_ocr.core.splits import assign, content_digest
from captcha_ocr.steps.preprocess import DataError, _validate, validate
from tests.own_data import run_preprocess

# captcha_images_v2's rules spelled out, in place of the auto defaults.
V2 = {
    "image_height": 50,
    "image_width": 200,
    "wrong_size": "reject",
    "allowed_chars": "0123456789abcdefghijklmnopqrstuvwxyz",
    "min_label_length": 5,
    "max_label_length": 5,
}


@pytest.fixture
def images_dir(tmp_path, captcha_pngs):
    folder = tmp_path / "images" / "captcha_images_v2"
    folder.mkdir(parents=True)
    for label, data in captcha_pngs.items():
        (folder / f"{label}.png").write_bytes(data)
    return tmp_path / "images"


def test_bad_files_are_rejected_with_reasons(tmp_path, images_dir, captcha_pngs):
    folder = images_dir / "captcha_images_v2"
    good = next(iter(captcha_pngs.values()))
    (folder / "abcdz.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "ab_de.png").write_bytes(good)
    (folder / "abc.png").write_bytes(good)
    (folder / "notes.txt").write_text("hello")
    buffer = io.BytesIO()
    Image.new("L", (120, 40)).save(buffer, format="PNG")
    (folder / "small.png").write_bytes(buffer.getvalue())
    (images_dir / "copy").mkdir()
    (images_dir / "copy" / f"{next(iter(captcha_pngs))}.png").write_bytes(good)

    accepted, rejected = validate(images_dir, PreprocessParams(**V2))
    reasons = {r["file"]: r["reason"] for r in rejected}
    assert len(accepted) == len(captcha_pngs)
    assert "not a readable image" in reasons["captcha_images_v2/abcdz.png"]
    assert "characters outside" in reasons["captcha_images_v2/ab_de.png"]
    assert "label length 3" in reasons["captcha_images_v2/abc.png"]
    assert "size 120x40" in reasons["captcha_images_v2/small.png"]
    assert "not a readable image" in reasons["captcha_images_v2/notes.txt"]
    assert len(rejected) == 5  # the copy under copy/ is the same sample, not a rejection


def test_too_many_rejections_fail_and_say_why_without_writing_any_output(tmp_path, images_dir):
    for i in range(5):
        (images_dir / f"bad{i:02d}.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="5 of 17 files rejected") as refused:
        run_preprocess(tmp_path, images_dir, max_rejected_fraction=0.1)
    message = str(refused.value)
    assert "first: bad00.png: not a readable image" in message
    assert "bad02.png" in message and "bad03.png" not in message  # three named
    listed = Path(message.rpartition(" reasons in ")[2])
    assert [r["file"] for r in json.loads(listed.read_text())] == [
        f"bad{i:02d}.png" for i in range(5)
    ]
    listed.unlink()
    assert not (tmp_path / "out").exists()  # no report, no splits: nothing half-done


def test_more_images_than_memory_holds_are_refused_before_decoding(
    tmp_path, images_dir, monkeypatch
):
    import captcha_ocr.steps.preprocess as preprocess_module

    monkeypatch.setattr(preprocess_module, "MAX_DECODED_BYTES", 12 * 200 * 50 - 1)
    with pytest.raises(DataError, match=r"12 images of preprocess.image_height x image_width"):
        run_preprocess(tmp_path, images_dir)
    assert not (tmp_path / "out").exists()


def test_split_is_deterministic_disjoint_and_complete(tmp_path, images_dir, captcha_pngs):
    report, out = run_preprocess(tmp_path, images_dir, val_fraction=0.25, test_fraction=0.25)
    frames = {
        n: pd.read_csv(out / "splits" / f"{n}.csv", dtype=str) for n in ("train", "val", "test")
    }
    files = [set(f["file"]) for f in frames.values()]
    assert files[0].isdisjoint(files[1]) and files[0].isdisjoint(files[2])
    assert files[1].isdisjoint(files[2])
    assert set.union(*files) == {f"captcha_images_v2/{label}.png" for label in captcha_pngs}
    assert report["splits"] == {n: len(f) for n, f in frames.items()}
    assert all(report["splits"].values())

    again, out2 = run_preprocess(
        tmp_path / "again", images_dir, val_fraction=0.25, test_fraction=0.25
    )
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(
            frame, pd.read_csv(out2 / "splits" / f"{name}.csv", dtype=str)
        )


def test_same_picture_is_one_sample_and_same_text_two(images_dir, captcha_pngs):
    items = list(captcha_pngs.items())
    (first, png), (second, other_png), (third, third_png), (fourth, fourth_png) = items[:4]
    for folder in ("copy", "saved_again", "other", "wrong", "wrong_again"):
        (images_dir / folder).mkdir()
    (images_dir / "copy" / f"{first}.png").write_bytes(png)
    (images_dir / "saved_again" / f"{fourth}.png").write_bytes(_saved_again(fourth_png))
    (images_dir / "other" / f"{second}.png").write_bytes(_one_pixel_changed(other_png))
    (images_dir / "wrong" / "abcde.png").write_bytes(third_png)
    (images_dir / "wrong_again" / "fghij.png").write_bytes(_saved_again(third_png))

    accepted, rejected, duplicates = _validate(images_dir, PreprocessParams())
    labels = [s.label for s in accepted]
    # A copy, byte for byte or saved again, is one sample, listed as a copy.
    assert labels.count(first) == labels.count(fourth) == 1
    assert {"file": f"copy/{first}.png", "same_bytes_as": f"captcha_images_v2/{first}.png"} in (
        duplicates
    )
    saved_again = [d for d in duplicates if "same_picture_as" in d]
    assert {d["file"] for d in saved_again} | {d["same_picture_as"] for d in saved_again} == {
        f"saved_again/{fourth}.png",
        f"captcha_images_v2/{fourth}.png",
    }
    assert len(duplicates) == 2
    # Another picture with the same text is a sample of its own.
    assert labels.count(second) == 2
    # One picture under other texts: which is right cannot be told, so none is used.
    reasons = {r["file"]: r["reason"] for r in rejected}
    assert not {third, "abcde", "fghij"} & set(labels)
    assert (
        "labelled" in reasons["wrong/abcde.png"] and "labelled" in reasons["wrong_again/fghij.png"]
    )
    assert "wrong/abcde.png" in reasons[f"captcha_images_v2/{third}.png"]
    assert len(accepted) == len(captcha_pngs) - 1 + 1


def test_which_copy_of_a_picture_is_kept_does_not_hang_on_file_names(tmp_path, captcha_pngs):
    # The copy kept gives the sample its split: the same one whichever name sorts first.
    label, png = next(iter(captcha_pngs.items()))
    kept = []
    for names in (("a", "b"), ("b", "a")):
        folder = tmp_path / "".join(names)
        folder.mkdir()
        (folder / names[0] / label).mkdir(parents=True)
        (folder / names[1] / label).mkdir(parents=True)
        (folder / names[0] / label / f"{label}.png").write_bytes(png)
        (folder / names[1] / label / f"{label}.png").write_bytes(_saved_again(png))
        accepted, _, _ = _validate(folder, PreprocessParams(**V2))
        kept.append(accepted[0].sha256)
    assert kept[0] == kept[1]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_a_picture_under_two_labels_is_refused_with_all_its_copies_in_any_order(
    tmp_path, captcha_pngs, order
):
    (label, png), (other_label, _) = list(captcha_pngs.items())[:2]
    copies = [(label, png), (label, _saved_again(png)), (other_label, png)]
    for place, (text, data) in zip(order, copies, strict=True):
        (tmp_path / f"{place}").mkdir()
        (tmp_path / f"{place}" / f"{text}.png").write_bytes(data)
    accepted, rejected, duplicates = _validate(tmp_path, PreprocessParams())
    assert accepted == [] and duplicates == []
    assert len(rejected) == 3 and all("label" in r["reason"] for r in rejected)


def test_a_copy_added_in_a_new_version_moves_no_picture(tmp_path, images_dir, captcha_pngs):
    # A copy that would win on sha256 alone, and would take the picture to another split.
    fractions = {"val_fraction": 0.25, "test_fraction": 0.25}
    label, png, copy = next(
        (label, png, again)
        for label, png in captcha_pngs.items()
        for level in range(10)
        if (again := _saved_again(png, level)) != png
        and content_digest(again) < content_digest(png)
        and assign(content_digest(again), **fractions) != assign(content_digest(png), **fractions)
    )
    before, out = run_preprocess(tmp_path, images_dir, "v1", **fractions)
    (images_dir / "copy").mkdir()
    (images_dir / "copy" / f"{label}.png").write_bytes(copy)
    after, _ = run_preprocess(tmp_path, images_dir, "v2", **fractions)
    assert after["split_digests"] == before["split_digests"]
    assert {"file": f"copy/{label}.png", "same_picture_as": f"captcha_images_v2/{label}.png"} in (
        after["duplicates"]
    )


def _saved_again(png: bytes, level: int = 1) -> bytes:
    """The same picture in other bytes, as an image editor's lossless "save" makes it."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def _one_pixel_changed(png: bytes) -> bytes:
    """Another picture of the same text."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    red, green, blue = image.getpixel((0, 0))
    image.putpixel((0, 0), (255 - red, 255 - green, 255 - blue))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_arrays_match_the_csv(tmp_path, images_dir):
    _, out = run_preprocess(tmp_path, images_dir, val_fraction=0.25, test_fraction=0.25)
    vocabulary = json.loads((out / "vocabulary.json").read_text())["characters"]
    frame = pd.read_csv(out / "splits" / "train.csv", dtype=str)
    with np.load(out / "prepared" / "train.npz") as arrays:
        images, labels = arrays["images"], arrays["labels"]
    assert images.shape == (len(frame), 50, 200) and images.dtype == np.uint8
    decoded = ["".join(vocabulary[i - 1] for i in row if i > 0) for row in labels]
    assert decoded == frame["label"].tolist()


def test_limit_takes_a_fixed_subset(tmp_path, images_dir):
    report, _ = run_preprocess(tmp_path, images_dir, limit=6, val_fraction=0.2, test_fraction=0.2)
    assert sum(report["splits"].values()) == 6


def test_wrong_size_is_resized_or_reported_as_params_say(tmp_path, images_dir, captcha_pngs):
    buffer = io.BytesIO()
    Image.new("L", (120, 40), 128).save(buffer, format="PNG")
    (images_dir / "small.png").write_bytes(buffer.getvalue())
    fractions = {"val_fraction": 0.25, "test_fraction": 0.25, "max_rejected_fraction": 0.1}

    report, _ = run_preprocess(tmp_path / "reject", images_dir, wrong_size="reject", **fractions)
    assert report["accepted"] == len(captcha_pngs)
    assert report["rejected"] == [{"file": "small.png", "reason": "size 120x40, expected 200x50"}]
    saved = json.loads((tmp_path / "reject" / "out" / "data_report.json").read_text())
    assert saved["rejected"] == report["rejected"]

    report, out = run_preprocess(tmp_path / "resize", images_dir, wrong_size="resize", **fractions)
    assert report["accepted"] == len(captcha_pngs) + 1 and report["rejected"] == []
    with np.load(out / "prepared" / "train.npz") as arrays:
        assert arrays["images"].shape[1:] == (50, 200)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_label_length": 10**9}, r"preprocess\.max_label_length: .*less than or equal to 64"),
        ({"max_label_length": 1e9}, r"preprocess\.max_label_length"),
        ({"min_label_length": 65}, r"preprocess\.min_label_length"),
        ({"image_height": 100_000}, r"preprocess\.image_height: .*less than or equal to 4096"),
        ({"image_width": 4097}, r"preprocess\.image_width"),
        ({"image_height": 1000, "image_width": 1001}, r"image_height x image_width is 1001000"),
    ],
)
def test_params_that_cannot_fit_in_memory_are_refused_by_key(tmp_path, values, message):
    from captcha_ocr.config import ParamsError, load_params

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"preprocess": values}))
    with pytest.raises(ParamsError, match=message):
        load_params(path)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims a canvas of width x height and holds no pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [5_000, 100_000])
def test_a_decompression_bomb_is_rejected_by_file_before_decoding(images_dir, side):
    (images_dir / "bombs.png").write_bytes(_png_header(side, side))
    _, rejected = validate(images_dir, PreprocessParams(wrong_size="resize"))
    (bomb,) = rejected
    assert bomb["file"] == "bombs.png"
    assert f"{side}x{side}" in bomb["reason"] or f"{side * side} pixels" in bomb["reason"]
