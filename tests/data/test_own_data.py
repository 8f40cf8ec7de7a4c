"""A user's own captchas: a folder source, labels from a CSV, auto params, any image mode."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from captcha_ocr.config import IngestParams
from captcha_ocr.core.images import decode_image
from captcha_ocr.core.splits import assign, content_digest
from captcha_ocr.core.vocabulary import ReadingSpec, Vocabulary
from captcha_ocr.steps.ingest import IngestError, ingest
from tests.own_data import SYMBOLS, captcha_folder, captcha_png, case_set, run_preprocess

FRACTIONS = {"val_fraction": 0.2, "test_fraction": 0.2}


def encoded(image: Image.Image, kind: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


# --- decoding ----------------------------------------------------------------


def modes() -> dict[str, bytes]:
    """One 40x20 picture, dark text on light, in every format and mode the issue names."""
    rgb = Image.new("RGB", (40, 20), (200, 220, 240))
    rgb.paste((20, 40, 160), (10, 5, 30, 15))
    grey16 = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    return {
        "png_rgb": encoded(rgb, "PNG"),
        "png_rgba": encoded(rgb.convert("RGBA"), "PNG"),
        "png_palette": encoded(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "png_grey16": encoded(grey16, "PNG"),
        "png_grey": encoded(rgb.convert("L"), "PNG"),
        "jpeg": encoded(rgb, "JPEG", quality=95),
        "bmp": encoded(rgb, "BMP"),
        "gif": encoded(rgb, "GIF"),
    }


@pytest.mark.parametrize("mode", sorted(modes()))
def test_every_format_and_mode_decodes_to_the_same_picture(mode):
    data = modes()[mode]
    if mode == "png_grey16":
        assert Image.open(io.BytesIO(data)).mode.startswith("I")
    grey = decode_image(data, 20, 40)
    colour = decode_image(data, 20, 40, channels=3)
    assert grey.shape == (20, 40) and colour.shape == (20, 40, 3)
    assert grey.dtype == colour.dtype == np.uint8
    # Text dark, background light, in every mode (16-bit grey is scaled, not clipped to white).
    assert grey[10, 20] < 90 and grey[2, 2] > 180
    if mode not in ("png_grey", "png_grey16"):
        assert colour[10, 20, 2] > colour[10, 20, 0] + 80  # the blue text stays blue


def test_another_size_is_fitted_keeping_the_aspect_ratio_and_padded_with_the_border():
    # A 100x50 picture: a 20x20 black square on grey. Into 200x50 it keeps its
    # scale (50 rows), centred, with 50 columns of the grey border either side.
    picture = Image.new("L", (100, 50), 180)
    picture.paste(0, (40, 15, 60, 35))
    image = decode_image(encoded(picture, "PNG"), 50, 200)
    assert image.shape == (50, 200)
    assert (image[:, :50] == 180).all() and (image[:, 150:] == 180).all()
    dark = np.argwhere(image < 90)
    rows, cols = dark[:, 0], dark[:, 1]
    # Still a square: a stretch to 200 columns would make it 40 wide.
    assert rows.max() - rows.min() + 1 == 20 == cols.max() - cols.min() + 1
    assert cols.min() == 90  # 50 of padding + 40 of the picture

    # A tall one is scaled down to 50 rows and padded left and right.
    tall = Image.new("RGB", (50, 100), (10, 200, 30))
    fitted = decode_image(encoded(tall, "PNG"), 50, 200, channels=3)
    assert fitted.shape == (50, 200, 3)
    assert (fitted == (10, 200, 30)).all()  # the border colour is the picture's own


def test_wrong_size_reject_still_refuses_another_size():
    with pytest.raises(ValueError, match="size 100x50, expected 200x50"):
        decode_image(encoded(Image.new("L", (100, 50)), "PNG"), 50, 200, resize=False)


# --- auto params and labels -------------------------------------------------


@pytest.fixture(scope="module")
def colour_set(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("own") / "images"
    return folder, captcha_folder(folder / "set", 40)


def test_auto_params_are_read_from_the_training_images(tmp_path, colour_set):
    images_dir, labels = colour_set
    report, out = run_preprocess(tmp_path, images_dir, **FRACTIONS)
    resolved = report["resolved"]
    assert (resolved["image_height"], resolved["image_width"], resolved["channels"]) == (60, 160, 3)
    assert set(resolved["auto"]) == {
        "image_height",
        "image_width",
        "channels",
        "allowed_chars",
        "min_label_length",
        "max_label_length",
    }
    train = pd.read_csv(out / "splits" / "train.csv", dtype=str)
    training_labels = train["label"].tolist()
    assert resolved["allowed_chars"] == "".join(sorted(set("".join(training_labels))))
    assert resolved["min_label_length"] == min(map(len, training_labels))
    assert resolved["max_label_length"] == max(map(len, training_labels))
    # The reader's spec is saved beside the characters, and the arrays are in colour.
    spec = ReadingSpec.load(out / "vocabulary.json")
    assert spec == ReadingSpec(
        60, 160, 3, resolved["min_label_length"], resolved["max_label_length"]
    )
    assert set(Vocabulary.load(out / "vocabulary.json").characters) <= set(SYMBOLS)
    with np.load(out / "prepared" / "train.npz") as arrays:
        assert arrays["images"].shape == (len(train), 60, 160, 3)
    assert report["rejected"] == []


def test_val_and_test_images_do_not_shape_the_auto_params(tmp_path, colour_set):
    # Images of another size and a new character, all outside the training split,
    # change nothing that was chosen: they are fitted to it, and listed.
    images_dir, _ = colour_set
    extra = tmp_path / "images"
    extra.mkdir()
    for name in (images_dir / "set").iterdir():
        (extra / name.name).write_bytes(name.read_bytes())
    before, _ = run_preprocess(tmp_path / "before", extra, **FRACTIONS)
    added = 0
    for seed in range(200):
        data = captcha_png("a1b2", width=300, height=90, seed=seed)
        if assign(content_digest(data), **FRACTIONS) != "train":
            (extra / f"a1b{seed}.png").write_bytes(data)
            added += 1
        if added == 3:
            break
    after, out = run_preprocess(tmp_path / "after", extra, max_rejected_fraction=0.0, **FRACTIONS)
    assert after["resolved"] == before["resolved"]
    assert len(after["outside_training"]) == 3
    assert all(
        "'a', 'b'] are in no training label" in row["why"] for row in after["outside_training"]
    )
    assert "a" in Vocabulary.load(out / "vocabulary.json").characters  # they can be scored


def test_a_grey_set_is_read_in_grey(tmp_path, captcha_pngs):
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    for label, data in captcha_pngs.items():
        (images_dir / f"{label}.png").write_bytes(data)
    report, out = run_preprocess(tmp_path, images_dir, val_fraction=0.25, test_fraction=0.25)
    assert report["resolved"]["channels"] == 1
    assert (report["resolved"]["image_height"], report["resolved"]["image_width"]) == (50, 200)
    with np.load(out / "prepared" / "train.npz") as arrays:
        assert arrays["images"].ndim == 3


# --- a folder as the source ---------------------------------------------------


def ingest_into(tmp_path: Path, source: Path) -> dict:
    raw = tmp_path / "raw"
    return ingest(
        IngestParams(source=str(source)),
        zip_path=raw / "set.zip",
        images_dir=raw / "images",
        info_path=raw / "ingest.json",
    )


def test_a_folder_source_is_zipped_the_same_every_time_and_unpacked(tmp_path, colour_set):
    images_dir, labels = colour_set
    folder = images_dir / "set"
    first = ingest_into(tmp_path / "one", folder)
    again = ingest_into(tmp_path / "two", folder)
    assert first["sha256"] == again["sha256"]  # the data version depends on the files alone
    assert first["files"] == len(labels)
    unpacked = tmp_path / "one" / "raw" / "images"
    assert {p.name: p.read_bytes() for p in unpacked.iterdir()} == {
        name: (folder / name).read_bytes() for name in labels
    }


@pytest.mark.parametrize("target", ["outside", "inside"])
def test_a_folder_with_a_link_is_refused_and_the_old_ingest_kept(tmp_path, colour_set, target):
    images_dir, _ = colour_set
    kept = ingest_into(tmp_path, images_dir / "set")
    before = {p: p.read_bytes() for p in (tmp_path / "raw").rglob("*") if p.is_file()}
    folder = tmp_path / "linked"
    folder.mkdir()
    (folder / "ABCD.png").write_bytes(captcha_png("ABCD"))
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (folder / "EFGH.png").symlink_to(secret if target == "outside" else folder / "ABCD.png")
    with pytest.raises(IngestError, match=r"refusing link 'EFGH.png'"):
        ingest_into(tmp_path, folder)
    after = {p: p.read_bytes() for p in (tmp_path / "raw").rglob("*") if p.is_file()}
    assert after == before and kept["files"] == 40


def test_a_reader_of_case_sensitive_labels_keeps_their_case(tmp_path, capsys):
    # The vocabulary preprocess wrote, in a reader predict opens: both cases survive.
    from captcha_ocr.config import TrainParams
    from captcha_ocr.core.model import build_reader, build_training_model
    from captcha_ocr.serving.predict import main as predict
    from tests.helpers import UNTRAINED

    case_set(tmp_path / "images" / "set")
    _, out = run_preprocess(tmp_path, tmp_path / "images", val_fraction=0.25, test_fraction=0.25)
    vocabulary = Vocabulary.load(out / "vocabulary.json")
    spec = ReadingSpec.load(out / "vocabulary.json")
    assert spec is not None
    network = build_training_model(
        TrainParams(**UNTRAINED),
        spec.image_height,
        spec.image_width,
        vocabulary.num_classes,
        channels=spec.channels,
    )
    reader = tmp_path / "captcha_reader.keras"
    lengths = (spec.min_label_length, spec.max_label_length)
    build_reader(network, vocabulary, lengths).save(reader)
    capsys.readouterr()  # what preprocess printed
    predict(["--json", "--model", str(reader), str(tmp_path / "images" / "set" / "0000.png")])
    (row,) = json.loads(capsys.readouterr().out)
    assert set(row["text"]) <= set("3ABDEabde")
    from captcha_ocr.core.model import CaptchaReader

    loaded = CaptchaReader.load(reader)
    assert loaded.vocabulary.characters == "3ABDEabde" and loaded.label_lengths == [5, 5]
    assert loaded.channels == 3
