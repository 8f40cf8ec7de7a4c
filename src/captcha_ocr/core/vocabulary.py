"""The character set, and the one place that says which index means what.

Users of the reference example hit two bugs here: a vocabulary built from a
Python ``set`` (order changes between runs, so a reloaded model reads garbage)
and a ``StringLookup`` whose out-of-vocabulary slot moved between Keras versions
(every label shifted by one). So the mapping is explicit: index 0 is the CTC
blank, characters follow in sorted order from index 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

BLANK_INDEX = 0


@dataclass(frozen=True)
class Vocabulary:
    characters: str

    def __post_init__(self) -> None:
        if not self.characters:
            raise ValueError("a vocabulary needs at least one character")
        if "".join(sorted(set(self.characters))) != self.characters:
            raise ValueError(f"vocabulary {self.characters!r} must be sorted and without repeats")

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> Vocabulary:
        return cls("".join(sorted(set("".join(labels)))))

    @property
    def num_classes(self) -> int:
        """Output units of the model: every character plus the blank."""
        return len(self.characters) + 1

    def encode(self, text: str) -> list[int]:
        try:
            return [self.characters.index(ch) + 1 for ch in text]
        except ValueError:
            unknown = sorted(set(text) - set(self.characters))
            raise ValueError(
                f"label {text!r} has characters outside the vocabulary: {unknown}"
            ) from None

    def decode(self, indices: Sequence[int]) -> str:
        """Indices to text; blanks and padding (anything < 1) are dropped."""
        return "".join(self.characters[i - 1] for i in indices if i > BLANK_INDEX)

    def save(self, path: Path, spec: ReadingSpec | None = None) -> None:
        """The characters, and what the reader reads (image size, channels, label lengths)."""
        from captcha_ocr.files import write_json

        extra = asdict(spec) if spec else {}
        write_json(path, {"characters": self.characters, "blank_index": BLANK_INDEX, **extra})

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        data = json.loads(Path(path).read_text())
        if data.get("blank_index") != BLANK_INDEX:
            raise ValueError(
                f"{path}: blank_index {data.get('blank_index')!r} does not match "
                f"this version of captcha_ocr ({BLANK_INDEX})"
            )
        return cls(data["characters"])


@dataclass(frozen=True)
class ReadingSpec:
    """What preprocess chose (``auto`` params resolved) and every reader must read alike."""

    image_height: int
    image_width: int
    channels: int
    min_label_length: int
    max_label_length: int

    @classmethod
    def load(cls, path: Path) -> ReadingSpec | None:
        """The spec saved beside the characters; None in a vocabulary.json from before it."""
        data = json.loads(Path(path).read_text())
        names = [f.name for f in fields(cls)]
        if not all(name in data for name in names):
            return None
        return cls(**{name: int(data[name]) for name in names})
