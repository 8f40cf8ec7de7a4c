"""Credentials never leave in a source or URI: one function, every kind of secret."""

from __future__ import annotations

import pytest

from captcha_ocr.config import Params
from captcha_ocr.redaction import public_params, redact_source
from captcha_ocr.tracking import redact

S3 = "https://bucket.s3.eu-west-1.amazonaws.com/data/captchas.zip"
CASES = {
    "presigned S3": (
        f"{S3}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261202"
        "&X-Amz-Date=20261202T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        "&X-Amz-Security-Token=FwoGZXIvYXdz&X-Amz-Signature=0123abcd",
        f"{S3}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***"
        "&X-Amz-Date=20261202T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        "&X-Amz-Security-Token=***&X-Amz-Signature=***",
    ),
    "Azure SAS": (
        "https://acct.blob.core.windows.net/c/captchas.zip?sv=2024-01-01&se=2026-12-03&sp=r&sig=Zm9v%3D",
        "https://acct.blob.core.windows.net/c/captchas.zip?sv=2024-01-01&se=2026-12-03&sp=r&sig=***",
    ),
    "Google signed": (
        "https://storage.googleapis.com/b/c.zip?X-Goog-Credential=sa%40p&X-Goog-Signature=ab12",
        "https://storage.googleapis.com/b/c.zip?X-Goog-Credential=***&X-Goog-Signature=***",
    ),
    "upper-case keys": (
        "https://h/c.zip?TOKEN=a&Access_Token=b&API_KEY=c&Password=d&client_secret=e",
        "https://h/c.zip?TOKEN=***&Access_Token=***&API_KEY=***&Password=***&client_secret=***",
    ),
    "X-Amz-SignedHeaders is no secret": (
        "https://h/c.zip?X-Amz-SignedHeaders=host&X-Amz-Signature=ab",
        "https://h/c.zip?X-Amz-SignedHeaders=host&X-Amz-Signature=***",
    ),
    "key and signature": (
        "https://h/c.zip?key=a&signature=b&v=2",
        "https://h/c.zip?key=***&signature=***&v=2",
    ),
    "token in the fragment": (
        "https://h/c.zip#access_token=abc",
        "https://h/c.zip#access_token=***",
    ),
    "user and password": ("http://alice:s3cret@h:5000/c.zip", "http://h:5000/c.zip"),
    "user only": ("https://token@mlflow.example.org/path", "https://mlflow.example.org/path"),
    "both": ("https://u:p@h/c.zip?sig=x&a=1", "https://h/c.zip?sig=***&a=1"),
    "an @ in the path": ("https://h/v@2/c.zip", "https://h/v@2/c.zip"),
    "harmless query": ("https://h/c.zip?download=1&v=2", "https://h/c.zip?download=1&v=2"),
    "empty secret value": ("https://h/c.zip?token=", "https://h/c.zip?token="),
    "upstream": (
        "https://github.com/AakashKumarNain/CaptchaCracker/raw/master/captcha_images_v2.zip",
        "https://github.com/AakashKumarNain/CaptchaCracker/raw/master/captcha_images_v2.zip",
    ),
    "local path": ("/data/captchas.zip", "/data/captchas.zip"),
    "file URL": ("file:///data/captchas.zip", "file:///data/captchas.zip"),
    "sqlite URI": ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    "in a message": (
        "source 'https://h/c.zip?token=abc': HTTP 403 Forbidden",
        "source 'https://h/c.zip?token=***': HTTP 403 Forbidden",
    ),
    "two URLs": (
        "https://a:b@h1/x and https://h2/y?sig=z",
        "https://h1/x and https://h2/y?sig=***",
    ),
}


@pytest.mark.parametrize(("text", "shown"), CASES.values(), ids=list(CASES))
def test_credentials_are_taken_out_of_every_url(text, shown):
    assert redact_source(text) == shown
    assert redact_source(shown) == shown  # redacting twice changes nothing
    assert redact(text) == shown  # tracking URIs go through the same function


def test_params_shown_in_mlflow_hold_no_token_but_the_params_still_do():
    source = "https://h/c.zip?X-Amz-Signature=SeCrEt42"
    params = Params.model_validate({"ingest": {"source": source}})
    shown = public_params(params)
    assert shown.flat()["ingest.source"] == "https://h/c.zip?X-Amz-Signature=***"
    assert "SeCrEt42" not in shown.model_dump_json()
    assert params.ingest.source == source  # the step itself still needs it
    assert shown.train == params.train


def test_a_repo_url_with_a_token_is_shown_without_it():
    repo = "https://bob:ghp_SeCrEt42@git.example.org/team/captchas.git"
    params = Params.model_validate({"ingest": {"source": "data/c.zip", "repo": repo}})
    shown = public_params(params)
    assert "SeCrEt42" not in shown.model_dump_json()
    assert shown.ingest.repo.endswith("git.example.org/team/captchas.git")
    assert params.ingest.repo == repo
