"""Ingest: copy or download the zip all-or-nothing, and unpack it safely."""

import http.server
import stat
import threading
import zipfile
from pathlib import Path

import pytest

from captcha_ocr.config import IngestParams
from captcha_ocr.ingest import IngestError, fetch, ingest, safe_extract, sha256_of


def make_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def test_ingest_local_zip_records_digest_and_unpacks(tmp_path, captcha_zip, monkeypatch):
    monkeypatch.setenv("CAPTCHA_OCR_SOURCE", str(captcha_zip))
    info = ingest(
        IngestParams(),
        zip_path=tmp_path / "raw.zip",
        images_dir=tmp_path / "images",
        info_path=tmp_path / "ingest.json",
    )
    assert info["sha256"] == sha256_of(captcha_zip)
    assert info["size_bytes"] == captcha_zip.stat().st_size
    pngs = list((tmp_path / "images").rglob("*.png"))
    assert len(pngs) == info["files"] > 900


@pytest.mark.parametrize(
    "bad_name", ["../escape.png", "a/../../escape.png", "/abs/escape.png", "C:/escape.png"]
)
def test_extraction_refuses_paths_outside_target(tmp_path, bad_name):
    archive = make_zip(tmp_path / "evil.zip", {"ok/abcde.png": b"x", bad_name: b"x"})
    target = tmp_path / "out" / "images"
    with pytest.raises(IngestError, match="refusing"):
        safe_extract(archive, target)
    assert not target.exists()
    assert not (tmp_path / "escape.png").exists()


def test_extraction_refuses_links(tmp_path):
    archive = make_zip(tmp_path / "link.zip", {"a.png": b"x"}, links={"b.png": "/etc/passwd"})
    with pytest.raises(IngestError, match="link entry 'b.png'"):
        safe_extract(archive, tmp_path / "images")


def test_extraction_refuses_zip_bombs(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.png", b"\0" * 5_000_000)
    with pytest.raises(IngestError, match="zip bomb"):
        safe_extract(archive, tmp_path / "images")


def test_failed_extraction_keeps_the_previous_images(tmp_path):
    target = tmp_path / "images"
    safe_extract(make_zip(tmp_path / "good.zip", {"abcde.png": b"1"}), target)
    with pytest.raises(IngestError):
        safe_extract(make_zip(tmp_path / "bad.zip", {"../x.png": b"2"}), target)
    assert (target / "abcde.png").read_bytes() == b"1"


def test_empty_and_non_zip_files_are_refused(tmp_path):
    with pytest.raises(IngestError, match="no files"):
        safe_extract(make_zip(tmp_path / "empty.zip", {}), tmp_path / "a")
    not_zip = tmp_path / "not.zip"
    not_zip.write_text("hello")
    with pytest.raises(IngestError, match="not a zip"):
        safe_extract(not_zip, tmp_path / "b")


def test_sha256_mismatch_keeps_nothing(tmp_path, captcha_zip):
    target = tmp_path / "raw.zip"
    with pytest.raises(IngestError, match="does not match"):
        fetch(str(captcha_zip), target, expected_sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_missing_local_source_is_named(tmp_path):
    with pytest.raises(IngestError, match="nope.zip"):
        fetch(str(tmp_path / "nope.zip"), tmp_path / "raw.zip")


@pytest.fixture
def http_server(tmp_path):
    """A static file server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_over_http(tmp_path, http_server, captcha_zip, capsys):
    root, url = http_server
    (root / "captcha.zip").write_bytes(captcha_zip.read_bytes())
    target = tmp_path / "raw" / "captcha.zip"
    fetch(f"{url}/captcha.zip", target, expected_sha256=sha256_of(captcha_zip))
    assert sha256_of(target) == sha256_of(captcha_zip)
    assert "download" in capsys.readouterr().err  # the progress bar
    assert [p.name for p in target.parent.iterdir()] == ["captcha.zip"]


def test_download_404_fails_without_leaving_a_file(tmp_path, http_server):
    _, url = http_server
    target = tmp_path / "raw" / "captcha.zip"
    with pytest.raises(IngestError, match="HTTP 404"):
        fetch(f"{url}/missing.zip", target)
    assert list(target.parent.iterdir()) == []
