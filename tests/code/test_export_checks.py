"""The checks the export step applies to the copies it ships."""

from captcha_ocr.steps.export import decide_int8, lost_captchas


def test_an_int8_copy_is_charged_only_for_captchas_the_reader_reads():
    files = ["a.png", "b.png", "c.png", "d.png"]
    truths = ["abcde", "fghij", "klmno", "pqrst"]
    reader = ["abcde", "fghij", "xxxxx", "pqrst"]
    # b: lost by the copy; c: both wrong, differently; d: both right.
    copy = ["abcde", "fghix", "yyyyy", "pqrst"]
    assert lost_captchas(files, truths, reader, copy) == ["b.png"]
    assert lost_captchas(files, truths, reader, reader) == []


def test_int8_ships_when_it_loses_nothing_the_reader_reads():
    files = ["a.png", "b.png", "c.png"]
    truths = ["abcde", "fghij", "klmno"]
    reader = ["abcde", "fghij", "xxxxx"]
    decision = decide_int8(files, truths, reader, ["abcde", "fghij", "yyyyy"])
    assert decision.status == "shipped"
    assert "1 texts differ, on captchas both misread" in decision.reason
    assert decision.tags() == {"int8": "shipped", "int8.reason": decision.reason}


def test_int8_is_dropped_with_the_count_and_files_it_loses():
    files = ["a.png", "b.png", "c.png"]
    truths = ["abcde", "fghij", "klmno"]
    decision = decide_int8(files, truths, truths, ["abcde", "fghix", "klmnx"])
    assert decision.status == "dropped"
    assert "misreads 2 of 3 validation captchas" in decision.reason
    assert "b.png, c.png" in decision.reason
    assert decision.tags()["int8"] == "dropped"
