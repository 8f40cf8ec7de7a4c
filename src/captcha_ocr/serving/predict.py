"""Read captchas from the command line.

    captcha-ocr predict PATH... [--model MODEL] [--json]

PATH is an image file, a folder of images, or ``-`` for one image on stdin.
MODEL is a reader file or folder (default: models/export/captcha_reader.keras
if present), an exported ONNX network (``captcha_network_int8.onnx``, read
with OpenVINO; its ``vocabulary.json`` beside it) or an MLflow model URI such
as ``models:/captcha-ocr@champion``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from captcha_ocr import paths
from captcha_ocr.core.images import ImageError, decode_image, to_grayscale
from captcha_ocr.core.model import Reading
from captcha_ocr.errors import CaptchaOcrError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
DEFAULT_REGISTRY_URI = "models:/captcha-ocr@champion"


def inputs(paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every image named, folders expanded in sorted order."""
    for name in paths:
        if name == "-":
            yield "-", sys.stdin.buffer.read()
            continue
        path = Path(name)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.suffix.lower() in IMAGE_SUFFIXES and child.is_file():
                    yield str(child), child.read_bytes()
        elif path.is_file():
            yield name, path.read_bytes()
        else:
            raise FileNotFoundError(f"{name}: no such file or folder")


class Predictor:
    """One interface over a local reader file and an MLflow pyfunc model.

    A ``models:/name@alias`` URI is resolved to its version once, at load time,
    and that exact version is loaded: ``source`` then says which version
    answers even if the alias moves on while this process runs.
    """

    def __init__(self, model: str):
        local = Path(model)
        if local.is_dir():
            local = local / paths.READER.name
        if local.suffix == ".keras" and local.is_file():
            from captcha_ocr.core.model import CaptchaReader

            self.reader = CaptchaReader.load(local)
            self.pyfunc = None
            self.source = {"kind": "local file", "uri": str(local.resolve())}
        elif local.suffix == ".onnx" and local.is_file():
            from captcha_ocr.core.runtimes import open_onnx_reader

            # The int8 network reads fastest; any ONNX network of ours reads.
            self.reader = open_onnx_reader(local)
            self.pyfunc = None
            self.source = {"kind": "local ONNX file (OpenVINO)", "uri": str(local.resolve())}
        elif ":/" in model:
            import mlflow

            from captcha_ocr import tracking

            tracking.use_experiment()
            self.source = resolve_model_uri(model)
            self.pyfunc = mlflow.pyfunc.load_model(self.source["uri"])
            # The pyfunc wraps a CaptchaReader; per-character scores need it directly.
            self.reader = self.pyfunc.unwrap_python_model().reader
        else:
            raise FileNotFoundError(
                f"{model}: not a reader file, folder, ONNX network or MLflow model URI"
            )

    def read(self, images: list[bytes]) -> tuple[list[str], np.ndarray]:
        if self.pyfunc is not None:
            from captcha_ocr.serving.pyfunc import encode_image

            frame = pd.DataFrame({"image": [encode_image(b) for b in images]})
            out = self.pyfunc.predict(frame)
            return out["text"].tolist(), out["confidence"].to_numpy()
        batch = np.stack([decode_image(b, self.reader.height, self.reader.width) for b in images])
        return self.reader.read(batch)

    def read_characters(self, images: list[bytes]) -> list[Reading]:
        """Text, confidence and a score per character; images of any size are resized."""
        batch = np.stack([decode_image(b, self.reader.height, self.reader.width) for b in images])
        return self.reader.read_characters(batch)


def resolve_model_uri(uri: str) -> dict[str, str]:
    """``models:/name@alias`` or ``models:/name/version`` to the version it means."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", uri)
    if not match:
        return {"kind": "MLflow model", "uri": uri}
    name, alias, version = match.groups()
    client = MlflowClient()
    try:
        found = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, version)
        )
    except MlflowException as err:
        raise CaptchaOcrError(f"{uri}: {err.message}") from None
    source = {
        "kind": "registered model",
        "uri": f"models:/{name}/{found.version}",
        "name": name,
        "version": str(found.version),
        "run_id": found.run_id or "",
        "test_exact_match": found.tags.get("test_exact_match", ""),
    }
    if alias:
        source["alias"] = alias
    return source


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

    rows, good_names, good_bytes = [], [], []
    for name, data in inputs(args.paths):
        try:
            to_grayscale(data)  # one unreadable file must not sink the batch
        except ImageError as err:
            rows.append({"file": name, "error": str(err)})
            continue
        good_names.append(name)
        good_bytes.append(data)
    if good_bytes:
        texts, confidence = predictor.read(good_bytes)
        for name, text, conf in zip(good_names, texts, confidence, strict=True):
            rows.append({"file": name, "text": text, "confidence": round(float(conf), 4)})
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
