"""What a reader gives per image, without Keras: texts with a score per character.

Kept apart from ``model`` so that the ONNX runtimes, and the served model that
uses them, never import Keras or TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from captcha_ocr.core.ctc import character_confidences
from captcha_ocr.errors import CaptchaOcrError


@dataclass(frozen=True)
class Reading:
    """One image read: the text, its best-path probability, a score per character."""

    text: str
    confidence: float
    characters: list[tuple[str, float]]


class ModelLoadError(CaptchaOcrError, ValueError):
    pass


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64."""
    shifted = np.exp(np.asarray(logits, dtype="float64") - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def readings(texts: list[str], confidences: np.ndarray, logits: np.ndarray) -> list[Reading]:
    """Each text with its confidence and a score per character, from the logits it came from."""
    found = []
    for text, conf, scores in zip(
        texts, confidences, character_confidences(softmax(logits)), strict=True
    ):
        if len(scores) != len(text):
            raise RuntimeError(f"decoded {text!r} but found {len(scores)} character runs")
        found.append(Reading(text, float(conf), list(zip(text, scores, strict=True))))
    return found
