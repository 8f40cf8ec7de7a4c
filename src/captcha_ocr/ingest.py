"""Step 1, ingest: fetch the captcha zip, record its digest, unpack it safely.

The source is a URL (default: the upstream archive) or a local path, from
``ingest.source`` in params.yaml or the CAPTCHA_OCR_SOURCE environment
variable. A download goes to a temporary file and is moved into place only when
complete, so an interrupted run never leaves a partial zip that looks good.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import shutil
import stat
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from captcha_ocr.config import IngestParams, load_params
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.files import atomic_dir, atomic_path, write_json

ZIP_PATH = Path("data/raw/captcha_images_v2.zip")
IMAGES_DIR = Path("data/raw/images")
INFO_PATH = Path("data/raw/ingest.json")

# Limits against zip bombs: far above the real archive (1040 files, ~9 MB).
MAX_ENTRIES = 100_000
MAX_TOTAL_BYTES = 2 * 1024**3
MAX_RATIO = 200

DOWNLOAD_ATTEMPTS = 4
# Seconds before retry n: BACKOFF_SECONDS * 2**(n - 1), i.e. 2, 4, 8 s.
BACKOFF_SECONDS = 2.0


class IngestError(CaptchaOcrError):
    pass


def ingest(
    params: IngestParams,
    zip_path: Path = ZIP_PATH,
    images_dir: Path = IMAGES_DIR,
    info_path: Path = INFO_PATH,
) -> dict[str, object]:
    source = params.resolved_source()
    fetch(source, zip_path, expected_sha256=params.sha256)
    digest, size = sha256_of(zip_path), zip_path.stat().st_size
    count = safe_extract(zip_path, images_dir)
    info = {"source": source, "sha256": digest, "size_bytes": size, "files": count}
    write_json(info_path, info)
    print(f"ingest: {count} files from {source} (sha256 {digest[:12]}, {size} bytes)")
    return info


def fetch(source: str, target: Path, expected_sha256: str | None = None) -> None:
    """Copy or download ``source`` to ``target``, all or nothing."""
    with atomic_path(target) as tmp:
        if source.startswith(("http://", "https://")):
            _download(source, tmp)
        else:
            local = Path(source.removeprefix("file://")).expanduser()
            if not local.is_file():
                raise IngestError(f"source {source!r}: no such file")
            shutil.copyfile(local, tmp)
        if expected_sha256:
            actual = sha256_of(tmp)
            if actual != expected_sha256.lower():
                raise IngestError(
                    f"source {source!r}: sha256 {actual} does not match "
                    f"ingest.sha256 {expected_sha256}; nothing was kept"
                )


def _download(url: str, target: Path) -> None:
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc="download") as bar:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        bar.update(len(chunk))
                if total is not None and out.tell() != total:
                    raise IngestError(f"got {out.tell()} of {total} bytes")
            return
        except urllib.error.HTTPError as err:
            if err.code < 500:  # a 404 will not get better by asking again
                raise IngestError(f"{url}: HTTP {err.code} {err.reason}") from None
            problem = f"HTTP {err.code}"
        except (urllib.error.URLError, OSError, http.client.HTTPException, IngestError) as err:
            # A dropped connection shows up as any of these, depending on when it drops.
            problem = str(err) or type(err).__name__
        if attempt == DOWNLOAD_ATTEMPTS:
            raise IngestError(f"{url}: gave up after {attempt} attempts: {problem}")
        wait = BACKOFF_SECONDS * 2 ** (attempt - 1)
        print(f"download failed ({problem}); retrying in {wait:g} s")
        time.sleep(wait)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def safe_extract(zip_path: Path, target: Path) -> int:
    """Unpack regular files only; refuse the whole zip on any unsafe entry.

    Refused: absolute paths, ``..`` components, symbolic links, and archives
    past the limits on entry count, total size and compression ratio.
    Returns the number of files written.
    """
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        raise IngestError(f"{zip_path}: not a zip file ({err})") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        _check_members(zip_path, members)
        with atomic_dir(target) as tmp:
            for member in members:
                destination = tmp / member.filename
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, destination.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    if not members:
        raise IngestError(f"{zip_path}: the zip holds no files")
    return len(members)


def _check_members(zip_path: Path, members: list[zipfile.ZipInfo]) -> None:
    if len(members) > MAX_ENTRIES:
        raise IngestError(f"{zip_path}: {len(members)} entries, limit {MAX_ENTRIES}")
    total = sum(m.file_size for m in members)
    if total > MAX_TOTAL_BYTES:
        raise IngestError(f"{zip_path}: {total} bytes uncompressed, limit {MAX_TOTAL_BYTES}")
    for m in members:
        name = m.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
            raise IngestError(f"{zip_path}: refusing absolute path entry {m.filename!r}")
        if ".." in parts:
            raise IngestError(f"{zip_path}: refusing entry outside the target {m.filename!r}")
        if stat.S_ISLNK(m.external_attr >> 16):
            raise IngestError(f"{zip_path}: refusing link entry {m.filename!r}")
        if m.compress_size and m.file_size / m.compress_size > MAX_RATIO:
            raise IngestError(
                f"{zip_path}: entry {m.filename!r} expands {m.file_size // m.compress_size}x,"
                f" limit {MAX_RATIO}x (zip bomb?)"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr ingest", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    ingest(load_params(args.params).ingest)
