"""A stand-in for S3: moto's server on 127.0.0.1, started by the test that needs it.

It speaks the S3 HTTP API on a loopback port, so boto3, s3fs and DVC's S3
filesystem talk to it exactly as to a bucket, with the endpoint and the
credentials taken from the environment (``AWS_ENDPOINT_URL``, ``AWS_*``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class S3StandIn:
    endpoint: str

    def env(self) -> dict[str, str]:
        """What a process needs to reach the stand-in: endpoint and (fake) credentials."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "stand-in-key",
            "AWS_SECRET_ACCESS_KEY": "stand-in-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self):
        import boto3

        env = self.env()
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3StandIn]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3StandIn(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch) -> S3StandIn:
    """The stand-in, with this process's environment pointing at it."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server
