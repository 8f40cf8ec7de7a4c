"""No command takes an abbreviated option for a full one: `pipeline compile --param`
was read as `--params`, and a typo would run a step with options nobody gave."""

from __future__ import annotations

import pytest

from captcha_ocr.cli import STEPS, main

# An unambiguous prefix of a real option of each command (argparse's default took it).
ABBREVIATED = {
    "ingest": ["--para", "nowhere.yaml"],
    "preprocess": ["--para", "nowhere.yaml"],
    "train": ["--para", "nowhere.yaml"],
    "evaluate": ["--para", "nowhere.yaml"],
    "export": ["--para", "nowhere.yaml"],
    "promote": ["--para", "nowhere.yaml"],
    "register": ["--para", "nowhere.yaml"],
    "predict": ["--mod", "nowhere.keras", "a.png"],
    "demo": ["--mod", "nowhere.keras"],
    "pipeline": ["compile", "--out", "nowhere.yaml"],
    "lineage": ["--hel"],
    "deploy": ["kserve", "--storage", "s3://b/m"],
}


def test_every_command_is_in_the_table():
    assert set(ABBREVIATED) == set(STEPS)


@pytest.mark.parametrize("step", STEPS)
def test_an_abbreviated_option_is_refused(step, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # nothing here for a command that ran anyway to read or write
    with pytest.raises(SystemExit) as exited:
        main([step, *ABBREVIATED[step]])
    assert exited.value.code == 2
    (option,) = [arg for arg in ABBREVIATED[step] if arg.startswith("--")]
    assert f"unrecognized arguments: {option}" in capsys.readouterr().err
