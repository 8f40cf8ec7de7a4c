"""Bad zips and sources for ``captcha-ocr ingest``: refused by name, nothing lost."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.hostile.conftest import assert_refused


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


BAD_ZIPS = {
    "empty": _zip({}),
    "only_folders": _zip({"samples/": b"", "samples/more/": b""}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_ZIPS))
def test_a_refused_zip_keeps_the_old_zip_images_and_record(project, case):
    bad = project.root.parent / f"{case}.zip"
    bad.write_bytes(BAD_ZIPS[case])
    before = project.checksums()
    result = project.run("ingest", env={"CAPTCHA_OCR_SOURCE": str(bad)})
    assert_refused(result, f"{case}.zip", before=before, after=project.checksums())
