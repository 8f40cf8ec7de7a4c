"""Text metrics: exact match (with its confidence interval, and per label length),
character error rate, character confusion."""

from __future__ import annotations

import math
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


# The normal quantile of a two-sided 95% interval.
Z95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and is not empty
    at 0 or all: 10 of 10 right is (0.722, 1.0), not (1.0, 1.0).
    """
    if trials <= 0:
        raise ValueError("no samples to score")
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes out of {trials} trials")
    share = successes / trials
    denominator = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / denominator
    # At 0 (or all) the bound is exactly 0 (or 1); rounding would leave 5e-17.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def exact_match_by_length(
    truths: Sequence[str], predictions: Sequence[str]
) -> dict[int, tuple[int, int]]:
    """Label length -> (captchas read right, captchas), shortest first."""
    _check_lengths(truths, predictions)
    counts: dict[int, list[int]] = {}
    for t, p in zip(truths, predictions, strict=True):
        right_total = counts.setdefault(len(t), [0, 0])
        right_total[0] += t == p
        right_total[1] += 1
    return {length: (r, n) for length, (r, n) in sorted(counts.items())}


# A model has "left the plateau" once validation CER is below this: before, the
# CTC loss sits flat and the network reads (almost) nothing.
PLATEAU_CER = 0.5
PLATEAU_MESSAGE = "the model reads nothing yet: the loss stayed on its plateau"
PLATEAU_ADVICE = (
    "try more epochs (train.epochs, or a larger train.target_steps), a lower "
    "train.learning_rate with train.warmup_epochs: 2, a smaller train.batch_size "
    "(more updates per epoch), weaker augmentation (train.augment: false), or more images"
)


def left_plateau(val_cer: Sequence[float]) -> bool:
    """Whether any epoch's validation CER went below ``PLATEAU_CER``."""
    return any(float(cer) < PLATEAU_CER for cer in val_cer)


def plateau_note(val_cer: Sequence[float]) -> str | None:
    """The plain statement for a training that never left the plateau; None if it did."""
    if left_plateau(val_cer):
        return None
    best = min((float(c) for c in val_cer), default=float("nan"))
    return (
        f"{PLATEAU_MESSAGE} (best validation CER {best:.3f} in {len(val_cer)} epochs, "
        f"{PLATEAU_CER} or more means it reads almost nothing); {PLATEAU_ADVICE}"
    )


def flat_metrics(metrics: dict) -> dict[str, float]:
    """reports/metrics.json as MLflow and KFP take it: numbers only, per length as ``..._len5``."""
    flat = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    for length, v in metrics["test_exact_match_by_length"].items():
        flat[f"test_exact_match_len{length}"] = float(v["exact_match"])
        flat[f"test_samples_len{length}"] = float(v["samples"])
    return flat


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
