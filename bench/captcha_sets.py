"""Labelled captcha sets drawn with the `captcha` library, the same images on every run.

    python bench/captcha_sets.py library --out bench/data/library.zip
    python bench/captcha_sets.py colour --out bench/data/colour.zip
    python bench/captcha_sets.py look-alike --out sheet.png   # O or 0? a blind test

``library``: ``ImageCaptcha(width=160, height=60)`` with its default font,
4000 unique labels drawn uniformly from 0-9A-Z, lengths uniform in 4..6.

``colour``: 3000 unique labels of 8 characters from 31 lower-case letters and
digits (no 0/o, 1/l/i), on 64x256, drawn with two other fonts in a random
foreground colour on a random, tinted background, each character rotated by up
to 45 degrees, with three extra distractor strokes in other colours.

The library draws every random choice with ``secrets``, so a seed alone fixes
only the labels. Here its module's ``secrets`` is swapped, while a set is
drawn, for a seeded ``random.Random`` with the same three calls: the same seed
gives the same bytes (``--check`` draws a set twice and compares digests).
Each image is a PNG named ``<label>.png`` in the zip, which is how the
project's ingest reads labels from file names.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import random
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import captcha.image
from captcha.image import ImageCaptcha
from PIL import ImageDraw

FONTS = Path("/usr/share/fonts/truetype")


class SeededSecrets:
    """The three ``secrets`` calls the library makes, answered by a seeded generator."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def randbelow(self, n: int) -> int:
        return self._random.randrange(n)

    def randbits(self, k: int) -> int:
        return self._random.getrandbits(k)

    def choice(self, items):
        return self._random.choice(items)


@contextmanager
def seeded_library(seed: int) -> Iterator[SeededSecrets]:
    original = captcha.image.secrets
    shim = SeededSecrets(seed)
    captcha.image.secrets = shim  # type: ignore[assignment]
    try:
        yield shim
    finally:
        captcha.image.secrets = original


@dataclass(frozen=True)
class CaptchaSet:
    charset: str
    lengths: tuple[int, ...]
    count: int
    width: int
    height: int

    def labels(self, rng: random.Random) -> list[str]:
        """``count`` unique labels, each length and character drawn uniformly."""
        seen: dict[str, None] = {}
        while len(seen) < self.count:
            length = rng.choice(self.lengths)
            seen["".join(rng.choice(self.charset) for _ in range(length))] = None
        return list(seen)


LIBRARY = CaptchaSet("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", (4, 5, 6), 4000, 160, 60)
COLOUR = CaptchaSet("23456789abcdefghjkmnpqrstuvwxyz", (8,), 3000, 256, 64)


class ColourCaptcha(ImageCaptcha):
    """Tinted background, rotated characters, distractor strokes in other colours."""

    character_rotate = (-45, 45)

    def generate_image(self, chars, bg_color=None, fg_color=None):  # noqa: ARG002
        rng = captcha.image.secrets
        background = tuple(150 + rng.randbelow(106) for _ in range(3))
        colour = tuple(rng.randbelow(140) for _ in range(3))
        image = self.create_captcha_image(chars, colour, background)
        self.create_noise_dots(image, colour, number=40)
        self.create_noise_curve(image, colour)
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            stroke = tuple(rng.randbelow(256) for _ in range(3))
            points = [(rng.randbelow(self._width), rng.randbelow(self._height)) for _ in range(3)]
            draw.line(points, fill=stroke, width=2 + rng.randbelow(2))
        return image


def drawer(name: str) -> tuple[CaptchaSet, ImageCaptcha]:
    if name == "library":
        return LIBRARY, ImageCaptcha(width=LIBRARY.width, height=LIBRARY.height)
    fonts = [
        str(FONTS / "dejavu" / "DejaVuSerif-Bold.ttf"),
        str(FONTS / "liberation" / "LiberationSans-Regular.ttf"),
    ]
    return COLOUR, ColourCaptcha(
        width=COLOUR.width, height=COLOUR.height, fonts=fonts, font_sizes=(30, 34, 38)
    )


def write_set(name: str, out: Path, seed: int = 2026, count: int | None = None) -> str:
    """Draw the set into a zip at ``out``; return the zip's sha256."""
    spec, image_captcha = drawer(name)
    labels = spec.labels(random.Random(seed))[:count]
    out.parent.mkdir(parents=True, exist_ok=True)
    with seeded_library(seed), zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for label in labels:
            buffer = io.BytesIO()
            image_captcha.generate_image(label).save(buffer, format="PNG")
            # A fixed date, so that the zip's bytes follow from the images alone.
            info = zipfile.ZipInfo(f"{name}/{label}.png", date_time=(2026, 1, 1, 0, 0, 0))
            archive.writestr(info, buffer.getvalue())
    return hashlib.sha256(out.read_bytes()).hexdigest()


def look_alike_sheet(out: Path, seed: int, count: int = 24) -> list[str]:
    """A sheet of ``K?M7`` captchas in the library's default font, ``?`` an O or a 0.

    Read it before opening the answers (written beside it): it tells whether a
    person can tell the two apart once the library has drawn them.
    """
    from PIL import Image

    rng = random.Random(seed)
    answers = [rng.choice("O0") for _ in range(count)]
    sheet = Image.new("RGB", (160 * 4, 60 * math.ceil(count / 4)), "white")
    with seeded_library(seed):
        drawn = ImageCaptcha(width=160, height=60)
        for i, middle in enumerate(answers):
            image = drawn.generate_image(f"K{middle}M7").convert("RGB")
            sheet.paste(image, ((i % 4) * 160, (i // 4) * 60))
    sheet.resize((sheet.width * 2, sheet.height * 2)).save(out)
    out.with_suffix(".answers.txt").write_text(" ".join(answers) + "\n")
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("name", choices=["library", "colour", "look-alike"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--count", type=int, default=None, help="only the first N labels")
    parser.add_argument("--check", action="store_true", help="draw twice, compare digests")
    args = parser.parse_args()
    if args.name == "look-alike":
        look_alike_sheet(args.out, args.seed)
        answers = args.out.with_suffix(".answers.txt")
        print(f"{args.out}: which are O and which 0? answers in {answers}")
        return
    digest = write_set(args.name, args.out, args.seed, args.count)
    print(f"{args.out}: {digest}")
    if args.check:
        again = write_set(args.name, args.out.with_suffix(".again.zip"), args.seed, args.count)
        args.out.with_suffix(".again.zip").unlink()
        print("same bytes on a second draw" if again == digest else "DIFFERENT bytes")


if __name__ == "__main__":
    main()
