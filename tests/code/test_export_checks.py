"""The checks the export step applies to the copies it ships."""

from captcha_ocr.steps.export import lost_captchas


def test_an_int8_copy_is_charged_only_for_captchas_the_reader_reads():
    files = ["a.png", "b.png", "c.png", "d.png"]
    truths = ["abcde", "fghij", "klmno", "pqrst"]
    reader = ["abcde", "fghij", "xxxxx", "pqrst"]
    # b: lost by the copy; c: both wrong, differently; d: both right.
    copy = ["abcde", "fghix", "yyyyy", "pqrst"]
    assert lost_captchas(files, truths, reader, copy) == ["b.png"]
    assert lost_captchas(files, truths, reader, reader) == []
