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
from dataclasses import dataclass
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

    def save(self, path: Path) -> None:
        from captcha_ocr.files import write_json

        write_json(path, {"characters": self.characters, "blank_index": BLANK_INDEX})

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        data = json.loads(Path(path).read_text())
        if data.get("blank_index") != BLANK_INDEX:
            raise ValueError(
                f"{path}: blank_index {data.get('blank_index')!r} does not match "
                f"this version of captcha_ocr ({BLANK_INDEX})"
            )
        return cls(data["characters"])
