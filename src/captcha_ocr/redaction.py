"""Credentials out of every URL that leaves the process: printed, written or logged.

A data source can be a presigned URL whose query string is the credential
(``X-Amz-Signature``, ``sig``, ``token``), and a tracking URI can carry a user
and password. Both end up in messages, ``ingest.json`` (pushed to a shared DVC
remote) and MLflow params and tags. ``redact_source`` is the one place that
takes them out; the URL keeps its host and path, so it still says where the
data came from.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from captcha_ocr.config import Params

HIDDEN = "***"
# A URL anywhere in a text, up to whitespace or a quote.
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# One name=value pair of a query string or fragment.
_PAIR = re.compile(r"([?&;#])([^=&;#]+)=([^&;#]*)")
# Query keys that hold a secret, case-insensitive: any key containing one of
# _SECRET_WORDS (X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token,
# access_token, client_secret, password), or with one of _SECRET_PARTS between
# separators (Azure's sig, key, api_key, auth). Not X-Amz-SignedHeaders.
_SECRET_WORDS = ("token", "secret", "passw", "signature", "credential", "apikey", "sessionid")
_SECRET_PARTS = {"sig", "key", "pwd", "auth", "authorization", "jwt", "session"}


def redact_source(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    User and password (``https://user:pw@host``) are dropped; the values of
    query and fragment keys that look secret become ``***``. Anything that is
    not a URL (a local path) is returned as it is.
    """
    return _URL.sub(lambda match: _redact_url(match.group(0)), text)


def _redact_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    end = len(rest)
    for mark in "/?#":
        if mark in rest:
            end = min(end, rest.index(mark))
    authority, tail = rest[:end], rest[end:]
    host = authority.rpartition("@")[2]
    return f"{scheme}://{host}{_PAIR.sub(_hide_secret_value, tail)}"


def _hide_secret_value(pair: re.Match[str]) -> str:
    mark, key, value = pair.groups()
    name = unquote(key).lower()
    parts = set(re.split(r"[^a-z0-9]+", name))
    if value and (parts & _SECRET_PARTS or any(word in name for word in _SECRET_WORDS)):
        return f"{mark}{key}={HIDDEN}"
    return pair.group(0)


def public_params(params: Params) -> Params:
    """``params`` as MLflow may show them: the ingest source and repo without credentials."""
    ingest = params.ingest
    update = {"source": redact_source(ingest.source)}
    if ingest.repo:
        update["repo"] = redact_source(ingest.repo)
    shown = ingest.model_copy(update=update)
    return params.model_copy(update={"ingest": shown})
