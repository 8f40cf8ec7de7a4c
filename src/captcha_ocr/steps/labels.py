"""Preprocess's labels: from the file names, or from a ``labels.csv`` in the set.

The rule: when the ingested set holds a file named ``labels.csv`` (the
shallowest one; two at the same depth are refused), every label comes from it.
Its header is ``file,text``; ``file`` is the image's path relative to the
CSV's folder, ``text`` its label, kept as written (case included; in NFC, below).
Every other file in the set must have a row, and every row a file.
Without a CSV, a file's label is its name without the extension, case kept,
and a table by another name (``Labels.csv``, ``labels.csv.txt``, ``x.tsv``, a
spreadsheet) is refused rather than skipped. A label is refused, whichever way
it came, when it holds a line break or another control character, starts or
ends with white space, or starts with a combining mark.

Text is compared in Unicode's composed form (NFC): macOS writes ``é`` in a file
name as ``e`` and a combining accent (NFD), which would make it two symbols
to learn, and a CSV row typed ``café.png`` would find no file. Labels are
NFC; a row's file name finds the file whose name is the same in NFC.

A CSV is what makes labels that differ only in case work everywhere: on
case-insensitive storage (macOS, Windows) ``aB3dE.png`` and ``Ab3De.png`` are
one file, while ``0001.png`` and ``0002.png`` are two.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from captcha_ocr.core.images import READ_FORMATS
from captcha_ocr.errors import CaptchaOcrError

LABELS_FILE = "labels.csv"
HEADER = ["file", "text"]
# With no labels.csv in the set, a table, or a file named labels.* that is no image, is
# a misnamed labels file (labels.csv.txt is what Windows makes of it, extensions hidden).
TABLE_SUFFIXES = (".csv", ".tsv", ".xlsx", ".xls", ".ods", ".numbers")
SKIPPED_FOLDERS = ("__MACOSX", "@eaDir")
SKIPPED = "names starting with '.', and __MACOSX and @eaDir folders, are skipped"
# Problems named in the error; the count says how many more there are.
SHOWN_PROBLEMS = 5


class LabelsError(CaptchaOcrError):
    pass


@dataclass(frozen=True)
class Labelled:
    file: str  # relative to the images folder, with "/"
    path: Path
    label: str


def data_files(images_dir: Path) -> list[Path]:
    """Every file under ``images_dir`` in sorted order, what tools leave beside it left out."""
    return sorted(
        p for p in images_dir.rglob("*") if p.is_file() and not skipped(p.relative_to(images_dir))
    )


def skipped(relative: Path) -> bool:
    """Metadata, never images of the set: names starting with "." (.DS_Store, ._x.png,
    .git/), macOS's __MACOSX and Synology's @eaDir folders."""
    return any(part.startswith(".") or part in SKIPPED_FOLDERS for part in relative.parts)


def find_labels_file(images_dir: Path, files: list[Path]) -> Path | None:
    """The set's ``labels.csv``: the shallowest; None when there is none."""
    found = [p for p in files if p.name == LABELS_FILE]
    if not found:
        return None
    depth = min(len(p.relative_to(images_dir).parts) for p in found)
    top = [p for p in found if len(p.relative_to(images_dir).parts) == depth]
    if len(top) > 1:
        names = ", ".join(p.relative_to(images_dir).as_posix() for p in top)
        raise LabelsError(f"two {LABELS_FILE} files at the same depth ({names}): keep one")
    return top[0]


def labelled_files(images_dir: Path) -> tuple[list[Labelled], Path | None]:
    """Every image with its label, and the labels file they came from (None: file names)."""
    files = data_files(images_dir)
    if not files:
        raise LabelsError(f"{images_dir}: no files in the set ({SKIPPED})")
    labels_file = find_labels_file(images_dir, files)
    if labels_file is None:
        refuse_stray_tables(images_dir, files)
        found = [Labelled(rel(p, images_dir), p, nfc(p.stem)) for p in files]
        problems = [f"{s.file!r}: {why}" for s in found if (why := label_problem(s.label))]
        refuse(images_dir, problems, "rename the files, or label them with a labels.csv")
        return found, None
    labels = read_labels(labels_file)
    folder = labels_file.parent
    problems = []
    on_disk: dict[str, list[Path]] = {}  # NFC name, relative to the CSV's folder -> files
    for path in files:
        if path.is_relative_to(folder):
            on_disk.setdefault(nfc(rel(path, folder)), []).append(path)
    paths = {}
    listed = set()
    for name, row in labels.rows.items():
        matches = on_disk.get(name, [])
        listed.update(matches)
        if matches == [labels_file]:
            problems.append(f"row {row}: {name!r} is the labels file itself, not an image")
        elif len(matches) == 1:
            paths[name] = matches[0]
        elif matches:  # printed with escapes: on screen the two names look the same
            two = " and ".join(ascii(rel(p, images_dir)) for p in matches)
            problems.append(
                f"row {row}: {two} are one name written two ways (Unicode composed and "
                "decomposed): rename one"
            )
        elif (folder / name).is_file():
            problems.append(f"row {row}: {name!r} is not part of the set ({SKIPPED}): rename it")
        else:
            problems.append(f"row {row}: no file {name!r} in the set")
    for path in files:
        if path != labels_file and path not in listed:
            problems.append(f"{rel(path, images_dir)!r} has no row (every image needs a label)")
    refuse(labels_file, labels.problems + problems)
    found = [Labelled(rel(paths[n], images_dir), paths[n], t) for n, t in labels.texts.items()]
    return sorted(found, key=lambda s: s.file), labels_file


def refuse_stray_tables(images_dir: Path, files: list[Path]) -> None:
    """A table that is not ``labels.csv`` would be skipped, and names give the labels."""
    image_suffixes = {
        suffix
        for suffix, kind in Image.registered_extensions().items()
        if kind in READ_FORMATS  # the formats preprocess reads (.jpg, .jfif, .png, ...)
    }
    for path in files:
        suffix = path.suffix.lower()
        named = path.name.lower().startswith("labels.") and suffix not in image_suffixes
        if suffix in TABLE_SUFFIXES or named:
            raise LabelsError(
                f"{rel(path, images_dir)!r} looks like a labels file, but labels come only "
                f"from a file named {LABELS_FILE} (header 'file,text'): rename it, or "
                "remove it to take the labels from the image file names"
            )


def label_problem(label: str) -> str | None:
    if "\n" in label or "\r" in label:  # in a CSV, what a quote left open swallows
        return f"label {label!r} holds a line break (in a CSV: is a quote left open?)"
    if label != label.strip():
        return f"label {label!r} starts or ends with white space"
    if not label.isprintable():
        return f"label {label!r} holds a control or invisible character (a tab, a zero-width space)"
    if unicodedata.category(label[0]).startswith("M"):  # an accent, a vowel sign: no letter
        return f"label {ascii(label)} starts with a combining mark"
    return None


def rel(path: Path, images_dir: Path) -> str:
    return path.relative_to(images_dir).as_posix()


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


@dataclass
class Labels:
    texts: dict[str, str]  # file (relative to the CSV's folder, NFC) -> label (NFC)
    rows: dict[str, int]  # file -> the CSV row it was on
    problems: list[str]


def read_labels(path: Path) -> Labels:
    """Parse a ``file,text`` CSV; each problem is kept with its row number (header: row 1)."""
    labels = Labels({}, {}, [])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise LabelsError(f"{path}: not UTF-8 text ({err})") from None
    # newline="": a line break inside a quoted field stays in the label (and is
    # refused there), and only \n and \r end a row, not \f or U+2028.
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    starts = 1  # the line the row being read starts on
    try:
        header = next(reader, None)
        if [h.strip() for h in header or []] != HEADER:
            raise LabelsError(f"{path}: row 1 must be the header 'file,text', found {header!r}")
        starts = reader.line_num + 1
        for row_number, row in enumerate(reader, start=2):
            rows.append((row_number, row))
            starts = reader.line_num + 1
    except csv.Error as err:  # an unclosed quote runs on to the field size limit
        raise LabelsError(
            f"{path}: the row on line {starts}: not CSV ({err}); is a quote left open?"
        ) from None
    for row_number, row in rows:
        if not row:
            continue  # a blank line
        problem = row_problem(row)
        name = nfc(PurePosixPath(row[0].strip().replace("\\", "/")).as_posix())
        if problem is None and name in labels.texts:
            problem = f"{name!r} is listed twice (first on row {labels.rows[name]})"
        if problem:
            labels.problems.append(f"row {row_number}: {problem}")
            continue
        labels.texts[name], labels.rows[name] = nfc(row[1]), row_number
    if not labels.texts and not labels.problems:
        raise LabelsError(f"{path}: no rows under the header")
    return labels


def row_problem(row: list[str]) -> str | None:
    if len(row) != len(HEADER):
        return f"{len(row)} fields, expected 2 (file,text): {row!r}"
    name, label = row[0].strip().replace("\\", "/"), row[1]
    if not name:
        return "empty file name"
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return f"file {name!r} is outside the labels file's folder"
    if not label:
        return f"empty label for {name!r}"
    if problem := label_problem(label):
        return f"{problem}, for {name!r}"
    return None


def refuse(where: Path, problems: list[str], fix: str = "") -> None:
    if not problems:
        return
    shown = "; ".join(problems[:SHOWN_PROBLEMS])
    more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
    advice = f"; {fix}" if fix else ""
    raise LabelsError(
        f"{where}: {len(problems)} problem(s), nothing was written: {shown}{more}{advice}"
    )
