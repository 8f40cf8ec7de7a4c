"""Bad zips and sources for ``captcha-ocr ingest``: refused by name, nothing lost."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

from tests.hostile.conftest import assert_refused


def _zip(entries: dict[str, bytes], links: tuple[str, ...] = (), deflate: bool = False) -> bytes:
    buffer = io.BytesIO()
    compression = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def _bad_crc() -> bytes:
    # Stored, so the payload sits in the file as is: change it, keep the recorded CRC.
    return _zip({"abcde.png": b"PAYLOAD-1234"}).replace(b"PAYLOAD-1234", b"PAYLOAD-9999")


def _duplicate() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("abcde.png", b"one")
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("abcde.png", b"two")
    return buffer.getvalue()


def _encrypted() -> bytes:
    # zipfile cannot write an encrypted entry; set the "encrypted" flag bit in
    # both headers, which is all a reader looks at before asking for a password.
    data = bytearray(_zip({"abcde.png": b"secret"}))
    data[6] |= 1
    data[data.index(b"PK\x01\x02") + 8] |= 1
    return bytes(data)


BAD_ZIPS = {
    "empty": _zip({}),
    "only_folders": _zip({"samples/": b"", "samples/more/": b""}),
    "zip_slip": _zip({"ok/abcde.png": b"x", "../escape.png": b"x"}),
    "absolute_path": _zip({"/tmp/escape.png": b"x"}),
    "link": _zip({"abcde.png": b"x"}, links=("fghij.png",)),
    "bomb": _zip({"zeros.png": b"\0" * 5_000_000}, deflate=True),
    "not_a_zip": b"hello, I am not a zip",
    "bad_crc": _bad_crc(),
    "file_then_folder": _zip({"a": b"x", "a/abcde.png": b"y"}),
    "folder_then_file": _zip({"a/abcde.png": b"y", "a": b"x"}),
    "duplicate_names": _duplicate(),
    "encrypted": _encrypted(),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_ZIPS))
def test_a_refused_zip_keeps_the_old_zip_images_and_record(project, case):
    bad = project.root.parent / f"{case}.zip"
    bad.write_bytes(BAD_ZIPS[case])
    before = project.checksums()
    project.set_params("ingest", source=str(bad))
    result = project.run("ingest")
    assert_refused(result, f"{case}.zip", before=before, after=project.checksums())


@pytest.mark.slow
def test_a_folder_with_a_link_out_of_it_is_refused_by_name(project):
    folder = project.root.parent / "my_captchas"
    folder.mkdir()
    (folder / "abcde.png").write_bytes(b"x")
    (folder / "fghij.png").symlink_to("/etc/passwd")
    before = project.checksums()
    project.set_params("ingest", source=str(folder))
    result = project.run("ingest")
    assert_refused(result, "my_captchas", "refusing link 'fghij.png'", before=before,
                   after=project.checksums())  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("labels_file", "text", "named"),
    [
        (
            "labels.csv",
            "file,text\n0001.png,aB3dE\n0002.png,\n",
            "row 3: empty label for '0002.png'",
        ),
        # Skipped, it would leave the file names as the labels.
        ("Labels.csv", "file,text\n0001.png,aB3dE\n0002.png,fG4hI\n", "'Labels.csv' looks like a"),
    ],
)
def test_a_bad_or_misnamed_labels_file_is_refused_by_name(project, labels_file, text, named):
    folder = project.root.parent / "labelled"
    folder.mkdir()
    png = next((project.root / "data/raw/images").rglob("*.png")).read_bytes()
    for name in ("0001.png", "0002.png"):
        (folder / name).write_bytes(png)
    (folder / labels_file).write_text(text)
    project.set_params("ingest", source=str(folder))
    assert project.run("ingest").returncode == 0
    before = project.checksums()
    result = project.run("preprocess")
    assert_refused(result, labels_file, named, before=before, after=project.checksums())


@pytest.mark.slow
def test_a_missing_source_is_refused_by_name(project):
    before = project.checksums()
    project.set_params("ingest", source="nowhere/captchas.zip")
    result = project.run("ingest")
    assert_refused(result, "nowhere/captchas.zip", "no such file", before=before,
                   after=project.checksums())  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("source", ["", "data/raw/captcha_images_v2.zip", "data"])
def test_an_empty_source_or_one_at_ingests_outputs_is_refused_by_name(project, source):
    # Empty is the project folder; DVC replaces ingest's outputs under a user's file.
    before = project.checksums()
    project.set_params("ingest", source=source)
    result = project.run("ingest")
    named = "ingest.source: is empty" if not source else "ingest's own output"
    assert_refused(result, named, before=before, after=project.checksums())
