"""Where a team's captcha zip can live, beside a URL and a local path.

- A URL of any storage DVC remotes support (``s3://``, ``gs://``, ``azure://``,
  ``ssh://``, ...), read through DVC's own filesystem for it. ``s3://`` needs
  ``dvc-s3`` (installed); the others need their DVC plugin (``dvc-gs``,
  ``dvc-azure``, ...), and the message says which.
- A path in a DVC repository at a revision (``ingest.repo``, ``ingest.rev``),
  read with ``dvc.api.open`` from the repository's own remote.

Credentials come from the environment, the way each storage's own tools take
them (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or ``AWS_PROFILE``,
``AWS_ENDPOINT_URL`` for MinIO and the like, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_STORAGE_CONNECTION_STRING``), or from a Kubernetes secret mounted as
those variables; never from params.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.redaction import redact_source

LOCAL_SCHEMES = ("", "file")
HTTP_SCHEMES = ("http", "https")


class SourceError(CaptchaOcrError):
    pass


def is_remote_storage(source: str) -> bool:
    """A URL for DVC's filesystems: a scheme that is neither a local path nor http(s)."""
    scheme = urlsplit(source).scheme.lower()
    # "C:/data/x.zip" parses with scheme "c": a drive letter, not a storage.
    return len(scheme) > 1 and scheme not in LOCAL_SCHEMES + HTTP_SCHEMES


def copy_from_storage(url: str, target: Path) -> None:
    """Copy the object at ``url`` (``s3://bucket/key.zip``, ...) to ``target``."""
    from dvc.fs import get_cloud_fs

    shown = redact_source(url)
    try:
        cls, config, path = get_cloud_fs(None, url=url)
        fs = cls(**config)
    except Exception as err:  # a missing plugin or an unknown scheme
        raise SourceError(f"source {shown!r}: cannot be read here: {_said(err)}") from None
    try:
        fs.get_file(path, str(target))
    except FileNotFoundError:
        raise SourceError(f"source {shown!r}: no such object") from None
    except Exception as err:  # refused credentials, no network: the storage's own errors
        raise SourceError(f"source {shown!r}: cannot be read ({_said(err)})") from None


def copy_from_dvc_repo(path: str, repo: str, rev: str | None, target: Path) -> None:
    """Copy ``path`` as tracked in the DVC repository ``repo`` at ``rev`` to ``target``."""
    import dvc.api

    shown = f"{path!r} in {redact_source(repo)}" + (f" at {rev}" if rev else "")
    try:
        with dvc.api.open(path, repo=repo, rev=rev, mode="rb") as src, target.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except FileNotFoundError:
        raise SourceError(f"source {shown}: no such file in that repository") from None
    except Exception as err:  # no such repo or revision, remote unreachable or refused
        raise SourceError(f"source {shown}: cannot be read ({_said(err)})") from None


def _said(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return redact_source(f"{type(err).__name__}: {text}"[:300])
