import numpy as np
import pytest

from captcha_ocr.core.ctc import character_confidences, collapse, greedy_decode


def one_hot_path(path: list[int], classes: int = 5, p: float = 0.9) -> np.ndarray:
    probs = np.full((len(path), classes), (1 - p) / (classes - 1))
    probs[np.arange(len(path)), path] = p
    return probs


def test_repeats_merge_and_blanks_vanish():
    assert collapse(np.array([0, 1, 1, 0, 2, 2, 2, 0])) == [1, 2]


def test_doubled_letter_needs_a_blank_between():
    # "dd": d, d with no blank collapses to one d; d, blank, d keeps both.
    assert collapse(np.array([3, 3, 3])) == [3]
    assert collapse(np.array([3, 0, 3])) == [3, 3]
    assert collapse(np.array([0, 3, 3, 0, 0, 3, 0])) == [3, 3]


def test_greedy_decode_batch_and_confidence():
    batch = np.stack([one_hot_path([1, 0, 1, 2]), one_hot_path([0, 0, 4, 4])])
    codes, confidence = greedy_decode(batch)
    assert codes == [[1, 1, 2], [4]]
    np.testing.assert_allclose(confidence, [0.9**4, 0.9**4], rtol=1e-6)


def test_greedy_decode_wants_three_dimensions():
    with pytest.raises(ValueError, match="batch, time, classes"):
        greedy_decode(np.zeros((4, 5)))


def test_character_confidence_is_the_peak_of_each_run():
    # Path 1 1 0 2 0 2: "1" peaks at 0.8, then two separate "2"s (a blank between).
    probs = np.full((6, 3), 0.05)
    for frame, (cls, p) in enumerate([(1, 0.6), (1, 0.8), (0, 0.7), (2, 0.5), (0, 0.9), (2, 0.95)]):
        probs[frame] = (1 - p) / 2
        probs[frame, cls] = p
    (scores,) = character_confidences(probs[None])
    assert scores == pytest.approx([0.8, 0.5, 0.95])


def test_character_confidences_line_up_with_decoded_codes(rng):
    logits = rng.normal(scale=3.0, size=(32, 20, 6))
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    codes, _ = greedy_decode(probs)
    scores = character_confidences(probs)
    assert [len(c) for c in codes] == [len(s) for s in scores]
    assert any(len(c) > 1 for c in codes)
    for row, (sample_codes, sample_scores) in enumerate(zip(codes, scores, strict=True)):
        for code, score in zip(sample_codes, sample_scores, strict=True):
            # Each score is one frame's probability of exactly that character.
            assert np.isclose(probs[row, :, code], score).any()
            assert 1 / 6 <= score <= 1


def test_an_all_blank_path_has_no_characters():
    assert character_confidences(one_hot_path([0, 0, 0])[None]) == [[]]
    with pytest.raises(ValueError, match="batch, time, classes"):
        character_confidences(np.zeros((4, 5)))
