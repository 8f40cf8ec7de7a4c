"""A real PostgreSQL 15 cluster for the tests, in a temporary folder, on a loopback port.

Debian's ``postgresql-15`` (``.ci/run`` installs it). ``initdb`` refuses to run
as root, so as root the cluster belongs to the ``postgres`` system user the
package creates, and its folder is made theirs. Trust authentication on
127.0.0.1 only: no password exists to leak, and nothing else can connect.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port

BIN = Path(os.environ.get("POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
SYSTEM_USER = "postgres"
ROLE = "captcha"


@dataclass(frozen=True)
class Postgres:
    port: int
    run_as: list[str]

    def uri(self, database: str) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URI."""
        command = [str(BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE]
        subprocess.run([*self.run_as, *command, name], check=True, capture_output=True)
        return self.uri(name)


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    if subprocess.run(["id", SYSTEM_USER], capture_output=True).returncode:
        pytest.fail(
            f"as root, initdb needs the {SYSTEM_USER!r} user: apt-get install postgresql-15"
        )
    return ["runuser", "-u", SYSTEM_USER, "--"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if not (BIN / "initdb").is_file():
        pytest.fail(f"no PostgreSQL in {BIN}: apt-get install postgresql-15 (or set POSTGRES_BIN)")
    run_as = _run_as()
    # Not under pytest's tmp folder: that one is root's alone (mode 700).
    folder = Path(tempfile.mkdtemp(prefix="captcha-ocr-pg-"))
    if run_as:
        shutil.chown(folder, user=SYSTEM_USER)
    data, port = folder / "data", free_port()
    log = folder / "postgres.log"

    def run(*command: str) -> None:
        done = subprocess.run([*run_as, *command], capture_output=True, text=True)
        if done.returncode:
            tail = log.read_text()[-2000:] if log.is_file() else ""
            pytest.fail(f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}\n{tail}")

    run(str(BIN / "initdb"), "-D", str(data), "-U", ROLE, "-A", "trust", "--no-sync")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
    try:
        yield Postgres(port, run_as)
    finally:
        run(str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
