"""Labels: from file names or a ``labels.csv``, case kept, Unicode compared in NFC;
a bad row or name is refused by name and nothing is written."""

from __future__ import annotations

import re
import unicodedata

import pandas as pd
import pytest

from captcha_ocr.core.vocabulary import Vocabulary
from captcha_ocr.files import read_text_table
from captcha_ocr.steps.preprocess import DataError, split_identity
from tests.own_data import captcha_folder, captcha_png, case_set, run_preprocess, write_labels_csv


def test_case_sensitive_labels_from_a_csv_round_trip(tmp_path):
    labels = case_set(tmp_path / "images" / "set")
    report, out = run_preprocess(
        tmp_path, tmp_path / "images", val_fraction=0.25, test_fraction=0.25
    )
    splits = pd.concat(
        pd.read_csv(out / "splits" / f"{n}.csv", dtype=str) for n in ("train", "val", "test")
    )
    assert {f"set/{name}": text for name, text in labels.items()} == dict(
        zip(splits["file"], splits["label"], strict=True)
    )
    assert Vocabulary.load(out / "vocabulary.json").characters == "3ABDEabde"
    assert report["accepted"] == len(labels)


def test_labels_pandas_would_read_as_missing_stay_labels(tmp_path):
    # "NA", "null", "nan" are captcha texts too; read as missing, they broke
    # training after its first epoch and gave the test split another identity.
    folder = tmp_path / "images"
    folder.mkdir()
    labels = {}
    for i, text in enumerate(["NA", "null", "nan", "None", "NULL", "N/A"] * 4):
        labels[f"{i:04d}.png"] = text
        (folder / f"{i:04d}.png").write_bytes(captcha_png(text, seed=i))
    write_labels_csv(folder / "labels.csv", sorted(labels.items()))
    report, out = run_preprocess(tmp_path, folder, val_fraction=0.25, test_fraction=0.25)
    for name in ("train", "val", "test"):
        split = read_text_table(out / "splits" / f"{name}.csv")
        assert set(split["label"]) <= set(labels.values())
        assert split_identity(name, out / "splits") == report["split_digests"][name]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("0000.png", "aB3dE"), ("nowhere.png", "xyz12")], r"row 3: no file 'nowhere.png'"),
        ([("0000.png", "aB3dE"), ("0000.png", "Ab3De")], r"row 3: '0000.png' is listed twice"),
        ([("0000.png", "aB3dE"), ("./0000.png", "aB3dE")], r"row 3: '0000.png' is listed twice"),
        ([("0000.png", "aB3dE"), ("labels.csv", "x")], r"row 3: 'labels.csv' is the labels file"),
        ([("0000.png", "")], r"row 2: empty label for '0000.png'"),
        ([("../0000.png", "aB3dE")], r"row 2: file '../0000.png' is outside"),
        ([("0000.png", "aB3dE", "extra")], r"row 2: 3 fields"),
        ([], r"'0001.png' has no row"),
    ],
)
def test_a_bad_labels_file_is_refused_naming_the_row(tmp_path, rows, message):
    folder = tmp_path / "images"
    case_set(folder)
    write_labels_csv(folder / "labels.csv", [*rows, *([("0000.png", "aB3dE")] if not rows else [])])
    with pytest.raises(DataError, match=message):
        run_preprocess(tmp_path, folder)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "table",
    [
        "Labels.csv",
        "labels.txt",
        "sub/names.tsv",
        "answers.CSV",
        "labels.csv.txt",  # Windows, extensions hidden
        "labels.xlsx",
        "labels.csv~",
    ],
)
def test_a_labels_file_by_another_name_is_refused_not_skipped(tmp_path, table):
    # Skipped, it would leave the file names (0000, 0001, ...) as the labels.
    folder = tmp_path / "images"
    case_set(folder)
    (folder / table).parent.mkdir(exist_ok=True)
    (folder / "labels.csv").rename(folder / table)
    with pytest.raises(DataError, match=rf"{re.escape(table)}' looks like a labels file"):
        run_preprocess(tmp_path, folder)
    assert not (tmp_path / "out").exists()


def test_a_text_file_among_the_images_is_still_rejected_as_no_image(tmp_path):
    folder = tmp_path / "images"
    captcha_folder(folder, 40)
    (folder / "README.txt").write_text("drawn with the captcha library")
    report, _ = run_preprocess(tmp_path, folder, val_fraction=0.25, test_fraction=0.25)
    assert report["accepted"] == 40
    assert [r["file"] for r in report["rejected"]] == ["README.txt"]


# 12,000 rows after an unclosed quote: one field past the csv module's size limit.
MANY_ROWS = "".join(f"{i:05d}.png,ABCDE\n" for i in range(12_000))


@pytest.mark.parametrize(
    ("row", "tail", "message"),
    [
        ('0001.png,"Ab3De\n', MANY_ROWS, r"the row on line 3: not CSV .*is a quote left open"),
        ('0001.png,"Ab3De\n', "", r"row 3: label 'Ab3De\\n0002.png.*' holds a line break .*quote"),
        ('0001.png,"Ab\nDe"\n', "", r"row 3: label 'Ab\\nDe' holds a line break"),
        ("0001.png,Ab\u2028De\n", "", r"row 3: label 'Ab\\u2028De' holds a control"),
    ],
)
def test_a_broken_quote_or_a_line_break_in_a_label_is_refused_by_row(tmp_path, row, tail, message):
    # Split by str.splitlines, U+2028 ended a row and "Ab\nDe" became "AbDe".
    folder = tmp_path / "images"
    case_set(folder)
    lines = (folder / "labels.csv").read_text().splitlines(keepends=True)
    lines[2] = row
    (folder / "labels.csv").write_text("".join(lines) + tail)
    with pytest.raises(DataError, match=message):
        run_preprocess(tmp_path, folder)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("abcde .png", "'abcde .png': label 'abcde ' starts or ends with white space"),
        (" abcde.png", "' abcde.png': label ' abcde' starts or ends with white space"),
        ("ab\tcd.png", "'ab\\tcd.png': label 'ab\\tcd' holds a control"),
        ("ab\ncd.png", "'ab\\ncd.png': label 'ab\\ncd' holds a line break"),
        ("\u0301abcd.png", "label '\\u0301abcd' starts with a combining mark"),
        ("\u093fabcd.png", "label '\\u093fabcd' starts with a combining mark"),  # a vowel sign
    ],
)
def test_a_file_name_label_with_white_space_at_an_end_or_a_control_is_refused(
    tmp_path, name, message
):
    folder = tmp_path / "images"
    captcha_folder(folder, 20)
    (folder / name).write_bytes(captcha_png("abcde"))
    with pytest.raises(DataError, match=re.escape(message)):
        run_preprocess(tmp_path, folder)
    assert not (tmp_path / "out").exists()


def test_what_tools_leave_beside_the_images_is_skipped(tmp_path):
    # A .git copy of every image, macOS resource forks, Synology thumbnails.
    folder = tmp_path / "images"
    labels = captcha_folder(folder, 40)
    for name in labels:
        for junk in (".git/lfs", "__MACOSX", "@eaDir/" + name):
            (folder / junk).mkdir(parents=True, exist_ok=True)
        (folder / ".git" / "lfs" / name).write_bytes((folder / name).read_bytes())
        (folder / "__MACOSX" / f"._{name}").write_bytes(b"resource fork")
        (folder / "@eaDir" / name / "SYNOFILE_THUMB_M.jpg").write_bytes(b"thumbnail")
    report, out = run_preprocess(tmp_path, folder, val_fraction=0.25, test_fraction=0.25)
    assert report["accepted"] == 40 and report["rejected"] == []
    splits = pd.concat(
        read_text_table(out / "splits" / f"{n}.csv") for n in ("train", "val", "test")
    )
    assert set(splits["file"]) == set(labels)


def test_a_set_with_no_files_says_so(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / ".hidden.png").write_bytes(captcha_png("abcde"))
    with pytest.raises(DataError, match="no files in the set"):
        run_preprocess(tmp_path, folder)


def test_a_labels_file_without_its_header_is_refused(tmp_path):
    folder = tmp_path / "images"
    case_set(folder)
    write_labels_csv(folder / "labels.csv", [("0000.png", "aB3dE")], header=("name", "label"))
    with pytest.raises(DataError, match=r"labels.csv: row 1 must be the header 'file,text'"):
        run_preprocess(tmp_path, folder)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_a_name_macos_wrote_decomposed_gives_the_composed_label(tmp_path):
    # "é" as "e" and a combining accent would be two symbols to learn, one a mark.
    folder = tmp_path / "images"
    captcha_folder(folder, 16)
    for i, text in enumerate(["café1", "CAFÉ2", "crème", "naïve"] * 2):
        (folder / f"{nfd(text)}_{i}.png").write_bytes(captcha_png("ABCDE", seed=i))
    _, out = run_preprocess(tmp_path, folder, val_fraction=0.25, test_fraction=0.25)
    labels = pd.concat(
        read_text_table(out / "splits" / f"{n}.csv") for n in ("train", "val", "test")
    )
    assert {"café1_0", "naïve_7"} <= set(labels["label"])
    assert all(unicodedata.is_normalized("NFC", label) for label in labels["label"])
    characters = Vocabulary.load(out / "vocabulary.json").characters
    assert "é" in characters and "\u0301" not in characters


def test_a_csv_row_finds_the_file_whose_name_is_the_same_in_nfc(tmp_path):
    # The names typed composed, the files stored decomposed (a zip made on macOS),
    # the labels typed decomposed: every row finds its file, every label is NFC.
    folder = tmp_path / "images"
    folder.mkdir()
    expected = {}
    rows = []
    for i, text in enumerate(["aB3dÉ", "Ab3De", "çA3dE", "AB3DE"] * 4):
        name = f"été_{i:02d}.png"
        (folder / nfd(name)).write_bytes(captcha_png("ABCDE", seed=i))
        rows.append((name, nfd(text)))
        expected[nfd(name)] = text
    write_labels_csv(folder / "labels.csv", rows)
    report, out = run_preprocess(tmp_path, folder, val_fraction=0.25, test_fraction=0.25)
    assert report["accepted"] == len(rows)
    splits = pd.concat(
        read_text_table(out / "splits" / f"{n}.csv") for n in ("train", "val", "test")
    )
    assert dict(zip(splits["file"], splits["label"], strict=True)) == expected


def test_one_name_written_two_ways_is_refused_naming_both(tmp_path):
    folder = tmp_path / "images"
    case_set(folder)
    (folder / "café.png").write_bytes(captcha_png("aB3dE"))
    (folder / nfd("café.png")).write_bytes(captcha_png("Ab3De"))
    rows = [(f"{i:04d}.png", t) for i, t in enumerate(["aB3dE", "Ab3De", "AB3DE", "ab3de"] * 6)]
    write_labels_csv(folder / "labels.csv", [*rows, ("café.png", "aB3dE")])
    # Escaped, as on screen the two names look the same; one problem, not three.
    both = f"{ascii(nfd('café.png'))} and {ascii('café.png')}"
    message = f"1 problem(s), nothing was written: row 26: {both} are one name written two ways"
    with pytest.raises(DataError, match=re.escape(message)):
        run_preprocess(tmp_path, folder)
    assert not (tmp_path / "out").exists()


def test_a_row_naming_a_file_the_set_skips_says_so(tmp_path):
    # Names starting with "." are macOS metadata (._0000.png), never images of the set.
    folder = tmp_path / "images"
    labels = case_set(folder)
    (folder / ".0000.png").write_bytes(captcha_png("aB3dE"))
    write_labels_csv(folder / "labels.csv", [*sorted(labels.items()), (".0000.png", "aB3dE")])
    with pytest.raises(DataError, match=r"row 26: '.0000.png' is not part of the set"):
        run_preprocess(tmp_path, folder)
