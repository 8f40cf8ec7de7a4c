"""Text metrics: exact match, character error rate, character confusion."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

# Stands for "no character" in a confusion pair: an insertion or a deletion.
GAP = "∅"


def align(truth: str, prediction: str) -> list[tuple[str, str]]:
    """Levenshtein alignment as (true, predicted) character pairs.

    Substitutions pair two characters; deletions and insertions pair one with GAP.
    The number of pairs that differ is the edit distance.
    """
    rows, cols = len(truth) + 1, len(prediction) + 1
    cost = [[0] * cols for _ in range(rows)]
    for i in range(rows):
        cost[i][0] = i
    for j in range(cols):
        cost[0][j] = j
    for i in range(1, rows):
        for j in range(1, cols):
            same = truth[i - 1] == prediction[j - 1]
            cost[i][j] = min(
                cost[i - 1][j - 1] + (0 if same else 1),
                cost[i - 1][j] + 1,
                cost[i][j - 1] + 1,
            )
    pairs: list[tuple[str, str]] = []
    i, j = len(truth), len(prediction)
    while i > 0 or j > 0:
        if i > 0 and j > 0:
            same = truth[i - 1] == prediction[j - 1]
            if cost[i][j] == cost[i - 1][j - 1] + (0 if same else 1):
                pairs.append((truth[i - 1], prediction[j - 1]))
                i, j = i - 1, j - 1
                continue
        if i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((truth[i - 1], GAP))
            i -= 1
        else:
            pairs.append((GAP, prediction[j - 1]))
            j -= 1
    return pairs[::-1]


def edit_distance(truth: str, prediction: str) -> int:
    return sum(t != p for t, p in align(truth, prediction))


def exact_match(truths: Sequence[str], predictions: Sequence[str]) -> float:
    _check_lengths(truths, predictions)
    return sum(t == p for t, p in zip(truths, predictions, strict=True)) / len(truths)


def character_error_rate(truths: Sequence[str], predictions: Sequence[str]) -> float:
    """Edits needed to turn every prediction into its truth, per true character."""
    _check_lengths(truths, predictions)
    edits = sum(edit_distance(t, p) for t, p in zip(truths, predictions, strict=True))
    return edits / max(1, sum(len(t) for t in truths))


def character_confusion(
    truths: Sequence[str], predictions: Sequence[str]
) -> Counter[tuple[str, str]]:
    """Counts of (true, predicted) character pairs over aligned texts."""
    _check_lengths(truths, predictions)
    counts: Counter[tuple[str, str]] = Counter()
    for t, p in zip(truths, predictions, strict=True):
        counts.update(align(t, p))
    return counts


def _check_lengths(truths: Sequence[str], predictions: Sequence[str]) -> None:
    if len(truths) != len(predictions):
        raise ValueError(f"{len(truths)} truths but {len(predictions)} predictions")
    if not truths:
        raise ValueError("no samples to score")
