"""The storage a team shares, for real on loopback: an MLflow server on PostgreSQL
whose artifacts go to a bucket of the S3 stand-in (moto), and the bucket DVC
pushes to. Started once per session; each test takes a new database or prefix."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import stop
from tests.mlflow_server import start_tracking_server
from tests.postgres import Postgres, postgres  # noqa: F401
from tests.s3_stand_in import S3StandIn, s3_server  # noqa: F401

BUCKET = "team"


@dataclass(frozen=True)
class TeamServer:
    url: str
    database: str
    s3: S3StandIn


def start_team_server(
    folder: Path, cluster: Postgres, stand_in: S3StandIn, database: str
) -> tuple[subprocess.Popen, TeamServer]:
    """``mlflow server`` on a new Postgres database, artifacts proxied to s3://team/<database>.

    Proxied (``--artifacts-destination``): clients log to ``mlflow-artifacts:/``
    through the server and need no S3 credentials; only the server has them.
    """
    backend = cluster.create_database(database)
    env = stand_in.env() | {"MLFLOW_S3_ENDPOINT_URL": stand_in.endpoint}
    process, url = start_tracking_server(
        folder, backend=backend, artifacts=f"s3://{BUCKET}/{database}", env=env
    )
    return process, TeamServer(url, backend, stand_in)


@pytest.fixture(scope="session")
def bucket(s3_server) -> S3StandIn:  # noqa: F811
    s3_server.client().create_bucket(Bucket=BUCKET)
    return s3_server


@pytest.fixture(scope="session")
def team_server(tmp_path_factory, postgres, bucket) -> Iterator[TeamServer]:  # noqa: F811
    process, server = start_team_server(
        tmp_path_factory.mktemp("team_server"), postgres, bucket, "mlflow"
    )
    try:
        yield server
    finally:
        stop(process)


def artifact_keys(stand_in: S3StandIn, prefix: str) -> list[str]:
    listed = stand_in.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]
