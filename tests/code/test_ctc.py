import numpy as np
import pytest

from captcha_ocr.ctc import collapse, greedy_decode


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
