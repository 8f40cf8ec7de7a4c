"""Read captchas from the command line.

    captcha-ocr predict PATH... [--model MODEL] [--json]

PATH is an image file, a folder of images, or ``-`` for one image on stdin.
Images of up to 2 MiB and 2048x2048 pixels are read; a file that is missing,
unreadable or over a limit is named on stderr, the others are still read, and
the exit code is 1.

MODEL is a reader file or folder (default: models/export/captcha_reader.keras
if present), an exported ONNX network (``captcha_network_int8.onnx``, read
with OpenVINO; its ``vocabulary.json`` beside it) or an MLflow model, as a
folder or a URI such as ``models:/captcha-ocr@champion``. An MLflow model must
be this project's reader; it is checked before anything in it is opened.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from captcha_ocr import paths
from captcha_ocr.core.images import ImageError
from captcha_ocr.core.model import Reading
from captcha_ocr.serving.readers import open_reader, resolve_model_uri
from captcha_ocr.serving.uploads import MAX_IMAGE_BYTES, decode_upload

# What a folder is searched for; the formats Pillow reads here. A file named
# on the command line is tried whatever its name.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
DEFAULT_REGISTRY_URI = "models:/captcha-ocr@champion"
__all__ = ["Predictor", "inputs", "resolve_model_uri", "IMAGE_SUFFIXES", "DEFAULT_REGISTRY_URI"]


def inputs(paths: list[str]) -> Iterator[tuple[str, bytes | None, str | None]]:
    """(name, bytes, None) for every image named, folders expanded in sorted order;
    (name, None, why) for a name that cannot be read, so that the rest still are."""
    for name in paths:
        if name == "-":
            # One byte over the limit is enough to refuse it: never hold more.
            data = sys.stdin.buffer.read(MAX_IMAGE_BYTES + 1)
            if len(data) > MAX_IMAGE_BYTES:
                yield "-", None, f"image over the limit of {MAX_IMAGE_BYTES} bytes"
            else:
                yield "-", data, None
            continue
        path = Path(name)
        if path.is_dir():
            yield from folder_images(path)
        elif path.is_file():
            yield from read_file(name, path)
        else:
            yield name, None, "no such file or folder"


def folder_images(folder: Path) -> Iterator[tuple[str, bytes | None, str | None]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    skipped = sorted({p.suffix or p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES})
    if skipped:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        print(
            f"note: {folder}: skipped files that are not {kinds}: {', '.join(skipped)}",
            file=sys.stderr,
        )
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            yield from read_file(str(path), path)


def read_file(name: str, path: Path) -> Iterator[tuple[str, bytes | None, str | None]]:
    try:
        # The size first: a huge file is refused without being read.
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            yield name, None, f"image of {size} bytes, limit {MAX_IMAGE_BYTES}"
            return
        yield name, path.read_bytes(), None
    except OSError as err:
        yield name, None, f"cannot read: {err.strerror}"


class Predictor:
    """One interface over every model ``--model`` can name (``readers.open_reader``).

    ``source`` says what answers: a file, or the exact registered version an
    alias pointed at when the model was loaded.
    """

    def __init__(self, model: str):
        self.reader, self.source = open_reader(model)

    def decode(self, data: bytes) -> np.ndarray:
        """One image as the reader eats it; ImageError if it is none, or over the limits."""
        reader = self.reader
        return decode_upload(data, reader.height, reader.width, reader.channels)

    def read(self, images: list[np.ndarray]) -> tuple[list[str], np.ndarray]:
        return self.reader.read(np.stack(images))

    def read_characters(self, images: list[np.ndarray]) -> list[Reading]:
        """Text, confidence and a score per character of each decoded image."""
        return self.reader.read_characters(np.stack(images))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr predict", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--model", help="reader file/folder, ONNX network or MLflow model URI")
    parser.add_argument("--json", action="store_true", help="one JSON list on stdout")
    args = parser.parse_args(argv)
    model = args.model or (str(paths.READER) if paths.READER.is_file() else DEFAULT_REGISTRY_URI)
    predictor = Predictor(model)

    # One unreadable, missing or oversized file must not sink the others.
    rows, read_rows, images = [], [], []
    for name, data, error in inputs(args.paths):
        row: dict[str, object] = {"file": name}
        rows.append(row)
        if data is None:
            row["error"] = error or "unreadable"
            continue
        try:
            images.append(predictor.decode(data))
            read_rows.append(row)
        except ImageError as err:
            row["error"] = str(err)
    if images:
        texts, confidence = predictor.read(images)
        for row, text, conf in zip(read_rows, texts, confidence, strict=True):
            row |= {"text": text, "confidence": round(float(conf), 4)}
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            if "error" in row:
                print(f"{row['file']}\terror: {row['error']}", file=sys.stderr)
            else:
                print(f"{row['file']}\t{row['text']}\t{row['confidence']:.4f}")
    if any("error" in row for row in rows):
        raise SystemExit(1)
    return 0
