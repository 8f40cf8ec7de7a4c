"""Fixtures of the data tests: the stand-in for S3 that team sources are read from."""

from tests.s3_stand_in import s3, s3_server  # noqa: F401
