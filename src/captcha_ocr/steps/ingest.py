"""Step 1, ingest: fetch the captcha zip (or zip a folder), record its digest, unpack it safely.

The source is a URL (default: the upstream archive; ``s3://`` and the other
storages of DVC remotes too), a local path to a zip or a folder, or a path in
a DVC repository at a revision (``ingest.repo``, ``ingest.rev``; see ``captcha_ocr.sources``), from
params.yaml and nowhere else: DVC sees params, so a new
source reruns the step and dvc.lock records it. The zip, the unpacked images
and ``ingest.json`` are written beside their targets and moved into place
together only once the whole zip has been read and checked, so a refused zip
or an interrupted download leaves the previous ingest as it was. Credentials in
the source (a presigned URL's token) never reach the output, the record or any
message.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import os
import shutil
import stat
import struct
import sys
import time
import unicodedata
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from captcha_ocr import paths
from captcha_ocr.config import IngestParams, load_params
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.files import all_or_nothing, atomic_dir, atomic_path, write_json
from captcha_ocr.redaction import redact_source
from captcha_ocr.sources import copy_from_dvc_repo, copy_from_storage, is_remote_storage

# Limits against zip bombs: far above the real archive (1040 files, ~9 MB).
MAX_ENTRIES = 100_000
MAX_TOTAL_BYTES = 2 * 1024**3
MAX_RATIO = 200
# Flag bit 0 of a zip entry: encrypted; reading it would need a password.
ENCRYPTED = 0x1
# Flag bit 11: the entry's name is UTF-8. Extra field 0x7075: the name in UTF-8.
MSDOS = 0  # ZipInfo.create_system of an entry made on MS-DOS or Windows
UTF8_NAMES = 0x800
UNICODE_PATH = 0x7075
READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)

DOWNLOAD_ATTEMPTS = 4
# Seconds before retry n: BACKOFF_SECONDS * 2**(n - 1), i.e. 2, 4, 8 s.
BACKOFF_SECONDS = 2.0


# Named the source until DVC had to see it; now refused, so an old command
# does not silently ingest the params' source instead.
RETIRED_SOURCE_ENV = "CAPTCHA_OCR_SOURCE"


class IngestError(CaptchaOcrError):
    pass


def refuse_retired_source_env() -> None:
    if value := os.environ.get(RETIRED_SOURCE_ENV):
        raise IngestError(
            f"{RETIRED_SOURCE_ENV}={redact_source(value)!r} is no longer read, because DVC "
            "cannot see it: set ingest.source in params.yaml instead, e.g. "
            f"`dvc exp run -S ingest.source={redact_source(value)}`, and unset "
            f"{RETIRED_SOURCE_ENV}"
        )


def ingest(
    params: IngestParams,
    zip_path: Path = paths.RAW_ZIP,
    images_dir: Path = paths.RAW_IMAGES,
    info_path: Path = paths.INGEST_INFO,
) -> dict[str, object]:
    source = params.source
    shown = describe(params)  # what may be printed, written and logged
    # The new zip is read through (every entry unpacked, every CRC checked)
    # before anything replaces the old zip, images or record; then all three
    # move in together. A refused zip leaves the previous ingest as it was.
    with all_or_nothing(), atomic_path(zip_path) as new_zip:
        if params.repo:
            copy_from_dvc_repo(source, params.repo, params.rev, new_zip)
            check_digest(shown, new_zip, params.sha256)
        else:
            refuse_own_outputs(source, (zip_path, images_dir, info_path))
            copy_or_download(source, new_zip, expected_sha256=params.sha256)
        digest, size = sha256_of(new_zip), new_zip.stat().st_size
        count = safe_extract(new_zip, images_dir, name=shown)
        info: dict[str, object] = {"source": redact_source(source), "sha256": digest}
        info["size_bytes"], info["files"] = size, count
        info |= _repo_record(params)
        write_json(info_path, info)
    print(f"ingest: {count} files from {shown} (sha256 {digest[:12]}, {size} bytes)")
    return info


def describe(params: IngestParams) -> str:
    """The source as messages name it, without credentials."""
    if not params.repo:
        return redact_source(params.source)
    at = f"@{params.rev}" if params.rev else ""
    return f"{params.source} in {redact_source(params.repo)}{at}"


def _repo_record(params: IngestParams) -> dict[str, str]:
    if not params.repo:
        return {}
    return {"repo": redact_source(params.repo), "rev": params.rev or "(default branch)"}


def refuse_own_outputs(source: str, outputs: tuple[Path, ...]) -> None:
    """A local source may neither be one of ingest's outputs nor hold them.

    DVC owns the outputs: `dvc checkout` puts back the cached zip over a user's
    file saved there. And a folder holding them (the project's own, say) would
    pack the old images, the stores and itself into the new set.
    """
    if source.startswith(("http://", "https://")) or is_remote_storage(source):
        return
    local = _local_path(source).resolve()
    for output in (o.resolve() for o in outputs):
        if local == output or local.is_relative_to(output):
            raise IngestError(
                f"source {source!r} is inside ingest's own output {str(output)!r}, which "
                "DVC replaces: keep your captchas elsewhere, e.g. data/my_captchas.zip "
                "(`dvc add` it to version it), and set ingest.source to that"
            )
        if local.is_dir() and output.is_relative_to(local):
            raise IngestError(
                f"source {source!r} is a folder that holds ingest's own output "
                f"{str(output)!r}: name the folder of your captchas itself"
            )


def fetch(source: str, target: Path, expected_sha256: str | None = None) -> None:
    """Copy or download ``source`` to ``target``, all or nothing."""
    with atomic_path(target) as tmp:
        copy_or_download(source, tmp, expected_sha256)


def copy_or_download(source: str, target: Path, expected_sha256: str | None = None) -> None:
    """Write the zip at ``source`` (a URL, a storage URL or a local path) to ``target``."""
    if source.startswith(("http://", "https://")):
        _download(source, target)
    elif is_remote_storage(source):
        copy_from_storage(source, target)
    else:
        _copy_local(source, target)
    check_digest(repr(redact_source(source)), target, expected_sha256)


def check_digest(shown: str, path: Path, expected_sha256: str | None) -> None:
    if expected_sha256:
        actual = sha256_of(path)
        if actual != expected_sha256.lower():
            raise IngestError(
                f"source {shown}: sha256 {actual} does not match "
                f"ingest.sha256 {expected_sha256}; nothing was kept"
            )


def _local_path(source: str) -> Path:
    return Path(source.removeprefix("file://")).expanduser()


def _copy_local(source: str, target: Path) -> None:
    local = _local_path(source)
    if local.is_dir():
        zip_folder(local, target, repr(source))
        return
    if not local.is_file():
        raise IngestError(f"source {source!r}: no such file")
    try:
        shutil.copyfile(local, target)
    except OSError as err:
        raise IngestError(f"source {source!r}: cannot be read ({err.strerror})") from None


def zip_folder(folder: Path, target: Path, shown: str) -> None:
    """Zip a folder of captchas to ``target``, the same bytes for the same files.

    Names are sorted and dates and modes fixed, so the zip's sha256 (the data
    version) depends on the files' names and bytes alone. Links (even to a file
    inside), and anything that is neither a file nor a folder, are refused by
    name, as in a zip; so are folders past the zip limits. The zip is then
    unpacked with the same checks as any other.
    """
    files: list[tuple[str, Path]] = []
    total = 0
    for top, folders, names in os.walk(folder, followlinks=False):
        for name in sorted(folders + names):
            path = Path(top, name)
            rel = path.relative_to(folder).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise IngestError(
                    f"source {shown}: refusing link {rel!r} (to {str(path.readlink())!r}); "
                    "copy the file itself into the folder"
                )
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:  # a name unzip wrote from a legacy code page
                raise IngestError(
                    f"source {shown}: {os.fsencode(rel)!r} is not a UTF-8 name: rename it"
                ) from None
            if stat.S_ISREG(mode):
                files.append((rel, path))
                total += path.stat().st_size
            elif not stat.S_ISDIR(mode):
                raise IngestError(f"source {shown}: refusing {rel!r}, which is not a file")
        if len(files) > MAX_ENTRIES or total > MAX_TOTAL_BYTES:
            raise IngestError(
                f"source {shown}: over {MAX_ENTRIES} files or {MAX_TOTAL_BYTES} bytes"
            )
    if not files:
        raise IngestError(f"source {shown}: the folder holds no files")
    with zipfile.ZipFile(target, "w") as archive:
        for rel, path in sorted(files):
            entry = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = (stat.S_IFREG | 0o644) << 16
            # Stored: images are compressed already, and a flat BMP deflated would
            # pass the zip-bomb ratio.
            entry.compress_type = zipfile.ZIP_STORED
            try:
                archive.writestr(entry, path.read_bytes())
            except OSError as err:
                raise IngestError(
                    f"source {shown}: {rel!r} cannot be read ({err.strerror})"
                ) from None


def _download(url: str, target: Path) -> None:
    shown = redact_source(url)  # a presigned URL's query string is a credential
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
                raise IngestError(f"{shown}: HTTP {err.code} {err.reason}") from None
            problem = f"HTTP {err.code}"
        except (urllib.error.URLError, OSError, http.client.HTTPException, IngestError) as err:
            # A dropped connection shows up as any of these, depending on when it drops.
            problem = redact_source(str(err)) or type(err).__name__
        if attempt == DOWNLOAD_ATTEMPTS:
            raise IngestError(f"{shown}: gave up after {attempt} attempts: {problem}")
        wait = BACKOFF_SECONDS * 2 ** (attempt - 1)
        print(f"download failed ({problem}); retrying in {wait:g} s")
        time.sleep(wait)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def safe_extract(zip_path: Path, target: Path, name: str | None = None) -> int:
    """Unpack regular files only; refuse the whole zip on any unsafe or unreadable entry.

    Refused: a file that is not a zip, no files, absolute paths, ``..``
    components, symbolic links, encrypted entries, a name used twice or as
    both a file and a folder, a folder entry that holds data, a Windows name in
    a legacy code page that holds a backslash, archives past the limits on
    entry count, total size and compression ratio, any entry whose CRC does not
    match, and any the file system will not take (a name too long, ...).
    ``name`` is what messages call the zip (the source the user gave).
    Returns the number of files written.
    """
    name = name or str(zip_path)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise IngestError(f"{name}: not a zip file ({err})") from None
    with archive:
        for member in archive.infolist():
            member.filename = _decoded_name(name, member)
        members = [m for m in archive.infolist() if not m.is_dir()]
        _check_members(name, members)
        with atomic_dir(target) as tmp:
            for member in members:
                _unpack(archive, member, tmp, name)
    return len(members)


def _decoded_name(name: str, member: zipfile.ZipInfo) -> str:
    """The entry's name as its maker meant it, folders separated by "/".

    Old Windows tools separate folders with a backslash: in an entry made on
    MS-DOS/Windows whose name holds no "/", read as folders, as Info-ZIP does
    (Python's zipfile on Linux would write one file named so); made elsewhere,
    a backslash is part of the name. In a Windows name read in cp437 that
    holds other bytes, a backslash may be half of a Shift-JIS letter: such a
    name is refused, not guessed at.
    """
    decoded, legacy = _name_text(member)
    if "\\" in decoded and member.create_system == MSDOS and "/" not in decoded:
        if legacy:
            raise IngestError(
                f"{name}: entry {decoded!r} is named in a legacy code page and holds a "
                "backslash: zip it again with UTF-8 names, or give the folder"
            )
        decoded = decoded.replace("\\", "/")
    if decoded.endswith("/") and member.file_size:
        raise IngestError(f"{name}: entry {decoded!r} is named as a folder but holds data")
    return decoded


def _name_text(member: zipfile.ZipInfo) -> tuple[str, bool]:
    """The entry's name, and whether it was read in a legacy code page (cp437).

    Without the UTF-8 flag a name is in the zip standard's code page, cp437,
    which is how Python reads it. But Info-ZIP (`zip -r`) and macOS write UTF-8
    and leave the flag unset; 7-Zip, WinRAR and Info-ZIP may add the name in
    UTF-8 in an extra field (0x7075). Read that, else valid UTF-8 as UTF-8.
    """
    if member.flag_bits & UTF8_NAMES:
        return member.filename, False
    try:
        raw = member.orig_filename.encode("cp437")
    except UnicodeEncodeError:  # already read from the extra field
        return member.filename, False
    unicode_path = _extra_fields(member.extra).get(UNICODE_PATH, b"")
    if len(unicode_path) > 5 and unicode_path[0] == 1:
        # Version 1, then the CRC-32 of the name it stands for: a stale one is ignored.
        (crc,) = struct.unpack("<I", unicode_path[1:5])
        if crc == zlib.crc32(raw):
            with contextlib.suppress(UnicodeDecodeError):
                return unicode_path[5:].decode("utf-8"), False
    if raw.isascii():
        return member.filename, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return member.filename, True


def _extra_fields(extra: bytes) -> dict[int, bytes]:
    fields = {}
    while len(extra) >= 4:
        kind, size = struct.unpack("<HH", extra[:4])
        fields[kind], extra = extra[4 : 4 + size], extra[4 + size :]
    return fields


def _unpack(archive: zipfile.ZipFile, member: zipfile.ZipInfo, folder: Path, name: str) -> None:
    destination = folder / member.filename
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src, destination.open("wb") as dst:
            # Reading to the end checks the entry's CRC.
            shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise IngestError(f"{name}: entry {member.filename!r} is damaged ({err})") from None
    except OSError as err:  # a name too long for the file system, ...
        raise IngestError(
            f"{name}: entry {member.filename!r} cannot be unpacked here ({err.strerror or err})"
        ) from None


def _check_members(name: str, members: list[zipfile.ZipInfo]) -> None:
    if not members:
        raise IngestError(f"{name}: the zip holds no files")
    if len(members) > MAX_ENTRIES:
        raise IngestError(f"{name}: {len(members)} entries, limit {MAX_ENTRIES}")
    total = sum(m.file_size for m in members)
    if total > MAX_TOTAL_BYTES:
        raise IngestError(f"{name}: {total} bytes uncompressed, limit {MAX_TOTAL_BYTES}")
    for m in members:
        _check_member(name, m)
    _check_names(name, members)


def _check_member(name: str, m: zipfile.ZipInfo) -> None:
    path = m.filename.replace("\\", "/")  # as Windows would read it, wherever it was made
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise IngestError(f"{name}: refusing absolute path entry {m.filename!r}")
    if ".." in PurePosixPath(path).parts:
        raise IngestError(f"{name}: refusing entry outside the target {m.filename!r}")
    if "\x00" in path:
        raise IngestError(f"{name}: refusing entry with a NUL in its name {m.filename!r}")
    if not PurePosixPath(path).parts:
        raise IngestError(f"{name}: refusing entry with an empty name {m.filename!r}")
    if stat.S_ISLNK(m.external_attr >> 16):
        raise IngestError(f"{name}: refusing link entry {m.filename!r}")
    if m.flag_bits & ENCRYPTED:
        raise IngestError(f"{name}: refusing encrypted entry {m.filename!r}")
    if m.compress_type not in READABLE_METHODS:
        raise IngestError(
            f"{name}: entry {m.filename!r} uses compression method {m.compress_type}, "
            "which cannot be read here"
        )
    if m.compress_size and m.file_size / m.compress_size > MAX_RATIO:
        raise IngestError(
            f"{name}: entry {m.filename!r} expands {m.file_size // m.compress_size}x,"
            f" limit {MAX_RATIO}x (zip bomb?)"
        )


def _check_names(name: str, members: list[zipfile.ZipInfo]) -> None:
    """Each file once, and no file where another entry needs a folder."""
    files: set[PurePosixPath] = set()
    folded: dict[str, str] = {}
    for m in members:
        path = PurePosixPath(m.filename.replace("\\", "/"))
        if path in files:
            raise IngestError(f"{name}: refusing entry {m.filename!r}, which appears twice")
        files.add(path)
        other = folded.setdefault(unicodedata.normalize("NFC", str(path)).casefold(), m.filename)
        if other != m.filename:
            print(
                f"warning: {name}: {ascii(other)} and {ascii(m.filename)} differ only in case "
                "(one overwrites the other on macOS and Windows) or in Unicode form (on "
                "macOS); name the "
                "files 0001.png, ... and give the labels in a labels.csv (docs/operations.md)",
                file=sys.stderr,
            )
    folders = {parent for path in files for parent in path.parents}
    if clash := sorted(files & folders):
        raise IngestError(
            f"{name}: refusing entry {str(clash[0])!r}, which is both a file and a folder"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr ingest", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    refuse_retired_source_env()
    params = load_params(args.params).ingest
    for key, value in (("source", params.source), ("repo", params.repo or "")):
        if redact_source(value) != value:
            print(
                f"warning: ingest.{key} {redact_source(value)!r} holds credentials, which "
                "params.yaml, dvc.lock and git keep as written; prefer s3:// (or another "
                "remote) with credentials in the environment",
                file=sys.stderr,
            )
    ingest(params)
