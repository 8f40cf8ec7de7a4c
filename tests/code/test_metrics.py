import pytest

from captcha_ocr.core.metrics import (
    GAP,
    align,
    character_confusion,
    character_error_rate,
    edit_distance,
    exact_match,
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
