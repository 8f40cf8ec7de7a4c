"""Ingest: copy or download the zip all-or-nothing, and unpack it safely."""

import http.server
import os
import re
import socket
import stat
import struct
import threading
import zipfile
import zlib
from pathlib import Path

import pytest

import captcha_ocr.steps.ingest as ingest_module
from captcha_ocr.config import IngestParams
from captcha_ocr.steps.ingest import IngestError, fetch, ingest, safe_extract, sha256_of
from tests.helpers import static_server


def make_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def test_ingest_local_zip_records_digest_and_unpacks(tmp_path, captcha_zip):
    info = ingest(
        IngestParams(source=str(captcha_zip)),
        zip_path=tmp_path / "raw.zip",
        images_dir=tmp_path / "images",
        info_path=tmp_path / "ingest.json",
    )
    assert info["sha256"] == sha256_of(captcha_zip)
    assert info["size_bytes"] == captcha_zip.stat().st_size
    pngs = list((tmp_path / "images").rglob("*.png"))
    assert len(pngs) == info["files"] > 900


class UnflaggedName(zipfile.ZipInfo):
    """An entry whose name is written as given bytes without the UTF-8 flag, as
    Info-ZIP (`zip -r`) and old Windows tools write them."""

    raw_name = b""

    def _encodeFilenameFlags(self):  # noqa: N802 (zipfile's name)
        return self.raw_name, self.flag_bits & ~0x800


def zip_with_raw_names(path: Path, names: list[bytes], png: bytes, made_on: int = 3) -> Path:
    """Made on Unix (3), or on MS-DOS/Windows (0)."""
    with zipfile.ZipFile(path, "w") as archive:
        for raw in names:
            entry = UnflaggedName(raw.decode("cp437"))  # how Python will read it back
            entry.raw_name = raw
            entry.create_system = made_on
            archive.writestr(entry, png)
    return path


def test_unflagged_utf8_names_keep_their_letters(tmp_path, captcha_pngs):
    png = next(iter(captcha_pngs.values()))
    names = ["ßbae3.png", "set/été12.png", "plain.png"]
    source = zip_with_raw_names(tmp_path / "set.zip", [n.encode() for n in names], png)
    raw = tmp_path / "raw"
    ingest(IngestParams(source=str(source)), raw / "x.zip", raw / "images", raw / "i.json")
    found = {p.relative_to(raw / "images").as_posix() for p in (raw / "images").rglob("*.png")}
    assert found == set(names)


def test_backslash_separated_names_unpack_into_folders(tmp_path, captcha_pngs):
    # As old Windows tools write them; unpacked literally, "sub\\AB12C" would be the label.
    png = next(iter(captcha_pngs.values()))
    names = [b"sub\\AB12C.png", b"sub\\deep\\XY34Z.png", b"top.png"]
    source = zip_with_raw_names(tmp_path / "set.zip", names, png, made_on=0)
    raw = tmp_path / "raw"
    info = ingest(IngestParams(source=str(source)), raw / "x.zip", raw / "images", raw / "i.json")
    found = {p.relative_to(raw / "images").as_posix() for p in (raw / "images").rglob("*.png")}
    assert found == {"sub/AB12C.png", "sub/deep/XY34Z.png", "top.png"}
    assert info["files"] == 3


def test_names_one_overwrites_on_macos_or_windows_are_warned_about(tmp_path, capsys):
    # Unpacked there, one of each pair would be lost: a case apart, a Unicode form apart.
    names = ["aB3dE.png", "Ab3De.png", "caf\u00e9.png", "cafe\u0301.png", "other.png"]
    source = make_zip(tmp_path / "set.zip", dict.fromkeys(names, b"png"))
    assert safe_extract(source, tmp_path / "images") == len(names)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 2
    assert "'aB3dE.png' and 'Ab3De.png' differ only in case (one overwrites" in warnings[0]
    assert "'caf\\xe9.png' and 'cafe\\u0301.png' differ" in warnings[1]


def test_a_backslash_in_a_name_made_on_unix_is_part_of_the_name(tmp_path, captcha_pngs):
    # Info-ZIP's rule: only an entry made on MS-DOS/Windows separates folders so.
    png = next(iter(captcha_pngs.values()))
    source = zip_with_raw_names(tmp_path / "set.zip", [b"a\\b9X.png", b"QWERT.png"], png)
    safe_extract(source, tmp_path / "images")
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["QWERT.png", "a\\b9X.png"]


def test_a_legacy_name_with_a_backslash_byte_is_refused_not_split(tmp_path, captcha_pngs):
    # The second byte of Shift-JIS "ソ" is 0x5C: split there, "1ソ2AB" read as cp437
    # was the folder "1â" holding "2AB.png", a plausible wrong label.
    png = next(iter(captcha_pngs.values()))
    names = ["1ソ2AB.png".encode("cp932"), b"plain.png"]
    source = zip_with_raw_names(tmp_path / "set.zip", names, png, made_on=0)
    with pytest.raises(IngestError, match=r"legacy code page and holds a backslash"):
        safe_extract(source, tmp_path / "images")
    assert not (tmp_path / "images").exists()


def test_an_entry_named_as_a_folder_that_holds_data_is_refused(tmp_path):
    source = make_zip(tmp_path / "set.zip", {"a.png": b"png", "ZZZZ.png/": b"png"})
    with pytest.raises(IngestError, match=r"'ZZZZ.png/' is named as a folder but holds data"):
        safe_extract(source, tmp_path / "images")


def test_a_name_too_long_for_the_file_system_is_refused_by_name(tmp_path):
    long_name = "验证码" * 30 + ".png"  # 274 bytes in UTF-8, over the usual 255
    source = make_zip(tmp_path / "set.zip", {"a.png": b"png", long_name: b"png"})
    with pytest.raises(IngestError, match=rf"entry '{long_name}' cannot be unpacked here"):
        safe_extract(source, tmp_path / "images")
    assert not (tmp_path / "images").exists()


def test_a_folder_source_with_a_name_that_is_not_utf8_is_refused_by_name(tmp_path, captcha_zip):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "ABCDE.png").write_bytes(b"png")
    (folder / os.fsdecode(b"caf\xe9.png")).write_bytes(b"png")  # as unzip writes cp1252
    raw = tmp_path / "raw"
    with pytest.raises(IngestError, match=re.escape("b'caf\\xe9.png' is not a UTF-8 name")):
        ingest(IngestParams(source=str(folder)), raw / "x.zip", raw / "images", raw / "i.json")
    assert not raw.exists() or not any(raw.iterdir())


def test_unflagged_names_in_the_zip_code_page_or_with_a_utf8_field_keep_their_letters(
    tmp_path, captcha_pngs
):
    # cp437, the zip standard's code page (Windows' own zips in the US), and
    # the UTF-8 name a 7-Zip or WinRAR extra field (0x7075) carries.
    png = next(iter(captcha_pngs.values()))
    path = zip_with_raw_names(tmp_path / "set.zip", ["été12.png".encode("cp437")], png)
    with zipfile.ZipFile(path, "a") as archive:
        entry = UnflaggedName("?bae3.png")
        entry.raw_name = b"?bae3.png"
        utf8 = "ßbae3.png".encode()
        field = struct.pack("<B", 1) + struct.pack("<I", zlib.crc32(b"?bae3.png")) + utf8
        entry.extra = struct.pack("<HH", 0x7075, len(field)) + field
        archive.writestr(entry, png)
    safe_extract(path, tmp_path / "images")
    found = {p.name for p in (tmp_path / "images").iterdir()}
    assert found == {"été12.png", "ßbae3.png"}


@pytest.mark.parametrize("source", [".", "raw", "raw/images", "raw/images/x", "raw/set.zip"])
def test_a_source_that_is_or_holds_ingests_outputs_is_refused(tmp_path, captcha_zip, source):
    raw = tmp_path / "raw"
    outputs = {"zip_path": raw / "set.zip", "images_dir": raw / "images"}
    ingest(IngestParams(source=str(captcha_zip)), **outputs, info_path=raw / "ingest.json")
    before = (raw / "set.zip").read_bytes()
    with pytest.raises(IngestError, match="ingest's own output"):
        ingest(
            IngestParams(source=str(tmp_path / source)), **outputs, info_path=raw / "ingest.json"
        )
    assert (raw / "set.zip").read_bytes() == before


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
    with static_server(root) as url:
        yield root, url


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


class FlakyServer:
    """Serves one body on 127.0.0.1, dropping the connection half-way through
    the first ``drops`` responses (``chunked`` picks the transfer encoding)."""

    def __init__(self, body: bytes, drops: int, chunked: bool = False):
        self.body, self.drops, self.chunked, self.requests = body, drops, chunked, 0
        flaky = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                flaky.requests += 1
                drop = flaky.requests <= flaky.drops
                data = flaky.body[: len(flaky.body) // 2] if drop else flaky.body
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                if flaky.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    if not drop:
                        self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(flaky.body)))
                    self.end_headers()
                    self.wfile.write(data)
                self.wfile.flush()
                if drop:
                    self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/captcha.zip"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def quick_backoff(monkeypatch):
    monkeypatch.setattr(ingest_module, "BACKOFF_SECONDS", 0.01)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_dropped_download_is_retried_with_backoff(
    tmp_path, captcha_zip, capsys, quick_backoff, chunked
):
    flaky = FlakyServer(captcha_zip.read_bytes(), drops=2, chunked=chunked)
    target = tmp_path / "raw" / "captcha.zip"
    try:
        fetch(flaky.url, target, expected_sha256=sha256_of(captcha_zip))
    finally:
        flaky.server.shutdown()
    assert flaky.requests == 3
    out = capsys.readouterr().out
    assert "retrying in 0.01 s" in out and "retrying in 0.02 s" in out
    assert sha256_of(target) == sha256_of(captcha_zip)
    assert [p.name for p in target.parent.iterdir()] == ["captcha.zip"]


def test_download_that_keeps_dropping_fails_and_keeps_the_good_zip(
    tmp_path, captcha_zip, quick_backoff
):
    target = tmp_path / "raw" / "captcha.zip"
    target.parent.mkdir()
    target.write_bytes(b"the zip of an earlier, complete run")
    flaky = FlakyServer(captcha_zip.read_bytes(), drops=100)
    try:
        with pytest.raises(IngestError, match=r"gave up after 4 attempts: got \d+ of \d+ bytes"):
            fetch(flaky.url, target)
    finally:
        flaky.server.shutdown()
    assert flaky.requests == ingest_module.DOWNLOAD_ATTEMPTS
    assert target.read_bytes() == b"the zip of an earlier, complete run"
    assert [p.name for p in target.parent.iterdir()] == ["captcha.zip"]


@pytest.mark.parametrize(
    ("limit", "value", "message"),
    [("MAX_ENTRIES", 3, "4 entries, limit 3"), ("MAX_TOTAL_BYTES", 30, "40 bytes uncompressed")],
)
def test_extraction_limits_entry_count_and_total_size(tmp_path, monkeypatch, limit, value, message):
    monkeypatch.setattr(ingest_module, limit, value)
    archive = make_zip(tmp_path / "many.zip", {f"{i}/abcde.png": b"0123456789" for i in range(4)})
    with pytest.raises(IngestError, match=message):
        safe_extract(archive, tmp_path / "images")
    assert not (tmp_path / "images").exists()


def test_cli_refuses_a_zip_that_is_not_the_pinned_one(tmp_path, captcha_zip, monkeypatch, capsys):
    from captcha_ocr.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAPTCHA_OCR_SOURCE", raising=False)
    (tmp_path / "params.yaml").write_text(
        f"ingest:\n  source: '{captcha_zip}'\n  sha256: '{'ab' * 32}'\n"
    )
    assert main(["ingest"]) == 1
    assert f"does not match ingest.sha256 {'ab' * 32}" in capsys.readouterr().err
    assert not (tmp_path / "data" / "raw" / "images").exists()
    assert list((tmp_path / "data" / "raw").iterdir()) == []


TOKEN = "FwoGZXIvYXdzEXAMPLE"


def test_a_presigned_urls_token_is_in_no_output_record_or_message(
    tmp_path, http_server, captcha_zip, capsys
):
    root, url = http_server
    (root / "captcha.zip").write_bytes(captcha_zip.read_bytes())
    query = f"X-Amz-Credential=AKIA%2F1&X-Amz-Security-Token={TOKEN}&X-Amz-Signature={TOKEN}"
    info = ingest(
        IngestParams(source=f"{url}/captcha.zip?{query}"),
        zip_path=tmp_path / "raw.zip",
        images_dir=tmp_path / "images",
        info_path=tmp_path / "ingest.json",
    )
    printed = capsys.readouterr()
    shown = f"{url}/captcha.zip?X-Amz-Credential=***&X-Amz-Security-Token=***&X-Amz-Signature=***"
    assert info["source"] == shown
    assert f"from {shown} " in printed.out
    assert TOKEN not in printed.out + printed.err
    assert TOKEN not in (tmp_path / "ingest.json").read_text()
    assert "AKIA" not in (tmp_path / "ingest.json").read_text()

    with pytest.raises(IngestError, match="HTTP 404") as refused:
        fetch(f"{url}/missing.zip?token={TOKEN}", tmp_path / "other.zip")
    assert TOKEN not in str(refused.value) and "token=***" in str(refused.value)


def test_a_token_in_params_works_and_warns_that_params_keep_it(
    tmp_path, http_server, captcha_zip, monkeypatch, capsys
):
    # params.yaml and dvc.lock are committed as written: the user is told, the token is not shown.
    from captcha_ocr.cli import main

    root, url = http_server
    (root / "captcha.zip").write_bytes(captcha_zip.read_bytes())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAPTCHA_OCR_SOURCE", raising=False)
    source = f"{url}/captcha.zip?X-Amz-Signature={TOKEN}"
    (tmp_path / "params.yaml").write_text(f"ingest:\n  source: '{source}'\n")
    assert main(["ingest"]) == 0
    printed = capsys.readouterr()
    assert "warning: ingest.source" in printed.err and "X-Amz-Signature=***" in printed.err
    assert "dvc.lock" in printed.err and TOKEN not in printed.out + printed.err
