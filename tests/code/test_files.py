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


def test_a_step_that_fails_after_some_writes_keeps_every_old_output(tmp_path):
    from captcha_ocr.files import all_or_nothing

    write_json(tmp_path / "train.csv", "old train")
    write_json(tmp_path / "val.csv", "old val")
    with pytest.raises(MemoryError), all_or_nothing():
        write_json(tmp_path / "train.csv", "new train")
        with atomic_dir(tmp_path / "images") as tmp:
            (tmp / "a.png").write_bytes(b"1")
        raise MemoryError("crashed before val.csv")
    assert (tmp_path / "train.csv").read_text() == '"old train"\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.csv", "val.csv"]


def test_a_step_that_succeeds_swaps_in_all_its_outputs(tmp_path):
    from captcha_ocr.files import all_or_nothing

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "old.png").write_bytes(b"0")
    with all_or_nothing():
        write_json(tmp_path / "report.json", "first")
        with atomic_dir(tmp_path / "images") as tmp:
            (tmp / "new.png").write_bytes(b"1")
        write_json(tmp_path / "report.json", "second")
        # Nothing is in place until the block ends.
        assert not (tmp_path / "report.json").exists()
    assert (tmp_path / "report.json").read_text() == '"second"\n'
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["new.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "report.json"]


def test_written_files_honour_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", 1)
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_bytes(b"")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
