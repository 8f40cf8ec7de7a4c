import pytest

from captcha_ocr.core.vocabulary import BLANK_INDEX, Vocabulary


def test_round_trip_keeps_every_label():
    vocabulary = Vocabulary.from_labels(["226md", "bny23", "x8e5f"])
    for label in ["226md", "bny23", "x8e5f", "dd2"]:
        assert vocabulary.decode(vocabulary.encode(label)) == label


def test_vocabulary_is_sorted_whatever_the_label_order():
    # keras-io #327: a set-ordered vocabulary broke reloaded models.
    a = Vocabulary.from_labels(["zyx", "abc"])
    b = Vocabulary.from_labels(["abc", "zyx"])
    assert a == b and a.characters == "abcxyz"


def test_blank_is_index_zero_and_never_a_character():
    vocabulary = Vocabulary("abc")
    assert BLANK_INDEX == 0
    assert vocabulary.encode("abc") == [1, 2, 3]
    assert vocabulary.num_classes == 4
    assert vocabulary.decode([0, 1, 0, 3, -1]) == "ac"


def test_unknown_character_is_named():
    with pytest.raises(ValueError, match=r"\['z'\]"):
        Vocabulary("abc").encode("abz")


def test_unsorted_vocabulary_is_refused():
    with pytest.raises(ValueError, match="sorted"):
        Vocabulary("cba")


def test_save_and_load(tmp_path):
    path = tmp_path / "vocabulary.json"
    Vocabulary("2345bcd").save(path)
    assert Vocabulary.load(path) == Vocabulary("2345bcd")
