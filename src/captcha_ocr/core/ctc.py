"""Greedy CTC decoding in NumPy, for evaluation and tests.

The model emits one distribution over (blank + characters) per time step.
Greedy decoding takes the best class per step, merges runs of the same class,
then drops blanks. A blank between two equal classes keeps both, which is how
CTC spells doubled letters: "d d" needs the path d, blank, d.
"""

from __future__ import annotations

import numpy as np

from captcha_ocr.core.vocabulary import BLANK_INDEX


def collapse(path: np.ndarray) -> list[int]:
    """Merge repeats, then remove blanks, from one best path of class indices."""
    out: list[int] = []
    previous = None
    for index in path.tolist():
        if index != previous and index != BLANK_INDEX:
            out.append(index)
        previous = index
    return out


def greedy_decode(probabilities: np.ndarray) -> tuple[list[list[int]], np.ndarray]:
    """Decode a batch of (time, classes) distributions.

    Returns the label indices of each sample and a confidence per sample: the
    probability of its best path (product of the per-step maxima).
    """
    if probabilities.ndim != 3:
        raise ValueError(f"expected (batch, time, classes), got {probabilities.shape}")
    best = probabilities.argmax(axis=-1)
    confidence = np.exp(np.log(probabilities.max(axis=-1) + 1e-12).sum(axis=-1))
    return [collapse(row) for row in best], confidence


def character_confidences(probabilities: np.ndarray) -> list[list[float]]:
    """One confidence per character that greedy decoding emits, per sample.

    A character comes from a run of frames whose best class is that character;
    its confidence is the highest softmax probability within the run (the frame
    where the network was surest). The lists line up with ``greedy_decode``'s
    codes, so ``zip(text, confidences)`` pairs each character with its score.
    """
    if probabilities.ndim != 3:
        raise ValueError(f"expected (batch, time, classes), got {probabilities.shape}")
    best = probabilities.argmax(axis=-1)
    peak = probabilities.max(axis=-1)
    out: list[list[float]] = []
    for path, scores in zip(best, peak, strict=True):
        found: list[float] = []
        previous = None
        for index, score in zip(path.tolist(), scores.tolist(), strict=True):
            if index != BLANK_INDEX:
                if index != previous:
                    found.append(score)
                else:
                    found[-1] = max(found[-1], score)
            previous = index
        out.append(found)
    return out
