import pytest

from captcha_ocr.core.metrics import (
    GAP,
    align,
    character_confusion,
    character_error_rate,
    edit_distance,
    exact_match,
    exact_match_by_length,
    plateau_note,
    wilson_interval,
)


def test_exact_match_counts_whole_captchas():
    assert exact_match(["abcde", "fghij"], ["abcde", "fghik"]) == 0.5


def test_cer_is_edits_per_true_character():
    # one substitution in 10 characters, then a missing character in 5
    assert character_error_rate(["abcde", "fghij"], ["abcde", "fghik"]) == pytest.approx(0.1)
    assert character_error_rate(["abcde"], ["abde"]) == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("truth", "prediction", "distance"),
    [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("same", "same", 0)],
)
def test_edit_distance(truth, prediction, distance):
    assert edit_distance(truth, prediction) == distance


def test_alignment_marks_insertions_and_deletions():
    assert align("abc", "ac") == [("a", "a"), ("b", GAP), ("c", "c")]
    assert align("ac", "abc") == [("a", "a"), (GAP, "b"), ("c", "c")]


def test_confusion_counts_the_known_mixups():
    confusion = character_confusion(["mnm", "ce"], ["nnm", "ce"])
    assert confusion[("m", "n")] == 1
    assert confusion[("n", "n")] == 1
    assert confusion[("c", "c")] == 1


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="2 truths but 1 predictions"):
        exact_match(["a", "b"], ["a"])


@pytest.mark.parametrize(("right", "total"), [(0, 10), (10, 10), (87, 100), (1, 3), (93, 94)])
def test_wilson_interval_matches_scipy(right, total):
    from scipy.stats import binomtest

    expected = binomtest(right, total).proportion_ci(0.95, method="wilson")
    low, high = wilson_interval(right, total)
    assert (low, high) == pytest.approx((expected.low, expected.high), abs=1e-9)


def test_wilson_interval_known_values():
    # 0 of n has the closed form (0, z^2 / (n + z^2)); n of n mirrors it.
    z2 = 1.959963984540054**2
    assert wilson_interval(0, 10)[1] == pytest.approx(z2 / (10 + z2))
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    # By hand: centre (0.87 + 0.0192) / 1.0384 = 0.8563, half 0.0661.
    assert wilson_interval(87, 100) == pytest.approx((0.7902, 0.9224), abs=1e-4)


@pytest.mark.parametrize("total", [1, 13, 64, 94])
def test_wilson_interval_holds_none_and_all_exactly(total):
    # So that low <= exact match <= high holds with no rounding slack.
    assert wilson_interval(0, total)[0] == 0.0
    assert wilson_interval(total, total)[1] == 1.0


@pytest.mark.parametrize(("right", "total"), [(0, 0), (-1, 3), (4, 3)])
def test_wilson_interval_refuses_impossible_counts(right, total):
    with pytest.raises(ValueError, match="no samples|successes"):
        wilson_interval(right, total)


def test_exact_match_by_length_counts_each_length():
    truths = ["ab12", "cd34", "efg567", "hij890", "klm123"]
    read = ["ab12", "cd3", "efg567", "hij890", "klm12x"]
    assert exact_match_by_length(truths, read) == {4: (1, 2), 6: (2, 3)}


def test_plateau_note_only_for_a_training_that_never_read():
    assert plateau_note([1.0, 0.9, 0.49]) is None
    note = plateau_note([1.0, 0.97, 0.8])
    assert note is not None
    assert note.startswith("the model reads nothing yet: the loss stayed on its plateau")
    assert "best validation CER 0.800 in 3 epochs" in note
    assert "train.learning_rate" in note and "train.epochs" in note
