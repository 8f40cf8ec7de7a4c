"""Atomic writes: a failed or killed writer leaves the old file or none."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from captcha_ocr.files import atomic_dir, write_json, write_with

HALF_WRITE = """
import sys, time
from pathlib import Path
from captcha_ocr.files import write_with

def writer(tmp):
    tmp.write_bytes(b"half of the new")
    print("written half", flush=True)
    time.sleep(60)

write_with(Path(sys.argv[1]), writer)
"""


def test_a_writer_killed_midway_leaves_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"old": True})
    process = subprocess.Popen(
        [sys.executable, "-c", HALF_WRITE, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "written half"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert target.read_text() == '{\n  "old": true\n}\n'
    # The unfinished file has a hidden temporary name no step reads.
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert leftovers and all(n.startswith(".metrics.json.") for n in leftovers)


def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "train.csv"
    target.write_text("old\n")

    def broken(path):
        path.write_text("new but incomplete")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_with(target, broken)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train.csv"]


def test_a_folder_is_swapped_in_whole_or_not_at_all(tmp_path):
    target = tmp_path / "images"
    with atomic_dir(target) as tmp:
        (tmp / "a.png").write_bytes(b"1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.png").write_bytes(b"2")
        raise RuntimeError("killed half-way")
    assert [p.name for p in target.iterdir()] == ["a.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["images"]
