"""Captcha sets a user might bring, made inside the tests with the ``captcha`` library."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

from captcha_ocr.config import PreprocessParams
from captcha_ocr.steps.preprocess import preprocess

SYMBOLS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def captcha_png(text: str, width: int = 160, height: int = 60, seed: int = 0) -> bytes:
    """One colour captcha of ``text`` from the ``captcha`` library, as PNG bytes."""
    import captcha.image

    # The library draws with ``secrets``; a seeded stand-in gives the same picture every run.
    captcha.image.secrets = Seeded(seed)  # type: ignore[assignment]
    image = captcha.image.ImageCaptcha(width=width, height=height).generate_image(text)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Seeded:
    """The calls of ``secrets`` the captcha library makes, from a seeded generator."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def randbelow(self, n: int) -> int:
        return self.rng.randrange(n)

    def choice(self, items):
        return self.rng.choice(items)

    def randbits(self, k: int) -> int:
        return self.rng.getrandbits(k)


def texts(count: int, lengths: tuple[int, int] = (4, 6), seed: int = 7) -> list[str]:
    """``count`` different labels of the given lengths over 0-9A-Z, every symbol used."""
    rng = random.Random(seed)
    found: list[str] = []
    while len(found) < count:
        length = rng.randint(*lengths)
        # Cycle through the symbols first, so every one of them appears.
        start = len("".join(found))
        text = "".join(
            SYMBOLS[(start + i) % len(SYMBOLS)] if start < len(SYMBOLS) else rng.choice(SYMBOLS)
            for i in range(length)
        )
        if text not in found:
            found.append(text)
    return found


def captcha_folder(folder: Path, count: int, seed: int = 7) -> dict[str, str]:
    """A folder of ``count`` RGB captchas named by their text; file -> label."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i, text in enumerate(texts(count, seed=seed)):
        (folder / f"{text}.png").write_bytes(captcha_png(text, seed=seed * 1000 + i))
        labels[f"{text}.png"] = text
    return labels


def write_labels_csv(path: Path, rows: list[tuple[str, str]], header=("file", "text")) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def case_set(folder: Path) -> dict[str, str]:
    """Labels that differ only in case, under plain file names, listed in labels.csv."""
    folder.mkdir(parents=True)
    labels = {}
    for i, text in enumerate(["aB3dE", "Ab3De", "AB3DE", "ab3de"] * 6):
        name = f"{i:04d}.png"
        (folder / name).write_bytes(captcha_png(text, seed=i))
        labels[name] = text
    write_labels_csv(folder / "labels.csv", sorted(labels.items()))
    return labels


def run_preprocess(
    tmp_path: Path, images_dir: Path, version: str = "v1", **params
) -> tuple[dict, Path]:
    """Preprocess ``images_dir`` into ``tmp_path / "out"``; its report and that folder."""
    out = tmp_path / "out"
    info = tmp_path / "ingest.json"
    info.parent.mkdir(parents=True, exist_ok=True)
    info.write_text(json.dumps({"sha256": version}))  # the data version ingest records
    report = preprocess(
        PreprocessParams(**params),
        images_dir=images_dir,
        splits_dir=out / "splits",
        arrays_dir=out / "prepared",
        vocabulary_path=out / "vocabulary.json",
        report_path=out / "data_report.json",
        info_path=info,
    )
    return report, out
